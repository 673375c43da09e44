r"""The error function $\operatorname{erf}(x) = \frac{2}{\sqrt\pi}\int_0^x e^{-t^2}\,dt$.

NumPy has no `erf`; exact GELU needs one. A plain numba loop over `math.erf` (libm's, accurate to
the last bit in float64) is enough: GELU is not a hot path next to the matmuls around it.
"""

from __future__ import annotations

import math

import numba
import numpy as np


@numba.njit(cache=True)
def _erf_flat(x: np.ndarray, out: np.ndarray) -> None:
    for i in range(x.size):
        out[i] = math.erf(x[i])


def erf(x: np.ndarray) -> np.ndarray:
    """`erf` of every element of `x`, in `x`'s dtype."""
    flat = np.ascontiguousarray(x).reshape(-1)
    out = np.empty_like(flat)
    _erf_flat(flat, out)
    return out.reshape(np.shape(x))
