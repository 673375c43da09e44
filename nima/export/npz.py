r"""`export_npz`: a trained GPT, its config and its tokenizer in one NumPy `.npz`, for
`nima/export/numpy_gpt.py` — a single file that runs it with NumPy alone.

The `.npz` (a zip of `.npy` files) holds plain arrays only, so `np.load(..., allow_pickle=False)`
reads it and a tampered file cannot run code:

* `config.json` — UTF-8 JSON in a uint8 array: `format`, `version`, `model` (every setting the
  forward needs, explicit: `norm_eps`, `n_kv_head`, the FFN width, ...) and `gpt_config`;
* `tokenizer.json` — the same, absent without a tokenizer: `kind` `"char"` with its `chars`, or
  `"bpe"` with `byte_ids`, `vocab` (id, hex of its bytes), `merges` (left, right, merged id, by
  rank), `special_tokens` and the pre-split `pattern` as `re` source;
* `weights/<name>` — each parameter by its Nima name (a tied head once, as `wte.weight`);
* `tables/<name>` — the position tables Nima computed: `pe` (sinusoidal), `rope_cos` and
  `rope_sin`, `alibi_slopes`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from nima.data.tokenizers import SPLIT_PATTERNS, ByteBPETokenizer, CharTokenizer
from nima.models.gpt import GPT
from nima.models.pretrained import model_settings
from nima.nn.positional import ALiBi, RotaryEmbedding, SinusoidalPositionalEncoding
from nima.serialization import atomic_write
from nima.training.sources import load_model

FORMAT, VERSION = "nima-npz", 1
Tokenizer = CharTokenizer | ByteBPETokenizer


def _json_array(value: Any) -> np.ndarray:
    """JSON as UTF-8 bytes in a uint8 array: text an `.npz` can hold without pickle."""
    return np.frombuffer(json.dumps(value, ensure_ascii=False).encode("utf-8"), dtype=np.uint8)


def tokenizer_spec(tokenizer: Tokenizer) -> dict[str, Any]:
    """A tokenizer as plain JSON data, enough to encode and decode without Nima."""
    if isinstance(tokenizer, CharTokenizer):
        return {"kind": "char", "chars": tokenizer.chars}
    pattern = SPLIT_PATTERNS[tokenizer.pattern](False) if tokenizer.pattern else None
    return {"kind": "bpe", "pattern": pattern, "byte_ids": tokenizer.byte_ids,
            "vocab": [[i, b.hex()] for i, b in sorted(tokenizer.vocab.items())],
            "merges": [[a, b, m] for (a, b), m in tokenizer.merges.items()],
            "special_tokens": [[s, i] for s, i in tokenizer.special_tokens.items()]}


# --8<-- [start:model_spec]
def model_spec(model: GPT) -> dict[str, Any]:
    """Every setting `numpy_gpt.forward` reads, explicit (no None left to resolve)."""
    c = model.config
    if c.attention != "content":
        raise ValueError(f"export_npz: attention={c.attention!r} is not exported (the NumPy "
                         f"script runs content attention only)")
    if c.stateful_or_recursive is not None:
        raise ValueError(f"export_npz: {c.stateful_or_recursive} is not exported (the NumPy "
                         f"script runs a plain GPT)")
    s = model_settings(model)
    return {"vocab_size": c.vocab_size, "block_size": c.block_size, "n_layer": c.n_layer,
            "n_head": c.n_head, "n_kv_head": s["n_kv_head"], "head_dim": s["head_dim"],
            "n_embd": c.n_embd, "ffn": c.ffn, "ffn_hidden": s["ffn_hidden"],
            "gelu_approximate": s["gelu_approximate"], "norm": c.norm,
            "norm_eps": s["norm_eps"], "norm_placement": c.norm_placement,
            "position": c.position, "rope_theta": s["rope_theta"],
            "tie_weights": c.tie_weights, "embed_scale": c.embed_scale}
# --8<-- [end:model_spec]


def _tables(model: GPT) -> dict[str, np.ndarray]:
    """The position tables Nima computed (not parameters, so not in the state dict)."""
    tables = {}
    for module in model.modules():
        if isinstance(module, SinusoidalPositionalEncoding):
            tables["tables/pe"] = module.pe.data
        elif isinstance(module, RotaryEmbedding):
            tables["tables/rope_cos"], tables["tables/rope_sin"] = module.cos.data, module.sin.data
        elif isinstance(module, ALiBi):
            tables["tables/alibi_slopes"] = module.slopes
    return tables


def export_npz(source: GPT | str | os.PathLike[str], path: str | os.PathLike[str], *,
               tokenizer: Tokenizer | None = None, which: str = "best") -> Path:
    """Write a GPT, its config and its tokenizer into one `.npz` for `numpy_gpt.py`.

    Args:
        source: a `GPT`; a run directory (its `which` checkpoint, `"best"` or `"latest"`, and
            its tokenizer) or a checkpoint file; or a Hugging Face model folder (with GPT-2's
            `vocab.json` and `merges.txt` beside it, if there).
        path: the `.npz` to write (atomically); its folder must exist.
        tokenizer: the tokenizer to include (replacing the source's); None with a `GPT`
            source exports no tokenizer, and the script then reads and prints token ids.
        which: for a run directory, the checkpoint to export.

    Returns:
        The path written.

    Raises:
        ValueError: a model the script cannot run (attention other than `"content"`).
    """
    model, found, _ = (source, None, None) if isinstance(source, GPT) else \
        load_model(source, which)
    if not isinstance(model, GPT):
        raise ValueError(f"export_npz: {source} holds a {type(model).__name__}; the NumPy "
                         f"script runs a GPT")
    tokenizer = found if tokenizer is None else tokenizer
    arrays: dict[str, np.ndarray] = {
        "config.json": _json_array({"format": FORMAT, "version": VERSION,
                                    "model": model_spec(model),
                                    "gpt_config": dataclasses.asdict(model.config)})}
    if tokenizer is not None:
        arrays["tokenizer.json"] = _json_array(tokenizer_spec(tokenizer))
    for name, value in model.state_dict().items():
        if not (name == "lm_head.weight" and model.config.tie_weights):
            arrays[f"weights/{name}"] = value
    arrays.update(_tables(model))
    path = Path(path)
    atomic_write(path, lambda f: np.savez(f, **arrays))
    return path


__all__ = ["export_npz", "model_spec", "tokenizer_spec"]
