r"""The KV-cached context window every decoding strategy steps through.

A model sees at most `block_size` positions. Decoding with a KV cache feeds only the new token
each step; its keys and values join those cached for the window's earlier tokens. Once the
window is full the oldest tokens must go — but with learned (or sinusoidal) absolute
positions every cached key was computed *at its position*, so the cache cannot just be shifted
left: a token that moves from position 5 to position 4 needs new keys and values. The window
therefore slides in jumps and the cache is rebuilt:

* the first forward (the prompt, "prefill") sees the last `block_size` tokens of the prompt;
* each step feeds the tokens not yet cached (one, normally);
* when the next token would not fit (`window length = block_size` already), the window
  restarts at the last `keep` tokens, which are re-fed in one forward to rebuild the cache.

With `keep = block_size // 2` (the default) a rebuild costs one forward of `block_size / 2`
tokens every `block_size / 2` steps, and every prediction sees between `block_size / 2` and
`block_size` tokens of context. With `keep = block_size` every step after the first full one
rebuilds from the last `block_size` tokens: exactly nanoGPT's `idx[:, -block_size:]` crop,
at the price of a full forward per step (no cache benefit).

**A model that carries state** (`model.config.carries_state`: echo or memory layers) reads
the text as it trained, in consecutive segments of `block_size` tokens: the prefill feeds the
whole prompt, segment by segment, and a full window is followed by `model.next_segment(caches)`
— the window starts empty at position 0 while the echo state and the memory bank carry on. So
its predictions draw on text far beyond `block_size`, and equal those of the training forward
on the same segments.

Prompts of different lengths are left-padded to one length (`as_prompts`), as Hugging Face
does, so that every row's next token is predicted from its last column; the window passes the
model an `attention_mask` for the columns that hold padding, and the model's caches remember it.
The window slides for the whole batch at once, when the padded rows fill it.

Only `model.forward(idx, caches=...) -> (logits, _)` (with `attention_mask=` for padded
prompts), `model.new_caches()`, `model.config.block_size` (and, for a model that carries state,
`model.next_segment`) are used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from nima._tensor import Tensor
from nima.settings import check_int

__all__ = ["ContextWindow", "Prompts", "as_prompts"]


@dataclass(frozen=True)
class Prompts:
    """A batch of prompts, left-padded to one length `T0`.

    Attributes:
        ids: `(B, T0)` int64 token ids. A padded row's padding holds copies of its first
            token: the model never sees them (they are masked), and a logits processor that
            asks which tokens a row holds (the repetition penalty) sees the row's own tokens.
        starts: `(B,)` where each row's prompt begins; 0 for a row without padding.
    """

    ids: np.ndarray
    starts: np.ndarray

    @property
    def padded(self) -> bool:
        """Whether any row is padded."""
        return bool(self.starts.any())

    def repeat(self, r: int) -> Prompts:
        """Each prompt `r` times in consecutive rows: row `b` becomes rows `b r ... b r + r - 1`."""
        return Prompts(np.repeat(self.ids, r, axis=0), np.repeat(self.starts, r))

    def with_padding(self, seq: np.ndarray, pad_id: int) -> np.ndarray:
        """`seq` `(B, L)`, whose first `T0` columns are these prompts (repeated as `seq`'s rows
        are), with each row's padding set to `pad_id`."""
        r = seq.shape[0] // self.ids.shape[0]
        seq[np.arange(seq.shape[1]) < np.repeat(self.starts, r)[:, None]] = pad_id
        return seq


