r"""Softmax and log-softmax over the last axis: fused numba kernels and their NumPy references.

Forward, for each row $x$ with maximum $m$:

$$y_j = \operatorname{softmax}(x)_j = \frac{e^{x_j - m}}{\sum_k e^{x_k - m}}, \qquad
\ell_j = \operatorname{log\_softmax}(x)_j = x_j - \operatorname{lse}(x).$$

Backward, given the upstream gradient $\partial L / \partial y = dy$ (the Jacobian of softmax is
$\operatorname{diag}(y) - y y^\top$):

$$dx = y \odot \bigl(dy - \langle dy, y \rangle\bigr), \qquad
dx = d\ell - e^{\ell} \textstyle\sum_k d\ell_k \quad\text{(log-softmax)}.$$

Both backward passes need only the forward *output*, which the autograd op saves.

**Masking.** $-\infty$ entries get probability exactly $0$ (log-probability $-\infty$). A fully
masked row (every entry $-\infty$, e.g. a padded query in attention) has no distribution; Nima
chooses values that keep the graph free of NaN:

| op | fully masked row |
|---|---|
| `softmax_forward` | all zeros |
| `softmax_backward` | zeros (follows from $y = 0$) |
| `log_softmax_forward` | all $-\infty$ |
| `log_softmax_backward` | zeros (explicitly; the formula would give $d\ell$) |

Large finite logits ($\pm 10^4$) are safe thanks to the max subtraction. A NaN anywhere in a row
gives a NaN row, forward and backward — a row of NaN and $-\infty$ only too, which is not a
masked row (`row_max` returns NaN for it) — and so does a $+\infty$ entry ($\infty - \infty$
in the shift), exactly as the NumPy references compute it.

**The numba kernels** make one parallel task per row (`prange` over rows of the input viewed as
2-D) and call a serial, vectorised function for that row — keeping the `prange` body to one call
also keeps numba's parfor passes from rewriting the row loops. The forward pass reads the row
once, exponentiating, writing and summing, and scales what it wrote in a second pass; a
50257-wide float32 row is 200 KB, so that second pass hits L2, not DRAM. The shift is the row's
first entry unless that overflows, when a max pass comes first (`row_exp`): at (768, 50257) the
max pass that every row used to make cost a fifth of the forward's time.
The exponential is the vectorisable `fast_exp`, so the loops run at SIMD width.
"""

import numpy as np
from numba import njit, prange

from nima.kernels.fastexp import fast_exp
from nima.kernels.rows import (
    ROW_FASTMATH,
    as_rows,
    logsumexp_numpy,
    row_exp,
    row_logsumexp,
    row_shift_numpy,
)
from nima.kernels.threads import launch, parallel_kernel


# --8<-- [start:softmax_forward_numpy]
def softmax_forward_numpy(x: np.ndarray) -> np.ndarray:
    """Softmax over the last axis (NumPy reference)."""
    e = np.exp(x - row_shift_numpy(x))
    s = e.sum(axis=-1, keepdims=True)
    return e / np.where(s == 0, np.ones_like(s), s)  # a fully masked row: 0 / 1 = 0
# --8<-- [end:softmax_forward_numpy]


# --8<-- [start:softmax_forward_numba]
@njit(cache=True, fastmath=ROW_FASTMATH)
def _softmax_forward_row(r: np.ndarray, out: np.ndarray) -> None:
    """One row: a fused exp + write + sum pass (`row_exp`), then a scale pass."""
    c, s = row_exp(r, out)
    if c == -np.inf:
        out[:] = 0
        return
    inv_s = r.dtype.type(1) / s
    for j in range(r.shape[0]):
        out[j] *= inv_s


@parallel_kernel()
def _softmax_forward_rows(x: np.ndarray, y: np.ndarray) -> None:
    """`prange` over rows, each one `_softmax_forward_row`."""
    for i in prange(x.shape[0]):
        _softmax_forward_row(x[i], y[i])


def softmax_forward_numba(x: np.ndarray) -> np.ndarray:
    """Softmax over the last axis (numba kernel)."""
    x2 = as_rows(x)
    y = np.empty_like(x2)
    launch(_softmax_forward_rows, x2.size, x2, y)
    return y.reshape(x.shape)
# --8<-- [end:softmax_forward_numba]


# --8<-- [start:softmax_backward_numpy]
def softmax_backward_numpy(y: np.ndarray, dy: np.ndarray) -> np.ndarray:
    r"""$dx = y \odot (dy - \langle dy, y\rangle)$ per row (NumPy reference)."""
    return y * (dy - (dy * y).sum(axis=-1, keepdims=True))
# --8<-- [end:softmax_backward_numpy]


