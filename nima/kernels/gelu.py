r"""GPT-2's tanh GELU, forward and backward, with its constant written once (`CUBIC`).

$$y = \tfrac12\,x\,(1 + t), \qquad t = \tanh u, \qquad u = \sqrt{2/\pi}\,(x + c\,x^3),
\quad c = 0.044715;$$

$$\bar x = \bar y\left(\tfrac12(1 + t) + \tfrac12\,x\,(1 - t^2)\,u'\right), \qquad
u' = \sqrt{2/\pi}\,(1 + 3c\,x^2).$$

The forward computes in one scratch array, in place, and returns $t$ for the backward to use.
In NumPy the backward's line makes about thirteen temporaries the size of the activation; at
the baby GPT's (12, 64, 512) each is 1.5 MB of fresh memory, and the page faults cost more than
the arithmetic. The numba kernel reads $\bar y$, $x$, $t$ once and writes $\bar x$ once.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from nima.kernels.threads import launch, parallel_kernel

_CHUNK = 4096  # elements per parallel task
CUBIC = 0.044715  # c, the weight of x^3 in GPT-2's tanh approximation of Phi
SQRT_2_OVER_PI = math.sqrt(2 / math.pi)


# --8<-- [start:gelu_tanh_forward]
def gelu_tanh_forward(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`(y, t)`: the tanh GELU of `x` and $t = \\tanh u$, which the backward needs."""
    # in one scratch array, in place: every fresh (12, 64, 512) temporary costs page faults,
    # more than the arithmetic; x * x * x, not x**3: the power calls pow per element, 5x slower
    t = np.multiply(x, x, out=np.empty_like(x))  # an array even for 0-d x
    t *= x
    t *= CUBIC
    t += x
    t *= SQRT_2_OVER_PI
    np.tanh(t, out=t)  # t = tanh(u)
    y = t + 1  # y = 0.5 x (1 + t)
    y *= x
    y *= 0.5
    return y, t
# --8<-- [end:gelu_tanh_forward]


# --8<-- [start:gelu_tanh_backward_numpy]
def gelu_tanh_backward_numpy(grad: np.ndarray, x: np.ndarray, t: np.ndarray) -> np.ndarray:
    """$\\bar x$ from the output gradient, the input and the saved $t = \\tanh u$ (reference)."""
    du = SQRT_2_OVER_PI * (1 + 3 * CUBIC * x * x)
    return grad * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * du)
# --8<-- [end:gelu_tanh_backward_numpy]


# --8<-- [start:gelu_tanh_backward_numba]
@njit(cache=True)
def _gelu_tanh_backward_chunk(g: np.ndarray, x: np.ndarray, t: np.ndarray, out: np.ndarray,
                              start: int, stop: int) -> None:
    """The formula over `start:stop` of the flat arrays, constants in x's dtype."""
    f = x.dtype.type
    half, one, c0, c1 = f(0.5), f(1), f(SQRT_2_OVER_PI), f(3 * CUBIC)
    for i in range(start, stop):
        xi, ti = x[i], t[i]
        du = c0 * (one + c1 * xi * xi)
        out[i] = g[i] * (half * (one + ti) + half * xi * (one - ti * ti) * du)


@parallel_kernel()
def _gelu_tanh_backward_chunks(g: np.ndarray, x: np.ndarray, t: np.ndarray,
                               out: np.ndarray) -> None:
    """`prange` over chunks of 4096 elements, each one serial `_gelu_tanh_backward_chunk`."""
    n = x.size
    for c in prange((n + _CHUNK - 1) // _CHUNK):
        _gelu_tanh_backward_chunk(g, x, t, out, c * _CHUNK, min(n, (c + 1) * _CHUNK))


def gelu_tanh_backward_numba(grad: np.ndarray, x: np.ndarray, t: np.ndarray) -> np.ndarray:
    """$\\bar x$ in one pass over flat contiguous copies (numba kernel)."""
    out = np.empty(x.shape, dtype=x.dtype)
    flat = [np.ascontiguousarray(np.broadcast_to(a, x.shape)).reshape(-1) for a in (grad, x, t)]
    launch(_gelu_tanh_backward_chunks, out.size, *flat, out.reshape(-1))
    return out
# --8<-- [end:gelu_tanh_backward_numba]
