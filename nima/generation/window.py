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

Only `model.forward(idx, caches=...) -> (logits, _)`, `model.new_caches()`,
`model.config.block_size` (and, for a model that carries state, `model.next_segment`) are used.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nima._tensor import Tensor
from nima.settings import check_int

__all__ = ["ContextWindow", "as_prompts"]


class ContextWindow:
    """The cached window of a batch of sequences that share one length.

    Args:
        model: anything with `forward(idx, caches=...)`, `new_caches()`, `config.block_size`.
        keep: how many tokens stay when the full window slides, in `[1, block_size]`; None is
            `block_size // 2` (at least 1).

    Raises:
        ValueError: if `keep` is out of range.
    """

    def __init__(self, model: Any, keep: int | None = None) -> None:
        self.model = model
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
        new = seq[:, self.start + self.cached:n]  # (B, t): usually one token
        logits, _ = self.model.forward(new, caches=self.caches)  # (B, t, V): the one forward
        self.cached = n - self.start
        logits = logits.data if isinstance(logits, Tensor) else np.asarray(logits)
        return logits[:, -1, :].astype(np.float64)  # (B, V)
    # --8<-- [end:next_logits]

    def reorder(self, rows: np.ndarray) -> None:
        """Make cache row `i` a copy of row `rows[i]` (beam search follows its beams)."""
        for cache in self.caches or ():
            cache.reorder(rows)


def as_prompts(name: str, idx: Any) -> np.ndarray:
    """`idx` (a `Tensor`, array or nested list) as int64 prompts `(B, T)` with `T >= 1`."""
    ids = np.asarray(idx.data if isinstance(idx, Tensor) else idx)
    if ids.ndim == 1:
        raise ValueError(f"{name}: idx must be a batch of prompts (B, T); for one prompt use "
                         f"idx[None, :], got shape {ids.shape}")
    if ids.ndim != 2 or ids.shape[1] < 1 or ids.shape[0] < 1 or \
            (ids.size and ids.dtype.kind not in "iu"):
        raise ValueError(f"{name}: idx must be integer token ids of shape (B, T) with B, T >= 1, "
                         f"got {ids.dtype} {ids.shape}")
    return ids.astype(np.int64)
