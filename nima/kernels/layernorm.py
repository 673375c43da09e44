r"""Layer norm and RMSNorm over the last axis: fused numba kernels and their NumPy references.

**Layer norm.** For each row $x \in \mathbb{R}^C$, with the *biased* variance:

$$\mu = \tfrac1C \textstyle\sum_j x_j, \qquad
\text{rstd} = \frac{1}{\sqrt{\tfrac1C \sum_j (x_j - \mu)^2 + \epsilon}}, \qquad
\hat x = (x - \mu)\,\text{rstd}, \qquad y = \hat x \odot w + b.$$

The forward pass returns $\mu$ and rstd per row, so the backward pass rebuilds $\hat x$ from
$x$ without storing it. With $\bar y = \partial L / \partial y$ and $\bar{\hat x} = \bar y \odot
w$, differentiating through $\mu$ and rstd gives the fused formula

$$\bar x = \text{rstd}\,\Bigl(\bar{\hat x} - \operatorname{mean}(\bar{\hat x})
          - \hat x \operatorname{mean}(\bar{\hat x} \odot \hat x)\Bigr),$$

(the two means are the projections of $\bar{\hat x}$ onto the directions that shifting and
scaling $x$ cannot change), and for the parameters, summed over all rows,
$\bar w = \sum_{\text{rows}} \bar y \odot \hat x$ and $\bar b = \sum_{\text{rows}} \bar y$.

**RMSNorm** is layer norm without the centring and the bias: $\mu = 0$,
$\text{rstd} = 1/\sqrt{\operatorname{mean}(x^2) + \epsilon}$, $y = x\,\text{rstd} \odot w$, and
the $\operatorname{mean}(\bar{\hat x})$ term drops out of $\bar x$. The numba kernels are written
once for both, with a flag `centered`.

`weight=None` (and `bias=None`) mean $w = 1$ ($b = 0$). The backward functions return
$\bar w$ (and $\bar b$) whatever the weight was: the op layer keeps only what it needs.

**Numerics.** The variance is computed in two passes, $\sum (x - \mu)^2$ after $\mu$, not as
$\operatorname{mean}(x^2) - \mu^2$, which cancels catastrophically when $|\mu| \gg \sigma$ (rows
near $10^4$ in float32 would lose every digit). All accumulators have the input's dtype, so
float32 stays float32.

**The numba kernels.** Forward: `prange` over rows, each a serial row function making three
passes over the row (sum; squared deviations; normalise-and-write) — one read from memory, the
other two from L1. Backward: the rows are split into at most `MAX_BLOCKS` contiguous blocks, and
`prange` runs over the blocks; a block walks its rows serially, writing $\bar x$ and
accumulating its own partial $\bar w$, $\bar b$ (one row of `(blocks, C)` arrays, in L1 for
any realistic $C$). NumPy then adds the partials over the blocks. So $x$ and $\bar y$ are read
from memory once, no two threads write the same memory, and — since the split depends only on
the number of rows, never on the thread count or on scheduling — the sums are bit-for-bit
reproducible. (The alternative, a second `prange` over columns, would read $x$ and $\bar y$ a
second time, column by column.)
"""

import numpy as np
from numba import njit, prange

from nima.kernels.rows import ROW_FASTMATH, as_rows
from nima.kernels.threads import launch, parallel_kernel

# Row blocks of the backward pass: enough to balance the cores on small inputs, few enough that
# the partial sums, (MAX_BLOCKS, C) each, stay small. A constant, so results are reproducible.
MAX_BLOCKS = 64


