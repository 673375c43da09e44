r"""Sequence-to-sequence data: pairs of texts, a source and its target, one pair per line.

A pairs file is UTF-8 text, one `source<TAB>target` per line — any parallel corpus has this
shape. `reversal_pairs` writes the toy task the encoder–decoder's tests learn: random words
over ten letters and their reversals,

    fbjcad	dacjbf
    gdhe	ehdg

which needs cross-attention to do real work (output position $t$ must find source position
$n - 1 - t$, and $n$ is known only from where the source's padding starts).

Characters are the tokens, with three of ASCII's control characters standing for the special
tokens, at fixed ids: **NUL** (0) is the padding, **STX** ("start of text", 1) begins every
target the decoder reads, **ETX** ("end of text", 2) ends every target it writes. The
tokenizer is a plain `CharTokenizer` whose first three characters are those, so it saves and
loads as any other.

`PairDataset` encodes the pairs once and gives batches the `Transformer` takes —
`(src, tgt_in, tgt_out)`, each padded to the longest row of the batch:

| | position 0 | 1 | ... | $n$ |
|---|---|---|---|---|
| `tgt_in` | STX | $y_1$ | ... | $y_n$ |
| `tgt_out` | $y_1$ | $y_2$ | ... | ETX |
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from nima.data.dataset import TOKENIZER_FILE, text_digest
from nima.data.tokenizers import CharTokenizer
from nima.serialization import atomic_write_text

__all__ = ["BOS", "EOS", "PAD", "SPECIALS", "PairDataset", "pair_tokenizer", "prepare_pairs",
           "read_pairs", "reversal_pairs"]

PAD, BOS, EOS = 0, 1, 2  # the ids of NUL, STX and ETX in every pair tokenizer
SPECIALS = ("\x00", "\x02", "\x03")  # NUL (padding), STX (start of text), ETX (end of text)


def reversal_pairs(n: int, seed: int = 0, letters: str = "abcdefghij", min_len: int = 4,
                   max_len: int = 8) -> str:
    """`n` lines `word<TAB>reversed word`, words of `min_len .. max_len` random `letters`.

    Example:
        >>> reversal_pairs(2, seed=0)
        'gfcdaaab\\tbaaadcfg\\ngjfgjhgf\\tfghjgfjg\\n'
    """
    rng = np.random.default_rng(seed)
    lines = []
    for _ in range(n):
        word = "".join(rng.choice(list(letters), int(rng.integers(min_len, max_len + 1))))
        lines.append(f"{word}\t{word[::-1]}")
    return "\n".join(lines) + "\n"


def read_pairs(path: str | os.PathLike[str]) -> list[tuple[str, str]]:
    """The `(source, target)` pairs of a pairs file (blank lines skipped).

    Raises:
        ValueError: a line without exactly one tab, an empty side, or a special character
            (NUL, STX, ETX) in the text — named with its line number.
    """
    pairs = []
    text = Path(path).read_text(encoding="utf-8")
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 2 or not parts[0] or not parts[1]:
            raise ValueError(f"{path}:{number}: expected 'source<TAB>target', got {line[:60]!r}")
        if any(ch in line for ch in SPECIALS):
            raise ValueError(f"{path}:{number}: holds NUL, STX or ETX, which stand for "
                             f"padding, start and end")
        pairs.append((parts[0], parts[1]))
    return pairs


def pair_tokenizer(pairs: list[tuple[str, str]]) -> CharTokenizer:
    """The characters of every source and target, after NUL, STX and ETX at ids 0, 1, 2."""
    chars = sorted({ch for src, tgt in pairs for ch in src + tgt})
    return CharTokenizer([*SPECIALS, *chars])


class PairDataset:
    """Encoded pairs, and batches of them for a `Transformer`.

    Args:
        pairs: `(source, target)` texts.
        tokenizer: a pair tokenizer (`pair_tokenizer`).

    Raises:
        ValueError: no pairs, or a tokenizer without the special characters at 0, 1, 2.
    """

    def __init__(self, pairs: list[tuple[str, str]], tokenizer: CharTokenizer) -> None:
        if not pairs:
            raise ValueError("PairDataset: no pairs")
        if tuple(tokenizer.chars[:3]) != SPECIALS:
            raise ValueError("PairDataset: the tokenizer must hold NUL, STX, ETX at ids 0, 1, 2 "
                             "(make it with pair_tokenizer)")
        self.sources = [np.asarray(tokenizer.encode(s), dtype=np.int64) for s, _ in pairs]
        self.targets = [np.asarray(tokenizer.encode(t), dtype=np.int64) for _, t in pairs]

    def __len__(self) -> int:
        return len(self.sources)

    @property
    def max_source(self) -> int:
        """The longest source, in tokens."""
        return max(len(s) for s in self.sources)

    @property
    def max_target(self) -> int:
        """The longest target, in tokens, with its start (or end) token."""
        return max(len(t) for t in self.targets) + 1

    # --8<-- [start:batch]
    def batch(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Pairs `rows` as `(src (B, S), tgt_in (B, T), tgt_out (B, T))`, padded with PAD to the
        batch's longest source and target: `tgt_in` is STX then the target, `tgt_out` the
        target then ETX."""
        sources = [self.sources[i] for i in rows]
        targets = [self.targets[i] for i in rows]
        S, T = max(len(s) for s in sources), max(len(t) for t in targets) + 1
        src = np.full((len(rows), S), PAD, dtype=np.int64)
        tgt_in = np.full((len(rows), T), PAD, dtype=np.int64)
        tgt_out = np.full((len(rows), T), PAD, dtype=np.int64)
        for b, (s, t) in enumerate(zip(sources, targets, strict=True)):
            src[b, :len(s)] = s
            tgt_in[b, 0], tgt_in[b, 1:len(t) + 1] = BOS, t
            tgt_out[b, :len(t)], tgt_out[b, len(t)] = t, EOS
        return src, tgt_in, tgt_out
    # --8<-- [end:batch]

    def get_batch(self, batch_size: int, rng: np.random.Generator
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`batch_size` pairs drawn uniformly (with replacement) by `rng`."""
        return self.batch(rng.integers(0, len(self), batch_size))

    def batches(self, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Every pair once, in order, `batch_size` at a time."""
        for start in range(0, len(self), batch_size):
            yield self.batch(np.arange(start, min(start + batch_size, len(self))))


def prepare_pairs(pairs_path: str | os.PathLike[str], out_dir: str | os.PathLike[str],
                  val_fraction: float = 0.1) -> dict[str, object]:
    """Split a pairs file into `train.tsv` and `val.tsv` (the last `val_fraction` of the pairs
    validate), and write their tokenizer and `meta.json` into `out_dir` — atomically, as
    `nima.data.prepare` does for a language model's corpus.

    Returns:
        The contents of `meta.json`: `kind` (`"pairs"`), `source_sha256`, `tokenizer`,
        `tokenizer_file`, `vocab_size`, `val_fraction`, `train_pairs`, `val_pairs`.

    Raises:
        ValueError: a malformed pairs file, `val_fraction` outside `[0, 1)`, or a split
            without pairs.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"prepare_pairs: val_fraction must be in [0, 1), got {val_fraction}")
    pairs = read_pairs(pairs_path)
    split = int(len(pairs) * (1.0 - val_fraction))
    if split == 0 or split == len(pairs):
        raise ValueError(f"prepare_pairs: {len(pairs)} pairs leave no "
                         f"{'training' if split == 0 else 'validation'} pairs at "
                         f"val_fraction={val_fraction}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = pair_tokenizer(pairs)
    for name, part in (("train.tsv", pairs[:split]), ("val.tsv", pairs[split:])):
        atomic_write_text(out / name, "".join(f"{s}\t{t}\n" for s, t in part))
    tokenizer.save(out / TOKENIZER_FILE)
    meta = {"kind": "pairs",
            "source_sha256": text_digest(Path(pairs_path).read_text(encoding="utf-8")),
            "tokenizer": "char", "tokenizer_file": TOKENIZER_FILE,
            "vocab_size": tokenizer.vocab_size, "val_fraction": val_fraction,
            "train_pairs": split, "val_pairs": len(pairs) - split}
    atomic_write_text(out / "meta.json", json.dumps(meta, indent=2) + "\n")
    return meta
