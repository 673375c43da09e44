r"""Reductions over `dim` (an int, a tuple of ints, or None for all), with `keepdim`.

The backward of a reduction hands each input element the gradient of the output it went into:
`expand_reduced` puts back the reduced axes and broadcasts, e.g. for a sum
$\bar x_{ij} = \bar y_i$.

Inside `nima.autocast`, `sum`, `mean`, `var` and `logsumexp` of a float16 tensor run in float32
(a long float16 sum loses its small terms); `max` and `min` are exact and stay float16.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nima._tensor import Axis, Tensor
from nima.autograd import Context, Function
from nima.ops.operands import autocast_float32


def normalize_dims(op: str, dim: Axis, ndim: int) -> tuple[int, ...]:
    """`dim` as a sorted tuple of non-negative axes; None means every axis."""
    if dim is None:
        return tuple(range(ndim))
    if type(dim) is int and -ndim <= dim < ndim:  # the common case, checked the quick way
        return (dim % ndim,)
    dims = (dim,) if isinstance(dim, (int, np.integer)) else \
        tuple(dim) if isinstance(dim, tuple | list) else (dim,)
    span = ndim or 1  # a 0-d tensor accepts dim 0 or -1, as in PyTorch
    out = []
    for d in dims:
        if isinstance(d, bool) or not isinstance(d, int | np.integer):
            raise TypeError(f"{op}: dim must be an int, a tuple of ints or None, got {dim!r}")
        if not -span <= d < span:
            raise IndexError(f"{op}: dim {d} is out of range for a tensor of {ndim} dims")
        out.append(int(d) % span)
    if len(set(out)) != len(out):
        raise ValueError(f"{op}: dim {dim} repeats an axis")
    return tuple(sorted(out)) if ndim else ()


def expand_reduced(grad: np.ndarray, shape: tuple[int, ...], dims: tuple[int, ...],
                   keepdim: bool) -> np.ndarray:
    """Broadcast the gradient of a reduced tensor back to the input's `shape`."""
    if not keepdim:
        grad = np.expand_dims(grad, dims)
    return np.broadcast_to(grad, shape)


# --8<-- [start:sum]
class Sum(Function):
    r"""$y = \sum_{i \in \text{dims}} x_i$; $\bar x_i = \bar y$ (broadcast back)."""

    @staticmethod
    def forward(ctx: Context, x: np.ndarray, dims: tuple[int, ...], keepdim: bool) -> np.ndarray:
        ctx.shape, ctx.dims, ctx.keepdim = x.shape, dims, keepdim
        return np.sum(x, axis=dims, keepdims=keepdim)

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray) -> tuple[np.ndarray, None, None]:
        return expand_reduced(grad, ctx.shape, ctx.dims, ctx.keepdim), None, None
# --8<-- [end:sum]


class Mean(Function):
    r"""$y = \frac1n \sum x_i$; $\bar x_i = \bar y / n$."""

    @staticmethod
    def forward(ctx: Context, x: np.ndarray, dims: tuple[int, ...], keepdim: bool) -> np.ndarray:
        ctx.shape, ctx.dims, ctx.keepdim = x.shape, dims, keepdim
        ctx.n = int(np.prod([x.shape[d] for d in dims]))
        return np.mean(x, axis=dims, keepdims=keepdim)

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray) -> tuple[np.ndarray, None, None]:
        return expand_reduced(grad / ctx.n, ctx.shape, ctx.dims, ctx.keepdim), None, None


class Var(Function):
    r"""$y = \frac{1}{n - c}\sum_i (x_i - \mu)^2$ ($c$ = `correction`, 1 is unbiased);
    $\bar x_i = \bar y \cdot \frac{2 (x_i - \mu)}{n - c}$ (the $\mu$ terms sum to zero)."""

    @staticmethod
    def forward(ctx: Context, x: np.ndarray, dims: tuple[int, ...], keepdim: bool,
                correction: int) -> np.ndarray:
        n = int(np.prod([x.shape[d] for d in dims]))
        centered = x - np.mean(x, axis=dims, keepdims=True)
        ctx.save_for_backward(centered)
        ctx.dims, ctx.keepdim, ctx.denominator = dims, keepdim, n - correction
        return np.sum(centered * centered, axis=dims, keepdims=keepdim) / ctx.denominator

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray) -> tuple[np.ndarray, None, None, None]:
        (centered,) = ctx.saved_tensors
        g = expand_reduced(grad, centered.shape, ctx.dims, ctx.keepdim)
        return g * centered * (2 / ctx.denominator), None, None, None


