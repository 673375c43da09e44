"""The decoding-state protocol of token-mixing modules, and the row check every cache shares.

A module used in place of self-attention decodes with a per-layer state: `module.new_cache()`
returns an empty one, and `module(x, cache=state)` reads `x` as the *new* tokens only, at
positions `state.length ...`, and updates the state in place. Every such state has

- `length`: how many positions it has seen (the position of the next token);
- `reorder(indices)`: keep batch rows `indices` `(B',)` in that order (beam search moves each
  beam's history to where its successors are);
- `reset()`: forget everything, to start a new sequence.

`nima.nn.attention.KVCache` is one; the Deep Tree Echo modules add theirs.
"""

from __future__ import annotations

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
