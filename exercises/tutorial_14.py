r"""Exercises of tutorial 14, training on two processes (no MPI needed)."""

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from exercises import close
from nima.distributed import Pipeline, shard

PIPELINE = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "pipeline.json"


def rank_shard(array: np.ndarray, N: int, r: int, axis: int, groups: int) -> np.ndarray:
    r"""A rank's share of a fused weight.

    A fused projection stacks `groups` matrices along `axis` (q, k and v: 3; a gated FFN's gate
    and value: 2). Cut the axis into the `groups` parts, take rank `r`'s contiguous $1/N$ of
    *each* part, and join them in order. (2 ranks, `groups=3`, a `(6, d)` weight: rank 0 gets
    rows 0, 2, 4.)
    """
    raise NotImplementedError


def check_rank_shard(rank_shard) -> None:
    """Compares with `nima.distributed.shard` (through a stand-in communicator) for rows and
    columns, 1 to 3 groups, 2 and 4 ranks."""
    array = np.arange(24 * 6, dtype=np.float64).reshape(24, 6)
    for N in (2, 4):
        for groups in (1, 2, 3):
            for r in range(N):
                comm = SimpleNamespace(rank=r, size=N)
                close(rank_shard(array, N, r, 0, groups), shard(array, comm, 0, groups),
                      f"rows of rank {r} of {N}, {groups} groups")
        close(rank_shard(array, 2, 1, 1, 3), shard(array, SimpleNamespace(rank=1, size=2), 1, 3),
              "columns of rank 1 of 2, 3 groups")


def bubble(spans: list[list[tuple[float, float]]], elapsed: float) -> float:
    r"""The bubble, measured.

    `spans[s]` lists the `(start, end)` times stage $s$ spent computing during one pipeline
    step of `elapsed` seconds. Return the bubble: the share of the step the stages spent *not*
    computing, averaged over the stages.
    """
    raise NotImplementedError


def check_bubble(bubble) -> None:
    """Uses the GPipe step recorded in `benchmarks/results/pipeline.json` and compares with
    1 minus `Pipeline.busy_fraction`, averaged over its stages."""
    timeline = json.loads(PIPELINE.read_text(encoding="utf-8"))["timeline"]
    spans = [[(s["start"], s["end"]) for s in stage] for stage in timeline["stages"]]
    elapsed = max(end for stage in spans for _, end in stage)
    busy = [Pipeline.busy_fraction(SimpleNamespace(
        spans=[SimpleNamespace(start=a, end=b) for a, b in stage], elapsed=elapsed))
        for stage in spans]
    close(bubble(spans, elapsed), 1 - float(np.mean(busy)), "the bubble", rtol=1e-12)
