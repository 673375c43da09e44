r"""Token datasets: `prepare` writes `train.bin`/`val.bin`; `TokenDataset` samples batches.

A `.bin` file is nothing but token ids, one after another, as raw little-endian unsigned integers
(`uint16` when the vocabulary has at most 65,536 entries, else `uint32`) — the format nanoGPT
uses. `meta.json` beside it records the dtype, so the file needs no header and can be
memory-mapped: a batch reads only the pages it touches, however large the corpus.

Example:
    >>> meta = prepare("data/tinyshakespeare.txt", "runs/shakespeare")   # doctest: +SKIP
    >>> train = TokenDataset("runs/shakespeare/train.bin", meta["dtype"])  # doctest: +SKIP
    >>> x, y = train.get_batch(12, 64, np.random.default_rng(0))           # doctest: +SKIP
    >>> x.shape, y.shape                                                    # doctest: +SKIP
    ((12, 64), (12, 64))
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Literal

import numpy as np

from nima.data.tokenizers import ByteBPETokenizer, CharTokenizer
from nima.serialization import atomic_write, atomic_write_text

__all__ = ["TokenDataset", "prepare", "text_digest", "token_dtype"]

TOKENIZER_FILE = "tokenizer.txt"


def token_dtype(vocab_size: int) -> np.dtype:
    """The smallest unsigned dtype holding every token id: `uint16` up to 65,536 ids, else `uint32`.

    Example:
        >>> token_dtype(65), token_dtype(70_000)
        (dtype('uint16'), dtype('uint32'))
    """
    return np.dtype(np.uint16) if vocab_size <= 2**16 else np.dtype(np.uint32)


def text_digest(text: str) -> str:
    """The sha256 of `text` in UTF-8: what `meta.json` records as `source_sha256`, so a
    preparation can tell whether it was made from the same corpus."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _train_tokenizer(kind: Any, text: str, vocab_size: int | None) -> Any:
    """Train the named tokenizer on `text` (a tokenizer given instead is used as it is)."""
    if isinstance(kind, CharTokenizer | ByteBPETokenizer):
        return kind
    if kind == "char":
        return CharTokenizer.train(text)
    if kind == "bpe":
        if vocab_size is None:
            raise ValueError("prepare: tokenizer='bpe' needs vocab_size (e.g. 512)")
        return ByteBPETokenizer.train(text, vocab_size)
    raise ValueError(f"prepare: tokenizer must be 'char' or 'bpe', got {kind!r}")


