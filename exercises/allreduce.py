r"""Exercises of the Ring allreduce page (docs/allreduce.md)."""

import math

import numpy as np

from exercises import close, equal
from nima.distributed.ring import chunk_bounds


def ring_simulation(vectors: list[np.ndarray]) -> tuple[list[np.ndarray], list[int]]:
    r"""The ring allreduce, simulated in one process.

    `vectors` holds the 1-D vector of each of $N$ ranks. Cut every vector into $N$ chunks with
    `chunk_bounds(len, N)`. Then run the $N - 1$ reduce-scatter steps — at step $s$ every rank
    $r$ sends chunk $(r - s) \bmod N$ to rank $r + 1$, which adds it into its own copy — and
    the $N - 1$ all-gather steps — rank $r$ sends chunk $(r + 1 - s) \bmod N$, and the receiver
    overwrites its copy. All sends of a step happen at once: take them from the state before
    the step. Return `(results, sent)`: each rank's final vector, and how many elements each
    rank sent in all.
    """
    raise NotImplementedError


def check_ring_simulation(ring_simulation) -> None:
    """For 2, 3 and 5 ranks and lengths that split evenly and unevenly (and shorter than N):
    every rank's result must be the sum, bitwise the same on every rank, and each rank must
    have sent exactly the chunks the ring sends — every chunk but one in each phase."""
    rng = np.random.default_rng(0)
    for N, n in [(2, 8), (3, 10), (5, 23), (5, 3)]:
        vectors = [rng.integers(-50, 50, n).astype(np.float64) for _ in range(N)]
        results, sent = ring_simulation([v.copy() for v in vectors])
        sizes = np.diff(chunk_bounds(n, N))
        for r in range(N):
            close(results[r], np.sum(vectors, axis=0), f"rank {r}'s result (N={N}, n={n})")
            equal(bool(np.array_equal(results[r], results[0])), True,
                  f"rank {r}'s result bitwise equal to rank 0's")
            expected = 2 * n - sizes[(r + 1) % N] - sizes[(r + 2) % N]
            equal(int(sent[r]), int(expected), f"elements sent by rank {r} (N={N}, n={n})")


def crossover_bytes(N: int, alpha: float, B: float) -> float:
    r"""When does the ring beat a tree?

    With $N$ ranks, latency $\alpha$ and bandwidth $B$, the ring costs
    $2(N-1)(\alpha + \frac{S}{NB})$ and a tree about $2\log_2 N\,(\alpha + \frac SB)$ for a
    message of $S$ bytes. Return the size $S$ at which the two are equal (the ring is faster
    above it), for $N > 2$.
    """
    raise NotImplementedError


def check_crossover_bytes(crossover_bytes) -> None:
    """Finds the crossing of the two formulas by bisection for several N and links, and
    compares to 1e-6 relative."""
    for N, alpha, B in [(4, 5e-6, 1e9), (16, 2e-6, 12.5e9), (64, 1e-5, 1.25e9), (3, 1e-6, 1e9)]:
        def gap(S: float, N=N, alpha=alpha, B=B) -> float:
            return 2 * (N - 1) * (alpha + S / (N * B)) - 2 * math.log2(N) * (alpha + S / B)

        lo, hi = 0.0, 1e15
        for _ in range(200):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if gap(mid) > 0 else (lo, mid)
        close(crossover_bytes(N, alpha, B), lo, f"the crossover for N={N}", rtol=1e-6)
