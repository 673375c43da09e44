r"""Neural-network ops: softmax, log-softmax, cross-entropy, one-hot and embedding lookup.

Softmax, log-softmax and cross-entropy run through the fused kernels in `nima.kernels`, which
work on the last axis; for another `dim` the op moves that axis to the end and back. A row
whose entries are all $-\infty$ (fully masked) gets zeros from softmax and a zero gradient —
the kernels' convention, so the ops need no special case.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nima import kernels
from nima._tensor import FLOAT_DTYPES, Tensor
from nima.autograd import Context, Function
from nima.ops.indexing import GetItem
from nima.ops.operands import autocast_float32
from nima.ops.reduce import normalize_dims


def _to_last(x: np.ndarray, dim: int) -> np.ndarray:
    """`x` with axis `dim` moved to the end (a 0-d `x` becomes one row of one element)."""
    if x.ndim == 0:
        return x.reshape(1)
    return x if dim == x.ndim - 1 else np.moveaxis(x, dim, -1)


def _from_last(y: np.ndarray, dim: int, ndim: int) -> np.ndarray:
    """Undo `_to_last`."""
    if ndim == 0:
        return y.reshape(())
    return y if dim == ndim - 1 else np.moveaxis(y, -1, dim)


# --8<-- [start:softmax]
class Softmax(Function):
    r"""$y_i = e^{x_i} / \sum_j e^{x_j}$ along `dim`.

    The Jacobian is $\partial y_i / \partial x_j = y_i(\delta_{ij} - y_j)$, so the
    vector–Jacobian product needs only the output:
    $\bar x = y \odot (\bar y - \langle \bar y, y\rangle)$.
    """

    @staticmethod
    def forward(ctx: Context, x: np.ndarray, dim: int) -> np.ndarray:
        y = kernels.softmax_forward(_to_last(x, dim))  # (..., n) with `dim` last
        ctx.save_for_backward(y)
        ctx.dim, ctx.ndim = dim, x.ndim
        return _from_last(y, dim, x.ndim)

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray) -> tuple[np.ndarray, None]:
        (y,) = ctx.saved_tensors
        dx = kernels.softmax_backward(y, _to_last(grad, ctx.dim))
        return _from_last(dx, ctx.dim, ctx.ndim), None
# --8<-- [end:softmax]


class LogSoftmax(Function):
    r"""$\ell_i = x_i - \log \sum_j e^{x_j}$ along `dim`.

    $\partial \ell_i / \partial x_j = \delta_{ij} - \operatorname{softmax}(x)_j$ and
    $\operatorname{softmax}(x) = e^{\ell}$, so $\bar x = \bar \ell - e^{\ell} \sum_k \bar \ell_k$.
    """

    @staticmethod
    def forward(ctx: Context, x: np.ndarray, dim: int) -> np.ndarray:
        out = kernels.log_softmax_forward(_to_last(x, dim))  # (..., n) with `dim` last
        ctx.save_for_backward(out)
        ctx.dim, ctx.ndim = dim, x.ndim
        return _from_last(out, dim, x.ndim)

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray) -> tuple[np.ndarray, None]:
        (out,) = ctx.saved_tensors
        dx = kernels.log_softmax_backward(out, _to_last(grad, ctx.dim))
        return _from_last(dx, ctx.dim, ctx.ndim), None


class CrossEntropy(Function):
    r"""Cross-entropy of logits $z$ (rows of $C$ classes) against integer targets $t$.

    Per row, with label smoothing $\epsilon$ (the target distribution puts $1 - \epsilon$ on
    class $t$ and spreads $\epsilon$ evenly over all $C$ classes):

    $$L = -(1 - \epsilon)\,\log p_t - \frac{\epsilon}{C} \sum_c \log p_c, \qquad
    p = \operatorname{softmax}(z),$$

    $$\bar z = \bar L\,\bigl(p - (1 - \epsilon)\,\operatorname{onehot}(t) - \epsilon / C\bigr).$$

    Rows whose target is `ignore_index` have $L = 0$ and $\bar z = 0$. The kernel returns each
    row's $\operatorname{lse}(z) = \log \sum_c e^{z_c}$, from which the backward rebuilds
    $p = e^{z - \operatorname{lse}}$ without storing it.
    """

    @staticmethod
    def forward(ctx: Context, logits: np.ndarray, target: np.ndarray, reduction: str,
                ignore_index: int, label_smoothing: float) -> np.ndarray:
        z = logits.reshape(-1, logits.shape[-1])  # (N, C)
        t = target.reshape(-1)  # (N,)
        losses, lse = kernels.cross_entropy_forward(z, t, ignore_index, label_smoothing)
        ctx.save_for_backward(z, t, lse)
        ctx.shape, ctx.reduction = logits.shape, reduction
        ctx.ignore_index, ctx.label_smoothing = ignore_index, label_smoothing
        if reduction == "none":
            return losses.reshape(target.shape)
        if reduction == "sum":
            return np.asarray(losses.sum())
        ctx.count = max(int(np.count_nonzero(t != ignore_index)), 1)  # all ignored: 0 / 1
        return np.asarray(losses.sum() / ctx.count)

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray) -> tuple[np.ndarray, None, None, None, None]:
        z, t, lse = ctx.saved_tensors
        if ctx.reduction == "none":
            grad_losses = grad.reshape(-1)
        else:  # every row's loss enters the sum (or mean) with weight 1 (or 1 / count)
            scale = grad if ctx.reduction == "sum" else grad / ctx.count
            grad_losses = np.full(t.shape, scale, dtype=z.dtype)
        dz = kernels.cross_entropy_backward(z, t, lse, grad_losses, ctx.ignore_index,
                                            ctx.label_smoothing)
        return dz.reshape(ctx.shape), None, None, None, None


# ------------------------------------------------------------------------------ public functions
def _float_input(op: str, x: Any) -> Tensor:
    """`x`, checked to be a float tensor; in `nima.autocast` a float16 one is cast to float32."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{op}: expected a Tensor, got {type(x).__name__}")
    if x.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{op}: needs a floating-point tensor, got {x.dtype} (shape {x.shape})")
    return autocast_float32(x)