# --8<-- [start:softmax_backward_numba]
@njit(cache=True, fastmath=ROW_FASTMATH)
def _softmax_backward_row(y: np.ndarray, dy: np.ndarray, out: np.ndarray) -> None:
    """One row: a dot-product pass, then one fused write pass."""
    dot = y.dtype.type(0)
    for j in range(y.shape[0]):
        dot += dy[j] * y[j]
    for j in range(y.shape[0]):
        out[j] = y[j] * (dy[j] - dot)


@parallel_kernel()
def _softmax_backward_rows(y: np.ndarray, dy: np.ndarray, dx: np.ndarray) -> None:
    """`prange` over rows, each one `_softmax_backward_row`."""
    for i in prange(y.shape[0]):
        _softmax_backward_row(y[i], dy[i], dx[i])


def softmax_backward_numba(y: np.ndarray, dy: np.ndarray) -> np.ndarray:
    r"""$dx = y \odot (dy - \langle dy, y\rangle)$ per row (numba kernel)."""
    y2 = as_rows(y)
    dx = np.empty_like(y2)
    launch(_softmax_backward_rows, y2.size, y2, as_rows(dy), dx)
    return dx.reshape(y.shape)
# --8<-- [end:softmax_backward_numba]


# --8<-- [start:log_softmax_forward_numpy]
def log_softmax_forward_numpy(x: np.ndarray) -> np.ndarray:
    r"""$x - \operatorname{lse}(x)$ over the last axis (NumPy reference)."""
    lse = logsumexp_numpy(x)
    return x - np.where(np.isneginf(lse), 0, lse)  # a fully masked row stays -inf, not NaN
# --8<-- [end:log_softmax_forward_numpy]


# --8<-- [start:log_softmax_forward_numba]
@njit(cache=True, fastmath=ROW_FASTMATH)
def _log_softmax_forward_row(r: np.ndarray, out: np.ndarray) -> None:
    """One row: `row_logsumexp` (an exp-sum pass, no writes), subtract-and-write pass."""
    lse = row_logsumexp(r)
    if lse == -np.inf:
        out[:] = lse
        return
    for j in range(r.shape[0]):
        out[j] = r[j] - lse


@parallel_kernel()
def _log_softmax_forward_rows(x: np.ndarray, y: np.ndarray) -> None:
    """`prange` over rows, each one `_log_softmax_forward_row`."""
    for i in prange(x.shape[0]):
        _log_softmax_forward_row(x[i], y[i])


def log_softmax_forward_numba(x: np.ndarray) -> np.ndarray:
    r"""$x - \operatorname{lse}(x)$ over the last axis (numba kernel)."""
    x2 = as_rows(x)
    y = np.empty_like(x2)
    launch(_log_softmax_forward_rows, x2.size, x2, y)
    return y.reshape(x.shape)
# --8<-- [end:log_softmax_forward_numba]


# --8<-- [start:log_softmax_backward_numpy]
def log_softmax_backward_numpy(y: np.ndarray, dy: np.ndarray) -> np.ndarray:
    r"""$dx = dy - e^{y} \sum dy$ per row; zeros for fully masked rows (NumPy reference)."""
    dx = dy - np.exp(y) * dy.sum(axis=-1, keepdims=True)
    return np.where(np.isneginf(y).all(axis=-1, keepdims=True), np.zeros_like(dx), dx)
# --8<-- [end:log_softmax_backward_numpy]


# --8<-- [start:log_softmax_backward_numba]
@njit(cache=True, fastmath=ROW_FASTMATH)
def _log_softmax_backward_row(y: np.ndarray, dy: np.ndarray, out: np.ndarray) -> None:
    r"""One row: a sum pass over $dy$, then a fused exp-and-write pass.

    The write pass also sums $e^{y}$ (1 for a normal row, 0 for a fully masked one), which
    detects the masked row without another pass.
    """
    sum_dy = y.dtype.type(0)
    for j in range(y.shape[0]):
        sum_dy += dy[j]
    total_p = y.dtype.type(0)
    for j in range(y.shape[0]):
        p = fast_exp(y[j])
        total_p += p
        out[j] = dy[j] - p * sum_dy
    if total_p == 0:
        out[:] = 0


@parallel_kernel()
def _log_softmax_backward_rows(y: np.ndarray, dy: np.ndarray, dx: np.ndarray) -> None:
    """`prange` over rows, each one `_log_softmax_backward_row`."""
    for i in prange(y.shape[0]):
        _log_softmax_backward_row(y[i], dy[i], dx[i])


def log_softmax_backward_numba(y: np.ndarray, dy: np.ndarray) -> np.ndarray:
    r"""$dx = dy - e^{y} \sum dy$ per row; zeros for fully masked rows (numba kernel)."""
    y2 = as_rows(y)
    dx = np.empty_like(y2)
    launch(_log_softmax_backward_rows, y2.size, y2, as_rows(dy), dx)
    return dx.reshape(y.shape)
# --8<-- [end:log_softmax_backward_numba]