class Extremum(Function):
    r"""$y = \max_i x_i$ (or $\min$); the gradient goes to the extreme elements, split evenly
    among ties: $\bar x_i = \bar y\,[x_i = y] / \#\{j : x_j = y\}$."""

    @staticmethod
    def forward(ctx: Context, x: np.ndarray, dims: tuple[int, ...], keepdim: bool,
                reduce: np.ufunc) -> np.ndarray:
        out = reduce.reduce(x, axis=dims, keepdims=True)
        ctx.save_for_backward(x, out)
        ctx.dims, ctx.keepdim = dims, keepdim
        return out if keepdim else np.squeeze(out, dims)

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray) -> tuple[np.ndarray, None, None, None]:
        x, out = ctx.saved_tensors
        hits = x == out
        share = hits / np.sum(hits, axis=ctx.dims, keepdims=True)
        g = expand_reduced(grad, x.shape, ctx.dims, ctx.keepdim)
        return (g * share).astype(x.dtype, copy=False), None, None, None


# --8<-- [start:logsumexp]
class LogSumExp(Function):
    r"""$y = \log\sum_i e^{x_i} = m + \log\sum_i e^{x_i - m}$ with $m = \max_i x_i$ (no
    overflow); $\bar x_i = \bar y\, e^{x_i - y} = \bar y\,\operatorname{softmax}(x)_i$."""

    @staticmethod
    def forward(ctx: Context, x: np.ndarray, dims: tuple[int, ...], keepdim: bool) -> np.ndarray:
        m = np.max(x, axis=dims, keepdims=True)
        m = np.where(np.isfinite(m), m, 0)  # all -inf (or +inf) rows: leave them to exp/log
        with np.errstate(divide="ignore"):  # log(0) = -inf for those rows, as intended
            out = m + np.log(np.sum(np.exp(x - m), axis=dims, keepdims=True))
        ctx.save_for_backward(x, out)
        ctx.dims, ctx.keepdim = dims, keepdim
        return out if keepdim else np.squeeze(out, dims)

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray) -> tuple[np.ndarray, None, None]:
        x, out = ctx.saved_tensors
        g = expand_reduced(grad, x.shape, ctx.dims, ctx.keepdim)
        with np.errstate(invalid="ignore"):
            weights = np.nan_to_num(np.exp(x - out), nan=0.0)
        return g * weights, None, None
# --8<-- [end:logsumexp]


def _reduce(op: str, fn: Any, x: Tensor, dim: Axis, keepdim: bool, *extra: Any) -> Tensor:
    return fn.apply(x, normalize_dims(op, dim, x.ndim), keepdim, *extra)


def sum(x: Tensor, dim: Axis = None, keepdim: bool = False) -> Tensor:
    return _reduce("sum", Sum, autocast_float32(x), dim, keepdim)


def mean(x: Tensor, dim: Axis = None, keepdim: bool = False) -> Tensor:
    return _reduce("mean", Mean, autocast_float32(x), dim, keepdim)


def var(x: Tensor, dim: Axis = None, keepdim: bool = False, correction: int = 1) -> Tensor:
    """Variance; `correction=1` (default, as PyTorch) is unbiased, 0 the population variance."""
    return _reduce("var", Var, autocast_float32(x), dim, keepdim, correction)


def max(x: Tensor, dim: Axis = None, keepdim: bool = False) -> Tensor:
    """Largest values over `dim`. Unlike `torch.max(x, dim)` this returns the values only (as
    `torch.amax`); use `argmax` for the indices."""
    _nonempty("max", x)
    return _reduce("max", Extremum, x, dim, keepdim, np.maximum)


def min(x: Tensor, dim: Axis = None, keepdim: bool = False) -> Tensor:
    """Smallest values over `dim` (values only, as `torch.amin`)."""
    _nonempty("min", x)
    return _reduce("min", Extremum, x, dim, keepdim, np.minimum)


def logsumexp(x: Tensor, dim: Axis = None, keepdim: bool = False) -> Tensor:
    return _reduce("logsumexp", LogSumExp, autocast_float32(x), dim, keepdim)


def _nonempty(op: str, x: Tensor) -> None:
    if x.size == 0:
        raise ValueError(f"{op}: cannot reduce an empty tensor of shape {x.shape}")


def argmax(x: Tensor, dim: int | None = None, keepdim: bool = False) -> Tensor:
    """Index of the largest value (over the flattened tensor when `dim` is None); no gradient."""
    _nonempty("argmax", x)
    return Tensor(np.argmax(x.data, axis=dim, keepdims=keepdim))


def argmin(x: Tensor, dim: int | None = None, keepdim: bool = False) -> Tensor:
    """Index of the smallest value; no gradient."""
    _nonempty("argmin", x)
    return Tensor(np.argmin(x.data, axis=dim, keepdims=keepdim))
