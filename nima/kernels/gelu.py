r"""GPT-2's tanh GELU, forward and backward, with its constant written once (`CUBIC`).

$$y = \tfrac12\,x\,(1 + \tanh u), \qquad u = \sqrt{2/\pi}\,(x + c\,x^3), \quad c = 0.044715.$$

Since $\tfrac12(1 + \tanh u) = \sigma(2u) = 1 / (1 + e^{-2u})$, this is $y = x\,s$ with
$s = \sigma(2u)$, and

$$\bar x = \bar y\,\bigl(s + 2x\,s\,(1 - s)\,u'\bigr), \qquad
u' = \sqrt{2/\pi}\,(1 + 3c\,x^2).$$

The sigmoid form takes one exponential and no tanh (numba has no vectorised tanh; `fast_exp`
vectorises), and it cancels nothing: $1 + \tanh u$ subtracts nearly equal numbers for
$u \ll 0$, $1 / (1 + e^{-2u})$ does not.

The backward recomputes $s$ from $x$ instead of keeping it: one more exponential per element
costs less than a saved array, which at the baby GPT's (12, 64, 512) is 1.5 MB of memory per
layer, fresh every step. The numba kernels read their inputs once and write their output once,
in chunks of 4096 elements (`prange` over chunks); the NumPy references are the formulas in
NumPy's ufuncs, about a dozen whole-array temporaries each.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from nima.kernels.fastexp import fast_exp
from nima.kernels.threads import launch, parallel_kernel

_CHUNK = 4096  # elements per parallel task
CUBIC = 0.044715  # c, the weight of x^3 in GPT-2's tanh approximation of Phi
SQRT_2_OVER_PI = math.sqrt(2 / math.pi)
_FASTMATH = {"contract"}  # fused multiply-adds; nothing assumed about inf or NaN
# numba's default error model checks every division for zero, to raise ZeroDivisionError; that
# branch alone keeps LLVM from vectorising the loops (measured: 5 ns per element instead of 0.5)
_JIT = dict(cache=True, fastmath=_FASTMATH, error_model="numpy")


# --8<-- [start:gelu_tanh_numpy]
def _gate_numpy(x: np.ndarray) -> np.ndarray:
    r"""$s = \sigma(2u) = \tfrac12(1 + \tanh u)$; $e^{-2u}$ may overflow to $\infty$ (then
    $s = 0$, as it should be)."""
    u = SQRT_2_OVER_PI * (x + CUBIC * x * x * x)
    with np.errstate(over="ignore"):
        return 1 / (1 + np.exp(-2 * u))


def gelu_tanh_forward_numpy(x: np.ndarray) -> np.ndarray:
    r"""$y = x\,\sigma(2u)$ (NumPy reference)."""
    return x * _gate_numpy(x)


def gelu_tanh_backward_numpy(grad: np.ndarray, x: np.ndarray) -> np.ndarray:
    r"""$\bar x$ from the output gradient and the input (NumPy reference)."""
    s = _gate_numpy(x)
    du = SQRT_2_OVER_PI * (1 + 3 * CUBIC * x * x)
    with np.errstate(invalid="ignore"):  # 0 * inf at x = -inf is NaN, as the formula says
        return grad * (s + 2 * x * s * (1 - s) * du)
# --8<-- [end:gelu_tanh_numpy]


# --8<-- [start:gelu_tanh_numba]
@njit(cache=True)
def _constants(x: np.ndarray) -> tuple[float, ...]:
    r"""1, 2, $\sqrt{2/\pi}$, $c$ and $3c$ in x's dtype (float32 stays float32)."""
    f = x.dtype.type
    return f(1), f(2), f(SQRT_2_OVER_PI), f(CUBIC), f(3 * CUBIC)


@njit(**_JIT)
def _gate(x: float, k: tuple[float, ...]) -> tuple[float, float]:
    r"""$(s, u')$ of one element, from the `_constants` k."""
    one, two, c0, c1, c3 = k
    u = c0 * (x + c1 * x * x * x)
    return one / (one + fast_exp(-two * u)), c0 * (one + c3 * x * x)


@njit(**_JIT)
def _gelu_tanh_forward_chunk(x: np.ndarray, out: np.ndarray) -> None:
    """$y = x s$ over a chunk. The loop counts from 0, so numba drops its negative-index
    checks and LLVM vectorises it (counting from a chunk's start did neither: 6 ns/element)."""
    k = _constants(x)
    for i in range(x.size):
        s, _ = _gate(x[i], k)
        out[i] = x[i] * s


@njit(**_JIT)
def _gelu_tanh_backward_chunk(g: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
    r"""$\bar x = \bar y (s + 2 x s (1 - s) u')$ over a chunk (counting from 0, as above)."""
    k = _constants(x)
    one, two = k[0], k[1]
    for i in range(x.size):
        xi = x[i]
        s, du = _gate(xi, k)
        out[i] = g[i] * (s + two * xi * s * (one - s) * du)


@parallel_kernel()
def _gelu_tanh_forward_chunks(x: np.ndarray, out: np.ndarray) -> None:
    """`prange` over chunks of 4096 elements, each one serial `_gelu_tanh_forward_chunk`."""
    n = x.size
    for c in prange((n + _CHUNK - 1) // _CHUNK):
        a, b = c * _CHUNK, min(n, (c + 1) * _CHUNK)
        _gelu_tanh_forward_chunk(x[a:b], out[a:b])


@parallel_kernel()
def _gelu_tanh_backward_chunks(g: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
    """`prange` over chunks of 4096 elements, each one serial `_gelu_tanh_backward_chunk`."""
    n = x.size
    for c in prange((n + _CHUNK - 1) // _CHUNK):
        a, b = c * _CHUNK, min(n, (c + 1) * _CHUNK)
        _gelu_tanh_backward_chunk(g[a:b], x[a:b], out[a:b])


def gelu_tanh_forward_numba(x: np.ndarray) -> np.ndarray:
    r"""$y = x\,\sigma(2u)$ in one pass over a flat contiguous copy (numba kernel)."""
    out = np.empty(x.shape, dtype=x.dtype)
    launch(_gelu_tanh_forward_chunks, out.size, np.ascontiguousarray(x).reshape(-1),
           out.reshape(-1))
    return out


def gelu_tanh_backward_numba(grad: np.ndarray, x: np.ndarray) -> np.ndarray:
    r"""$\bar x$ in one pass over flat contiguous copies (numba kernel)."""
    out = np.empty(x.shape, dtype=x.dtype)
    flat = [np.ascontiguousarray(np.broadcast_to(a, x.shape)).reshape(-1) for a in (grad, x)]
    launch(_gelu_tanh_backward_chunks, out.size, *flat, out.reshape(-1))
    return out
# --8<-- [end:gelu_tanh_numba]