class ContextWindow:
    """The cached window of a batch of sequences that share one length.

    Args:
        model: anything with `forward(idx, caches=...)`, `new_caches()`, `config.block_size`.
        keep: how many tokens stay when the full window slides, in `[1, block_size]`; None is
            `block_size // 2` (at least 1).

        starts: `(B,)` where each row's prompt begins after its left padding (None: no row is
            padded).

    Raises:
        ValueError: if `keep` is out of range.
    """

    def __init__(self, model: Any, keep: int | None = None,
                 starts: np.ndarray | None = None) -> None:
        self.model = model
        self.starts = starts if starts is not None and starts.any() else None
        self.block_size = int(model.config.block_size)
        keep = max(self.block_size // 2, 1) if keep is None else keep
        self.keep = check_int("ContextWindow.keep", keep, ge=1)
        if self.keep > self.block_size:
            raise ValueError(f"ContextWindow.keep: must be <= block_size={self.block_size}, "
                             f"got {keep!r}")
        self.streams = bool(getattr(model.config, "carries_state", False))
        self.caches: list | None = None
        self.start = 0  # position in the sequence of the window's first token
        self.cached = 0  # how many of the window's tokens the caches hold
        self.rebuilds = 0  # how many times the window slid

    # --8<-- [start:next_logits]
    def next_logits(self, seq: np.ndarray) -> np.ndarray:
        """Logits `(B, V)` float64 for the token after `seq` `(B, n)`, feeding the model only
        the tokens of `seq` its caches do not hold yet (sliding the window when full)."""
        n = seq.shape[1]
        if self.caches is None:  # prefill: the prompt's last block_size tokens (all, streaming)
            self.start, self.cached = 0 if self.streams else max(0, n - self.block_size), 0
            self.caches = self.model.new_caches()
        while n - self.start > self.block_size and self.streams:  # the next segment
            rest = seq[:, self.start + self.cached:self.start + self.block_size]
            if rest.shape[1]:
                self.model.forward(rest, caches=self.caches)  # the segment's last tokens
            self.model.next_segment(self.caches)  # state carried, window emptied
            self.start, self.cached = self.start + self.block_size, 0
        if n - self.start > self.block_size:  # full: restart at the last `keep` tokens
            self.start, self.cached = n - self.keep, 0
            self.caches = self.model.new_caches()
            self.rebuilds += 1
        first = self.start + self.cached
        new = seq[:, first:n]  # (B, t): usually one token
        if self.starts is not None and first < self.starts.max():  # padding among them
            mask = np.arange(first, n) >= self.starts[:, None]  # (B, t): True = real token
            logits, _ = self.model.forward(new, attention_mask=mask, caches=self.caches)
        else:
            logits, _ = self.model.forward(new, caches=self.caches)  # (B, t, V): the one forward
        self.cached = n - self.start
        logits = logits.data if isinstance(logits, Tensor) else np.asarray(logits)
        return logits[:, -1, :].astype(np.float64)  # (B, V)
    # --8<-- [end:next_logits]

    def reorder(self, rows: np.ndarray) -> None:
        """Make cache row `i` a copy of row `rows[i]` (beam search follows its beams)."""
        for cache in self.caches or ():
            cache.reorder(rows)
        if self.starts is not None:
            self.starts = self.starts[rows]


# --8<-- [start:as_prompts]
def as_prompts(name: str, idx: Any) -> Prompts:
    """The prompts `idx`, left-padded to one length:

    * a `Tensor`, array or list of lists `(B, T)` of one length — no padding;
    * a list of token lists of different lengths — each left-padded to the longest;
    * a pair `(ids, attention_mask)`, both `(B, T)`, the mask 1 (or True) at real tokens and 0
      at padding, which must be left padding (each row's last token real), as Hugging Face's
      `generate` expects;
    * a `Prompts`, as it is.

    Raises:
        ValueError: not integer ids, an empty prompt, or a mask that is not left padding.
    """
    if isinstance(idx, Prompts):
        return idx
    mask = None
    if isinstance(idx, tuple) and len(idx) == 2 and _ndim(idx[0]) == _ndim(idx[1]) == 2:
        idx, mask = idx
    elif isinstance(idx, list | tuple) and idx and all(_ndim(row) == 1 for row in idx) and \
            len({len(row) for row in idx}) > 1:  # ragged: left-pad each row to the longest
        if not all(len(row) for row in idx):
            raise ValueError(f"{name}: prompt {[len(row) for row in idx].index(0)} is empty; "
                             f"every prompt needs at least one token")
        T = max(len(row) for row in idx)
        mask = np.array([[0] * (T - len(row)) + [1] * len(row) for row in idx])
        idx = [[0] * (T - len(row)) + list(row) for row in idx]
    ids = np.asarray(idx.data if isinstance(idx, Tensor) else idx)
    if ids.ndim == 1:
        raise ValueError(f"{name}: idx must be a batch of prompts (B, T); for one prompt use "
                         f"idx[None, :], got shape {ids.shape}")
    if ids.ndim != 2 or ids.shape[1] < 1 or ids.shape[0] < 1 or \
            (ids.size and ids.dtype.kind not in "iu"):
        raise ValueError(f"{name}: idx must be integer token ids of shape (B, T) with B, T >= 1, "
                         f"got {ids.dtype} {ids.shape}")
    ids = ids.astype(np.int64)
    if mask is None:
        return Prompts(ids, np.zeros(len(ids), dtype=np.int64))
    mask = np.asarray(mask.data if isinstance(mask, Tensor) else mask)
    if mask.shape != ids.shape or (mask.dtype != np.bool_ and mask.dtype.kind not in "iu"):
        raise ValueError(f"{name}: attention_mask must be 0/1 or bool of the ids' shape "
                         f"{ids.shape}, got {mask.dtype} {mask.shape}")
    real = mask.astype(bool)  # (B, T)
    if (real[:, :-1] & ~real[:, 1:]).any() or not real[:, -1].all():
        row = int(np.flatnonzero((real[:, :-1] & ~real[:, 1:]).any(1) | ~real[:, -1])[0])
        raise ValueError(f"{name}: prompts must be left-padded (padding first, then every "
                         f"token real), as row {row} of the attention_mask is not: "
                         f"{mask[row].tolist()}")
    starts = (~real).sum(axis=1)  # (B,)
    ids = np.where(real, ids, ids[np.arange(len(ids)), starts][:, None])  # padding: 1st token
    return Prompts(ids, starts)
# --8<-- [end:as_prompts]


def _ndim(x: Any) -> int:
    """The number of dimensions of `x` as an array, or -1 for a ragged nest of lists."""
    if isinstance(x, Tensor | np.ndarray):
        return x.ndim
    try:
        return np.ndim(x)
    except ValueError:  # NumPy refuses ragged nests
        return -1
