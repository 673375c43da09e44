"""Communicators that need no MPI, for the in-process tests of this folder."""

from __future__ import annotations

import numpy as np

from nima.distributed import SingleProcess


class Counting(SingleProcess):
    """One process, counting allreduce calls and the elements they carried."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def _allreduce(self, buf: np.ndarray, op: str) -> np.ndarray:
        self.calls.append(buf.size)
        return buf


class Twins(SingleProcess):
    """Rank `rank` of `size` identical processes: every rank holds the same values, so a sum
    over ranks is `size` times the value (max and min are the value)."""

    def __init__(self, rank: int = 0, size: int = 2) -> None:
        self.rank, self.size = rank, size

    def _allreduce(self, buf: np.ndarray, op: str) -> np.ndarray:
        if op == "sum":
            buf *= self.size
        return buf
