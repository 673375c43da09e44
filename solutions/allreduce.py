"""Solutions of exercises/allreduce.py."""

import math

import numpy as np

from nima.distributed.ring import chunk_bounds


def ring_simulation(vectors):
    N, n = len(vectors), len(vectors[0])
    bounds = chunk_bounds(n, N)
    x = [v.copy() for v in vectors]
    sent = [0] * N

    def span(c):
        c %= N
        return slice(bounds[c], bounds[c + 1])

    for s in range(N - 1):  # reduce-scatter
        messages = [x[r][span(r - s)].copy() for r in range(N)]  # all sent at once
        for r in range(N):
            x[(r + 1) % N][span(r - s)] += messages[r]
            sent[r] += messages[r].size
    for s in range(N - 1):  # all-gather
        messages = [x[r][span(r + 1 - s)].copy() for r in range(N)]
        for r in range(N):
            x[(r + 1) % N][span(r + 1 - s)] = messages[r]
            sent[r] += messages[r].size
    return x, sent


def _gather_at_rank_zero(vectors):
    """Everyone sends everything to rank 0, which sends the sum back: right, but not a ring."""
    N, total = len(vectors), np.sum(vectors, axis=0)
    n = len(vectors[0])
    return [total.copy() for _ in range(N)], [n * (N - 1)] + [n] * (N - 1)


def _ring_gather_adds(vectors):
    """Adds in the all-gather too, instead of overwriting: contributions counted again."""
    N, n = len(vectors), len(vectors[0])
    bounds = chunk_bounds(n, N)
    x = [v.copy() for v in vectors]
    sent = [0] * N

    def span(c):
        c %= N
        return slice(bounds[c], bounds[c + 1])

    for phase in range(2):
        for s in range(N - 1):
            messages = [x[r][span(r - s + phase)].copy() for r in range(N)]
            for r in range(N):
                x[(r + 1) % N][span(r - s + phase)] += messages[r]
                sent[r] += messages[r].size
    return x, sent


def crossover_bytes(N, alpha, B):
    # 2(N-1)(a + S/(NB)) = 2 log2 N (a + S/B)  <=>  S ((N-1)/N - log2 N) / B = (log2 N - N + 1) a
    L = math.log2(N)
    return (L - (N - 1)) * alpha * B / ((N - 1) / N - L)


WRONG = {
    "ring_simulation": [_gather_at_rank_zero, _ring_gather_adds],
    "crossover_bytes": [lambda N, alpha, B: alpha * B,  # the latency-bandwidth product alone
                        lambda N, alpha, B: (N - 1) * alpha * B],
}
