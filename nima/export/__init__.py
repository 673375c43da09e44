"""Export a trained GPT for use outside Nima: `export_npz` writes weights, config and tokenizer
into one `.npz`, which `nima/export/numpy_gpt.py` (a standalone file, NumPy only) runs."""

from nima.export.npz import export_npz
