r"""The sum of squares $\sum_i x_i^2$ of an array, accumulated in float64: what a gradient norm
needs.

`clip_grad_norm_` computes $\|g\| = \sqrt{\sum_p \sum_i g_{p,i}^2}$ over every parameter's
gradient once per training step. Written as `np.dot(g, g)` it is a BLAS call, and OpenBLAS wakes
its thread pool for a long vector: on a 2-core machine with another process on the second core,
that wait cost 50 ms of a 60 ms training step (`benchmarks/bench_train_step.py`). The numba
kernel runs on the calling thread: it widens each float32 to float64 and multiply-adds, 8 lanes
at a time, reading the array once. The NumPy reference squares into a float64 temporary and sums
it (NumPy's own loops; no BLAS either).
"""

import numpy as np
from numba import njit


def sum_of_squares_numpy(x: np.ndarray) -> float:
    r"""$\sum_i x_i^2$ in float64 (NumPy reference)."""
    return float(np.square(x, dtype=np.float64).sum())


@njit(cache=True, fastmath={"reassoc", "contract"})
def _sum_of_squares_flat(x: np.ndarray) -> float:
    """The sum over a flat array, each element widened to float64 first (vectorised)."""
    s = 0.0
    for i in range(x.size):
        v = np.float64(x[i])
        s += v * v
    return s


def sum_of_squares_numba(x: np.ndarray) -> float:
    r"""$\sum_i x_i^2$ in float64, one pass on the calling thread (numba kernel)."""
    return float(_sum_of_squares_flat(np.ascontiguousarray(x).reshape(-1)))
