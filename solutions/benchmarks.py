"""Solutions of exercises/benchmarks.py."""

import math
import statistics


def gflops(a_shape, b_shape, ms):
    batch = math.prod(a_shape[:-2])  # 1 for a plain product
    M, K = a_shape[-2:]
    N = b_shape[-1]
    return 2 * batch * M * K * N / (ms / 1e3) / 1e9


def _gflops_no_batch(a_shape, b_shape, ms):
    """Counts one matrix of a batched product."""
    return gflops(a_shape[-2:], b_shape[-2:], ms)


def race(f, g, repeats, clock):
    f()
    g()  # untimed warm-ups
    times = {f: [], g: []}
    for _ in range(repeats):
        for fn in (f, g):  # alternating: both see the same load
            start = clock()
            fn()
            times[fn].append(clock() - start)
    return statistics.median(times[f]) / statistics.median(times[g])


def _race_means(f, g, repeats, clock):
    """Averages instead of medians: every stall counts in full."""
    f()
    g()
    total = {f: 0.0, g: 0.0}
    for _ in range(repeats):
        for fn in (f, g):
            start = clock()
            fn()
            total[fn] += clock() - start
    return total[f] / total[g]


def _race_cold(f, g, repeats, clock):
    """Times the first call too: the compile sits in the sample."""
    times = {f: [], g: []}
    for _ in range(repeats + 1):
        for fn in (f, g):
            start = clock()
            fn()
            times[fn].append(clock() - start)
    return statistics.median(times[f]) / statistics.median(times[g])


WRONG = {
    "gflops": [_gflops_no_batch, lambda a_shape, b_shape, ms: gflops(a_shape, b_shape, ms) / 2],
    "race": [_race_means, _race_cold],
}