def _int_array(op: str, name: str, x: Any) -> np.ndarray:
    array = np.asarray(x.data if isinstance(x, Tensor) else x)
    if array.dtype.kind not in "iu":
        raise TypeError(f"{op}: {name} must be integers, got {array.dtype} (shape {array.shape})")
    return array


def softmax(x: Tensor, dim: int = -1) -> Tensor:
    """Softmax along `dim`: non-negative values summing to 1; $-\\infty$ entries get 0."""
    x = _float_input("softmax", x)
    (d,) = normalize_dims("softmax", dim, x.ndim) or (0,)
    return Softmax.apply(x, d)


def log_softmax(x: Tensor, dim: int = -1) -> Tensor:
    """Log of the softmax along `dim`, computed without forming the softmax (no underflow)."""
    x = _float_input("log_softmax", x)
    (d,) = normalize_dims("log_softmax", dim, x.ndim) or (0,)
    return LogSoftmax.apply(x, d)


def cross_entropy(logits: Tensor, target: Any, reduction: str = "mean", ignore_index: int = -100,
                  label_smoothing: float = 0.0) -> Tensor:
    r"""Cross-entropy of `logits` `(..., C)` against integer class indices `target` `(...)`.

    **The class dimension is last**, as a language model's `(B, T, vocab)` logits come out;
    PyTorch's `F.cross_entropy` wants it second, `(N, C, d1, ...)`. For 2-D `(N, C)` logits
    the two agree.

    `reduction`: `"mean"` (over the targets that are not `ignore_index`, as PyTorch), `"sum"`,
    or `"none"` (a loss per target, shape `(...)`). If *every* target is ignored, `"mean"`
    gives a loss of 0 with a zero gradient (PyTorch gives NaN). `label_smoothing` $\epsilon$
    mixes the one-hot target with the uniform distribution: $(1-\epsilon)\,\text{onehot} +
    \epsilon / C$.

    Example: logits `[[0, 0]]`, target `[1]` gives $\log 2 \approx 0.693$.
    """
    logits = _float_input("cross_entropy", logits)
    t = _int_array("cross_entropy", "target", target)
    if logits.ndim == 0 or t.shape != logits.shape[:-1]:
        raise ValueError(f"cross_entropy: logits of shape {logits.shape} (..., C) need a target "
                         f"of shape {logits.shape[:-1]}, got {t.shape}")
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"cross_entropy: reduction must be 'mean', 'sum' or 'none', "
                         f"got {reduction!r}")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1], got {label_smoothing}")
    n_classes = logits.shape[-1]
    if t.size and not 0 <= t.min() <= t.max() < n_classes:  # ignored targets, or bad ones
        out_of_range = (t != ignore_index) & ((t < 0) | (t >= n_classes))
        if out_of_range.any():
            raise ValueError(f"cross_entropy: target {t[out_of_range][0]} is out of range for "
                             f"{n_classes} classes (logits {logits.shape}, target {t.shape}; "
                             f"ignore_index={ignore_index})")
    return CrossEntropy.apply(logits, t.astype(np.int64, copy=False), reduction,
                              int(ignore_index), float(label_smoothing))


def one_hot(indices: Any, num_classes: int = -1, dtype: Any = np.float32) -> Tensor:
    """`indices` of shape `(...)` as one-hot vectors, shape `(..., num_classes)`; no gradient.

    `num_classes=-1` means `max(indices) + 1`. Unlike PyTorch (int64), the result is float32 by
    default, ready to multiply with activations; pass `dtype` for another.

    Example: `one_hot([0, 2], 3)` is `[[1, 0, 0], [0, 0, 1]]`.
    """
    ids = _int_array("one_hot", "indices", indices)
    if num_classes == -1:
        num_classes = int(ids.max()) + 1 if ids.size else 0
    if ids.size and (ids.min() < 0 or ids.max() >= num_classes):
        raise ValueError(f"one_hot: indices must be in [0, {num_classes}), got values in "
                         f"[{ids.min()}, {ids.max()}] (shape {ids.shape})")
    out = np.zeros((*ids.shape, num_classes), dtype=dtype)
    np.put_along_axis(out, ids[..., None], 1, axis=-1)
    return Tensor(out)


def embedding(indices: Any, weight: Tensor) -> Tensor:
    r"""Rows of `weight` (shape `(V, D)`) picked by integer `indices` (shape `(...)`): `(..., D)`.

    This is `weight[indices]`, so its gradient is `GetItem`'s scatter-add: a dense array of
    `weight`'s shape, $\bar W_v = \sum_{i \,:\, \text{indices}_i = v} \bar y_i$ — an id that
    appears several times collects all of its rows' gradients.
    """
    _float_input("embedding", weight)
    ids = _int_array("embedding", "indices", indices)
    if weight.ndim != 2:
        raise ValueError(f"embedding: weight must be 2-D (num_embeddings, embedding_dim), "
                         f"got shape {weight.shape}")
    if ids.size and (ids.min() < 0 or ids.max() >= weight.shape[0]):
        raise IndexError(f"embedding: indices must be in [0, {weight.shape[0]}) for a weight of "
                         f"shape {weight.shape}, got values in [{ids.min()}, {ids.max()}]")
    return GetItem.apply(weight, (ids,), False)