# --8<-- [start:prepare]
def prepare(
    text_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    tokenizer: Literal["char", "bpe"] | CharTokenizer | ByteBPETokenizer = "char",
    vocab_size: int | None = None,
    val_fraction: float = 0.1,
) -> dict[str, Any]:
    r"""Tokenize a text corpus into `train.bin`, `val.bin`, the tokenizer file and `meta.json`.

    The tokenizer is trained on the whole text. The text is split as nanoGPT does — the first
    $\lfloor (1 - f)\,N \rfloor$ characters train, the rest validate — and each part is encoded
    on its own, so decoding `train.bin` gives back exactly the training text. Every file is
    written atomically (temp file + `os.replace`).

    Args:
        text_path: a UTF-8 text file.
        out_dir: folder for the outputs (created if missing).
        tokenizer: `"char"` (one token per character) or `"bpe"` (byte-level BPE), trained
            on the text; or a tokenizer to encode it with (fine-tuning keeps its model's).
        vocab_size: the target vocabulary of BPE; ignored by `"char"`.
        val_fraction: the share of the text, at its end, kept for validation (0 ≤ f < 1).

    Returns:
        The contents of `meta.json`: `source_sha256` (of the corpus text), `tokenizer`,
        `tokenizer_file`, `vocab_size`, `dtype`,
        `val_fraction`, `split_char` (where validation starts in the text), `train_tokens`,
        `val_tokens`.

    Raises:
        ValueError: an unknown tokenizer, BPE without `vocab_size`, or `val_fraction` out of range.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"prepare: val_fraction must be in [0, 1), got {val_fraction}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    text = Path(text_path).read_text(encoding="utf-8")

    tok = _train_tokenizer(tokenizer, text, vocab_size)
    split = int(len(text) * (1.0 - val_fraction))  # first 90% train, last 10% val
    dtype = token_dtype(tok.vocab_size)
    train_ids = np.asarray(tok.encode(text[:split]), dtype=dtype)  # (N_train,)
    val_ids = np.asarray(tok.encode(text[split:]), dtype=dtype)  # (N_val,)

    atomic_write(out / "train.bin", train_ids.astype(dtype.newbyteorder("<")).tofile)
    atomic_write(out / "val.bin", val_ids.astype(dtype.newbyteorder("<")).tofile)
    tok.save(out / TOKENIZER_FILE)  # atomic too; read back with `load_tokenizer`

    meta = {
        "source_sha256": text_digest(text),
        "tokenizer": tokenizer if isinstance(tokenizer, str) else "given",
        "tokenizer_file": TOKENIZER_FILE,
        "vocab_size": int(tok.vocab_size),
        "dtype": dtype.name,
        "val_fraction": val_fraction,
        "split_char": split,
        "train_tokens": int(train_ids.size),
        "val_tokens": int(val_ids.size),
    }
    atomic_write_text(out / "meta.json", json.dumps(meta, indent=2) + "\n")
    return meta
# --8<-- [end:prepare]


class TokenDataset:
    """A `.bin` file of token ids, memory-mapped read-only, with seeded random batches.

    Args:
        path: the `.bin` file written by `prepare`.
        dtype: its dtype, `meta["dtype"]` (`"uint16"` or `"uint32"`).

    Example:
        >>> ds = TokenDataset("runs/shakespeare/val.bin", "uint16")   # doctest: +SKIP
        >>> len(ds)                                                    # doctest: +SKIP
        111540
    """

    def __init__(self, path: str | os.PathLike, dtype: str | np.dtype = "uint16") -> None:
        self.path = Path(path)
        self.dtype = np.dtype(dtype).newbyteorder("<")
        if self.path.stat().st_size == 0:  # np.memmap refuses empty files
            self.data = np.zeros(0, dtype=self.dtype)
        else:
            self.data = np.memmap(self.path, dtype=self.dtype, mode="r")  # (N,) read-only

    def __len__(self) -> int:
        return int(self.data.shape[0])

    def __repr__(self) -> str:
        return f"TokenDataset({str(self.path)!r}, dtype={self.dtype.name!r}, tokens={len(self)})"

    # --8<-- [start:get_batch]
    def get_batch(
        self, batch_size: int, block_size: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        r"""Sample `batch_size` random windows of `block_size + 1` tokens.

        For each row $b$ an offset $i_b$ is drawn uniformly from $\{0, \dots, N - T - 1\}$, and

        $$x_{b,t} = d_{i_b + t}, \qquad y_{b,t} = d_{i_b + t + 1}, \qquad t = 0, \dots, T-1,$$

        so `y` is `x` shifted left by one: the next token at every position.

        Args:
            batch_size: rows $B$.
            block_size: tokens per row $T$.
            rng: the seeded generator; the same seed gives the same batches.

        Returns:
            `(x, y)`, both int64 of shape `(B, T)`.

        Raises:
            ValueError: the data holds fewer than `block_size + 1` tokens, or a size is < 1.
        """
        if batch_size < 1 or block_size < 1:
            raise ValueError(
                f"get_batch: batch_size and block_size must be >= 1, got {batch_size}, {block_size}"
            )
        n = len(self)
        if n < block_size + 1:
            raise ValueError(
                f"get_batch: {self.path.name} has {n} tokens, fewer than block_size + 1 = "
                f"{block_size + 1}; use a smaller block_size or more data"
            )
        starts = rng.integers(0, n - block_size, size=batch_size)  # (B,) offsets i_b
        window = starts[:, None] + np.arange(block_size + 1)  # (B, T+1) positions
        chunk = self.data[window].astype(np.int64)  # (B, T+1) tokens
        return np.ascontiguousarray(chunk[:, :-1]), np.ascontiguousarray(chunk[:, 1:])  # (B, T)
    # --8<-- [end:get_batch]
