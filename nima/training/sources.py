"""Where a trained model comes from: a run directory (or one of its checkpoints), or a Hugging
Face model folder — what `nima eval`, `nima export` and a config's `training.init_from` read.

`load_model(path)` tells them apart by the folder's `config.json` (Hugging Face's) and returns
the model, its tokenizer and, for a run, the run's `Config`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nima.data.tokenizers import ByteBPETokenizer
from nima.models.pretrained import CONFIG, load_pretrained
from nima.serialization import PathLike
from nima.training.config import Config
from nima.training.trainer import load_run

__all__ = ["is_pretrained_folder", "load_model"]


def is_pretrained_folder(path: PathLike) -> bool:
    """Whether `path` is a Hugging Face model folder (it holds `config.json`)."""
    return (Path(path) / CONFIG).is_file()


def load_model(path: PathLike, which: str = "best") -> tuple[Any, Any | None, Config | None]:
    """`(model, tokenizer, config)` from a run directory or checkpoint (`which`: its `"best"`
    or `"latest"` checkpoint; the tokenizer and config of the run), or from a Hugging Face
    folder (GPT-2's `vocab.json` and `merges.txt` beside it give the tokenizer, else None; no
    config). The model is in eval mode.

    Raises:
        CheckpointError, PretrainedError: nothing loadable at `path`.
    """
    path = Path(path)
    if is_pretrained_folder(path):
        vocab, merges = path / "vocab.json", path / "merges.txt"
        tokenizer = ByteBPETokenizer.from_files(vocab, merges) \
            if vocab.exists() and merges.exists() else None
        return load_pretrained(path), tokenizer, None
    return load_run(path, which)
