r"""`MemoryBank`: a fixed-capacity FIFO of past keys and values, one per sequence stream.

The bank holds at most `capacity` (key, value) pairs per stream and head: arrays of shape
`(B, nh, capacity, hd)` allocated once, so its memory never grows. Writes go round a ring —
entry number $c$ (counting every entry ever written) sits in slot $c \bmod \text{capacity}$ —
so once it is full each new entry evicts the oldest. What is written is stored *detached*
(plain arrays: no gradient flows into the past, as in Memorizing Transformers), and `read()`
hands out copies, oldest first, so a later write can never change an array that some graph
saved for its backward. The arrays and the count are buffers: `state_dict` holds the bank, and a
checkpoint resumes with its memory.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nima._tensor import Tensor
from nima.nn.cache import checked_rows
from nima.nn.module import Module


class MemoryBank(Module):
    """Past keys and values `(B, nh, capacity, hd)`, first in first out.

    Args:
        capacity: the most entries kept per stream and head.
        n_head: heads; one entry is `(n_head, head_dim)`.
        head_dim: the width of a head's key and value.
        batch_size: the number of streams $B$ (each row its own memory).
        dtype: of the stored keys and values.
    """

    def __init__(self, capacity: int, n_head: int, head_dim: int, batch_size: int = 1,
                 dtype: Any = np.float32) -> None:
        super().__init__()
        for key, value in (("capacity", capacity), ("n_head", n_head), ("head_dim", head_dim),
                           ("batch_size", batch_size)):
            if value < 1:
                raise ValueError(f"MemoryBank: {key} must be >= 1, got {value}")
        self.capacity = capacity
        shape = (batch_size, n_head, capacity, head_dim)
        self.register_buffer("keys", Tensor(np.zeros(shape, dtype=dtype)))
        self.register_buffer("values", Tensor(np.zeros(shape, dtype=dtype)))
        self.register_buffer("count", Tensor(np.zeros((), dtype=np.int64)))  # ever written

    @property
    def size(self) -> int:
        """How many entries the bank holds now (at most `capacity`)."""
        return min(int(self.count.data), self.capacity)

    # --8<-- [start:write]
    def write(self, k: Any, v: Any) -> None:
        """Append keys and values `(B, nh, n, hd)` (arrays or Tensors, stored detached); the
        oldest entries make room once the bank is full."""
        k = np.asarray(k.data if isinstance(k, Tensor) else k)
        v = np.asarray(v.data if isinstance(v, Tensor) else v)
        B, nh, cap, hd = self.keys.shape
        if k.shape != v.shape or k.ndim != 4 or k.shape[:2] != (B, nh) or k.shape[3] != hd:
            raise ValueError(f"MemoryBank.write: expected keys and values of shape ({B}, {nh}, "
                             f"n, {hd}), got {k.shape} and {v.shape}")
        n, count = k.shape[2], int(self.count.data)
        kept = min(n, cap)  # of a long write only the last `capacity` entries survive
        slots = (count + n - kept + np.arange(kept)) % cap  # ring positions of the survivors
        self.keys.data[:, :, slots] = k[:, :, n - kept:]
        self.values.data[:, :, slots] = v[:, :, n - kept:]
        self.count.data[...] = count + n
    # --8<-- [end:write]

    def read(self) -> tuple[np.ndarray, np.ndarray]:
        """Copies of the entries, oldest first: keys and values `(B, nh, size, hd)`."""
        count = int(self.count.data)
        if count <= self.capacity:
            return self.keys.data[:, :, :count].copy(), self.values.data[:, :, :count].copy()
        order = (count + np.arange(self.capacity)) % self.capacity  # oldest slot first
        return self.keys.data[:, :, order], self.values.data[:, :, order]  # fancy: copies

    def reset(self) -> None:
        """Forget every entry."""
        self.keys.data[...] = 0
        self.values.data[...] = 0
        self.count.data[...] = 0

    def reorder(self, indices: np.ndarray) -> None:
        """Keep streams `indices` `(B',)` in that order (for beam search over a decoding bank)."""
        rows = checked_rows("MemoryBank", indices, self.keys.shape[0])
        self.keys = Tensor(self.keys.data[rows])
        self.values = Tensor(self.values.data[rows])

    def extra_repr(self) -> str:
        B, nh, cap, hd = self.keys.shape
        return f"capacity={cap}, n_head={nh}, head_dim={hd}, batch_size={B}, size={self.size}"
