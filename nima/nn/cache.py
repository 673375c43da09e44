"""The decoding-state protocol of token-mixing modules, and the row check every cache shares.

A module used in place of self-attention decodes with a per-layer state: `module.new_cache()`
returns an empty one, and `module(x, cache=state)` reads `x` as the *new* tokens only, at
positions `state.length ...`, and updates the state in place. Every such state has

- `length`: how many positions it has seen (the position of the next token);
- `reorder(indices)`: keep batch rows `indices` `(B',)` in that order (beam search moves each
  beam's history to where its successors are);
- `reset()`: forget everything, to start a new sequence.

A state that outlives the context window (an echo state, a memory bank) also has
`next_segment()`: start the next segment of a stream of `block_size`-token segments — forget
the window, keep what carries over, and count positions from 0 again. `next_segment(cache)`
calls it where it exists and `reset()` elsewhere.

`nima.nn.attention.KVCache` is one; the Deep Tree Echo modules add theirs, and `CacheGroup`
holds the states of modules that decode together.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class DecodingCache(Protocol):
    """What a token-mixing module's decoding state offers (see the module docstring)."""

    @property
    def length(self) -> int: ...

    def reorder(self, indices: np.ndarray) -> None: ...

    def reset(self) -> None: ...


def checked_rows(owner: str, indices: Any, batch: int) -> np.ndarray:
    """`indices` as a 1-D integer array of rows in `[0, batch)`, or a ValueError naming `owner`."""
    rows = np.asarray(indices)
    if rows.ndim != 1 or rows.dtype.kind not in "iu" or (rows.size and (
            rows.min() < 0 or rows.max() >= batch)):
        raise ValueError(f"{owner}.reorder: indices must be 1-D ints in [0, {batch}), got "
                         f"{indices!r}")
    return rows


def next_segment(cache: DecodingCache) -> None:
    """Start the next segment of a stream: `cache.next_segment()` for a state that carries over
    (echo, memory), `cache.reset()` for one that does not (a KV cache, a tree cache)."""
    step = getattr(cache, "next_segment", None)
    if step is None:
        cache.reset()
    else:
        step()


class CacheGroup:
    """The decoding states of modules that decode together — a block's attention and echo
    layer, the steps of a recursion — as one: its `length` is the first part's, and `reorder`,
    `reset` and `next_segment` reach every part."""

    def __init__(self, parts: Sequence[DecodingCache]) -> None:
        self.parts = list(parts)

    @property
    def length(self) -> int:
        return self.parts[0].length

    def reorder(self, indices: np.ndarray) -> None:
        for part in self.parts:
            part.reorder(indices)

    def reset(self) -> None:
        for part in self.parts:
            part.reset()

    def next_segment(self) -> None:
        for part in self.parts:
            next_segment(part)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(length={self.length}, parts={self.parts})"