# ------------------------------------------------------------------------------ NumPy references
# --8<-- [start:layer_norm_numpy]
def layer_norm_forward_numpy(
    x: np.ndarray, weight: np.ndarray | None, bias: np.ndarray | None, eps: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(y, mean, rstd) of layer norm over the last axis; mean, rstd have shape x.shape[:-1]."""
    mean = x.mean(axis=-1, keepdims=True)  # (..., 1)
    xc = x - mean
    rstd = 1 / np.sqrt((xc * xc).mean(axis=-1, keepdims=True) + x.dtype.type(eps))  # (..., 1)
    y = xc * rstd
    if weight is not None:
        y *= weight
    if bias is not None:
        y += bias
    return y, mean[..., 0], rstd[..., 0]


def layer_norm_backward_numpy(
    dy: np.ndarray, x: np.ndarray, weight: np.ndarray | None, mean: np.ndarray, rstd: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""(dx, dweight, dbias): $\bar x = \text{rstd}(\bar{\hat x} - \operatorname{mean}
    \bar{\hat x} - \hat x \operatorname{mean}(\bar{\hat x} \hat x))$, column sums for w, b."""
    rstd = rstd[..., None]  # (..., 1)
    xhat = (x - mean[..., None]) * rstd
    g = dy if weight is None else dy * weight
    dx = rstd * (g - g.mean(axis=-1, keepdims=True)
                 - xhat * (g * xhat).mean(axis=-1, keepdims=True))
    columns = x.shape[-1]
    dweight = (dy * xhat).reshape(-1, columns).sum(axis=0)
    dbias = dy.reshape(-1, columns).sum(axis=0)
    return dx, dweight, dbias
# --8<-- [end:layer_norm_numpy]


def rms_norm_forward_numpy(
    x: np.ndarray, weight: np.ndarray | None, eps: float
) -> tuple[np.ndarray, np.ndarray]:
    """(y, rstd) of RMSNorm over the last axis; rstd has shape x.shape[:-1]."""
    rstd = 1 / np.sqrt((x * x).mean(axis=-1, keepdims=True) + x.dtype.type(eps))  # (..., 1)
    y = x * rstd
    if weight is not None:
        y *= weight
    return y, rstd[..., 0]


def rms_norm_backward_numpy(
    dy: np.ndarray, x: np.ndarray, weight: np.ndarray | None, rstd: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    r"""(dx, dweight): $\bar x = \text{rstd}(\bar{\hat x} - \hat x \operatorname{mean}
    (\bar{\hat x} \hat x))$ with $\hat x = x\,\text{rstd}$; $\bar w = \sum \bar y \hat x$."""
    rstd = rstd[..., None]  # (..., 1)
    xhat = x * rstd
    g = dy if weight is None else dy * weight
    dx = rstd * (g - xhat * (g * xhat).mean(axis=-1, keepdims=True))
    dweight = (dy * xhat).reshape(-1, x.shape[-1]).sum(axis=0)
    return dx, dweight


# ------------------------------------------------------------------------------ numba kernels
@njit(cache=True, fastmath=ROW_FASTMATH, error_model="numpy")  # 1/0 is inf, as in NumPy
def _norm_forward_row(
    r: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float, centered: bool, out: np.ndarray
) -> tuple[float, float]:
    """(mean, rstd) of one row, writing the normalised row: sum, squared deviations, write."""
    one = r.dtype.type(1)
    n = r.dtype.type(r.shape[0])
    mean = r.dtype.type(0)
    if centered:
        for j in range(r.shape[0]):
            mean += r[j]
        mean /= n
    ss = r.dtype.type(0)
    for j in range(r.shape[0]):
        d = r[j] - mean
        ss += d * d
    rstd = one / np.sqrt(ss / n + eps)
    for j in range(r.shape[0]):
        out[j] = (r[j] - mean) * rstd * w[j] + b[j]
    return mean, rstd


@parallel_kernel()
def _norm_forward_rows(
    x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float, centered: bool,
    y: np.ndarray, mean: np.ndarray, rstd: np.ndarray,
) -> None:
    """`prange` over rows, each one `_norm_forward_row`."""
    for i in prange(x.shape[0]):
        mean[i], rstd[i] = _norm_forward_row(x[i], w, b, eps, centered, y[i])


def _norm_forward(
    x: np.ndarray, weight: np.ndarray | None, bias: np.ndarray | None, eps: float, centered: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(y, mean, rstd) of x's rows; None weight/bias become ones/zeros (C values: free)."""
    x2 = as_rows(x)  # (N, C)
    columns = x.shape[-1]
    w = np.ones(columns, x.dtype) if weight is None else np.ascontiguousarray(weight)
    b = np.zeros(columns, x.dtype) if bias is None else np.ascontiguousarray(bias)
    y = np.empty_like(x2)
    mean = np.empty(x2.shape[0], x.dtype)
    rstd = np.empty_like(mean)
    launch(_norm_forward_rows, x2.size, x2, w, b, x.dtype.type(eps), centered, y, mean, rstd)
    return y.reshape(x.shape), mean.reshape(x.shape[:-1]), rstd.reshape(x.shape[:-1])


@njit(cache=True, fastmath=ROW_FASTMATH)
def _norm_backward_row(
    dy: np.ndarray, x: np.ndarray, w: np.ndarray, mean: float, rstd: float, centered: bool,
    dx: np.ndarray, dw: np.ndarray, db: np.ndarray,
) -> None:
    r"""One row: a pass for the two means (adding into dw, db), then a pass writing $\bar x$."""
    n = x.dtype.type(x.shape[0])
    sum_g = x.dtype.type(0)
    sum_g_xhat = x.dtype.type(0)
    for j in range(x.shape[0]):
        xhat = (x[j] - mean) * rstd
        g = dy[j] * w[j]
        sum_g += g
        sum_g_xhat += g * xhat
        dw[j] += dy[j] * xhat
        db[j] += dy[j]
    mean_g = sum_g / n if centered else x.dtype.type(0)
    mean_g_xhat = sum_g_xhat / n
    for j in range(x.shape[0]):
        xhat = (x[j] - mean) * rstd
        dx[j] = rstd * (dy[j] * w[j] - mean_g - xhat * mean_g_xhat)


@njit(cache=True)
def _norm_backward_block(
    dy: np.ndarray, x: np.ndarray, w: np.ndarray, mean: np.ndarray, rstd: np.ndarray,
    centered: bool, dx: np.ndarray, dw: np.ndarray, db: np.ndarray, start: int, stop: int,
) -> None:
    """Rows [start, stop) in order, summing their dw, db into this block's partials."""
    dw[:] = 0
    db[:] = 0
    for i in range(start, stop):
        _norm_backward_row(dy[i], x[i], w, mean[i], rstd[i], centered, dx[i], dw, db)


@parallel_kernel()
def _norm_backward_blocks(
    dy: np.ndarray, x: np.ndarray, w: np.ndarray, mean: np.ndarray, rstd: np.ndarray,
    centered: bool, dx: np.ndarray, dw_parts: np.ndarray, db_parts: np.ndarray,
) -> None:
    """`prange` over row blocks, each one `_norm_backward_block` with its own partial sums."""
    n_rows = x.shape[0]
    n_blocks = dw_parts.shape[0]
    for k in prange(n_blocks):
        _norm_backward_block(dy, x, w, mean, rstd, centered, dx, dw_parts[k], db_parts[k],
                             k * n_rows // n_blocks, (k + 1) * n_rows // n_blocks)


def _norm_backward(
    dy: np.ndarray, x: np.ndarray, weight: np.ndarray | None, mean: np.ndarray,
    rstd: np.ndarray, centered: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(dx, dweight, dbias); the per-block partial sums are added in block order."""
    x2 = as_rows(x)  # (N, C)
    n_rows, columns = x2.shape
    w = np.ones(columns, x.dtype) if weight is None else np.ascontiguousarray(weight)
    dx = np.empty_like(x2)
    n_blocks = min(n_rows, MAX_BLOCKS)
    dw_parts = np.empty((n_blocks, columns), x.dtype)
    db_parts = np.empty_like(dw_parts)
    launch(_norm_backward_blocks, x2.size, as_rows(dy), x2, w,
           np.ascontiguousarray(mean).reshape(n_rows), np.ascontiguousarray(rstd).reshape(n_rows),
           centered, dx, dw_parts, db_parts)
    return dx.reshape(x.shape), dw_parts.sum(axis=0), db_parts.sum(axis=0)


def layer_norm_forward_numba(
    x: np.ndarray, weight: np.ndarray | None, bias: np.ndarray | None, eps: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(y, mean, rstd) of layer norm over the last axis (numba kernel)."""
    return _norm_forward(x, weight, bias, eps, True)


def layer_norm_backward_numba(
    dy: np.ndarray, x: np.ndarray, weight: np.ndarray | None, mean: np.ndarray, rstd: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(dx, dweight, dbias) of layer norm (numba kernel)."""
    return _norm_backward(dy, x, weight, mean, rstd, True)


def rms_norm_forward_numba(
    x: np.ndarray, weight: np.ndarray | None, eps: float
) -> tuple[np.ndarray, np.ndarray]:
    """(y, rstd) of RMSNorm over the last axis (numba kernel)."""
    y, _, rstd = _norm_forward(x, weight, None, eps, False)
    return y, rstd


def rms_norm_backward_numba(
    dy: np.ndarray, x: np.ndarray, weight: np.ndarray | None, rstd: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(dx, dweight) of RMSNorm (numba kernel)."""
    dx, dweight, _ = _norm_backward(dy, x, weight, np.zeros(rstd.shape, x.dtype), rstd, False)
    return dx, dweight
