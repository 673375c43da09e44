r"""Matrix multiplication with NumPy's `matmul` semantics, computed by the batched kernel.

For matrices $C = AB$, $C_{mn} = \sum_k A_{mk} B_{kn}$, the gradients are two more products:

$$\bar A = \bar C\, B^\top, \qquad \bar B = A^\top \bar C.$$

Every product here — forward and both gradients — goes through `kernels.matmul`, which takes a
stack of matrices `(B, M, K) @ (B, K, N)`. Higher-rank operands broadcast their leading (batch)
dimensions as NumPy does; 1-D operands are promoted to matrices and the added axis removed:

| shapes | result |
|---|---|
| `(K,) @ (K,)` | `()` — the dot product |
| `(K,) @ (..., K, N)` | `(..., N)` — as `(1, K)`, then the 1 removed |
| `(..., M, K) @ (K,)` | `(..., M)` — as `(K, 1)`, then the 1 removed |
| `(..., M, K) @ (..., K, N)` | `(broadcast(...), M, N)` |

**Folding the batch.** When `B` has no batch of its own — a linear layer's `x @ W` with `x` of
shape `(B, T, C)` — every batch entry multiplies the same matrix, so the batch folds into the
rows: one `(1, B·T, C) @ (1, C, N)` product instead of `B` small ones, and no copy of `W`. The
weight's gradient folds the same way, summing over the batch inside the product:
$\bar W = \sum_b x_b^\top \bar y_b = X^\top \bar Y$ with $X$ of shape `(B·T, C)`.

**float16** (what `nima.autocast` lowers the operands to, and only inside it) is stored in
float16 but computed in float32: the operands are widened, multiplied by the float32 kernel,
and the product rounded back to float16 — NumPy's float16 matmul has no BLAS and is far slower.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from nima import amp, kernels
from nima._tensor import FLOAT_DTYPES, Tensor
from nima.autograd import Context, Function, unbroadcast
from nima.ops.operands import autocast_lower, binary_operands


def batched_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """`(..., M, K) @ (..., K, N) -> (broadcast(...), M, N)` through `kernels.matmul`."""
    if a.dtype == np.float16:  # no float16 kernel: compute in float32, round the product
        product = batched_matmul(a.astype(np.float32), b.astype(np.float32))
        with np.errstate(over="ignore"):  # beyond 65504 is inf, for GradScaler to find
            return product.astype(np.float16)
    if a.ndim == 2 and b.ndim == 2:  # a linear layer's rows: nothing to fold or broadcast
        return kernels.matmul(a, b)
    *batch_a, m, k = a.shape
    *batch_b, _, n = b.shape
    if batch_a == batch_b:  # attention's (B, nh) batches: nothing to broadcast
        size = math.prod(batch_a)
        out = kernels.matmul(a.reshape(size, m, k), b.reshape(size, k, n))
        return out.reshape(*batch_a, m, n)
    batch = np.broadcast_shapes(tuple(batch_a), tuple(batch_b))
    if math.prod(batch_b) == 1:  # `b` is shared by the whole batch: fold the batch into rows
        out = kernels.matmul(a.reshape(1, math.prod(batch_a) * m, k), b.reshape(1, k, n))
    else:  # broadcast batch dims become stride-0 views; one batched call does the lot
        size = math.prod(batch)
        out = kernels.matmul(np.broadcast_to(a, (*batch, m, k)).reshape(size, m, k),
                             np.broadcast_to(b, (*batch, k, n)).reshape(size, k, n))
    return out.reshape(*batch, m, n)


def _rows(x: np.ndarray) -> np.ndarray:
    """`x` as a matrix of its last axis: `(..., K) -> (prod(...), K)`."""
    return x.reshape(-1, x.shape[-1])


class Matmul(Function):
    r"""$C = AB$ over the last two axes (batched, broadcast); $\bar A = \bar C B^\top$,
    $\bar B = A^\top \bar C$, each summed over the batch entries its operand was shared by."""

    @staticmethod
    def forward(ctx: Context, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        a2 = a[None, :] if a.ndim == 1 else a  # (K,) -> (1, K)
        b2 = b[:, None] if b.ndim == 1 else b  # (K,) -> (K, 1)
        out = batched_matmul(a2, b2)  # (..., M, N)
        ctx.save_for_backward(a2, b2)
        ctx.out_shape = out.shape
        ctx.shapes = a.shape, b.shape
        if a.ndim == 1:
            out = out[..., 0, :]
        if b.ndim == 1:
            out = out[..., 0]
        return out

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray) -> tuple[Any, Any]:
        a2, b2 = ctx.saved_tensors
        shape_a, shape_b = ctx.shapes
        need_a, need_b = ctx.needs_input_grad
        grad = grad.reshape(ctx.out_shape)  # (..., M, N), the 1-D axes put back
        ga = gb = None
        if need_a:
            # $\bar A = \bar C B^\top$, summed over the batch dims `a` was broadcast along
            ga = unbroadcast(batched_matmul(grad, b2.swapaxes(-1, -2)), a2.shape).reshape(shape_a)
        if need_b:
            if math.prod(b2.shape[:-2]) == 1:
                # folded: $\bar B = \sum_b A_b^\top \bar C_b = A^\top \bar C$ over all rows
                gb = batched_matmul(_rows(a2).T, _rows(grad)).reshape(shape_b)
            else:
                # $\bar B = A^\top \bar C$, summed over the batch dims `b` was broadcast along
                gb = unbroadcast(batched_matmul(a2.swapaxes(-1, -2), grad), b2.shape)
                gb = gb.reshape(shape_b)
        return ga, gb


def matmul(a: Any, b: Any) -> Tensor:
    """Matrix product `a @ b` with NumPy's `matmul` rules (see the module docstring).

    Both operands must be floating-point tensors of the same dtype with at least one dim.
    Inside `nima.autocast`, float32 operands are cast to float16 first (a float16 result);
    outside it float16 operands are refused.
    """
    a, b = binary_operands("matmul", autocast_lower(a), autocast_lower(b))
    shape_a, shape_b = np.shape(a), np.shape(b)
    if not shape_a or not shape_b:
        raise ValueError(f"matmul: both operands need at least 1 dim, got shapes {shape_a} and "
                         f"{shape_b} (multiply by a scalar with *)")
    if a.dtype not in FLOAT_DTYPES or b.dtype not in FLOAT_DTYPES:
        raise TypeError(f"matmul: needs floating-point operands, got {a.dtype} and {b.dtype} "
                        f"(shapes {shape_a} and {shape_b})")
    if a.dtype == np.float16 and amp.autocast_dtype() is None:
        raise TypeError(f"matmul: float16 operands are multiplied only inside nima.autocast; "
                        f"outside it use float32 or float64 (got {a.dtype} and {b.dtype}, "
                        f"shapes {shape_a} and {shape_b})")
    k_a, k_b = shape_a[-1], shape_b[-2 if len(shape_b) > 1 else 0]
    if k_a != k_b:
        raise ValueError(f"matmul: inner dimensions differ for shapes {shape_a} and {shape_b} "
                         f"({k_a} != {k_b})")
    try:
        np.broadcast_shapes(shape_a[:-2], shape_b[:-2])
    except ValueError:
        raise ValueError(f"matmul: batch dimensions of shapes {shape_a} and {shape_b} do not "
                         f"broadcast") from None
    return Matmul.apply(a, b)


# --8<-- [start:linear]
class Linear(Function):
    r"""$y = x W^\top + b$ over the last axis of $x$, one op (no transposed copy of $W$ recorded).

    With the rows of $x$ stacked into $X$ `(N, in)` and of $\bar y$ into $\bar Y$ `(N, out)`:

    $$\bar X = \bar Y W, \qquad \bar W = \bar Y^\top X, \qquad \bar b = \textstyle\sum_n \bar Y_n.$$
    """

    @staticmethod
    def forward(ctx: Context, x: np.ndarray, weight: np.ndarray,
                bias: np.ndarray | None) -> np.ndarray:
        rows = _rows(x)  # (N, in): every leading axis folded into the rows
        y = batched_matmul(rows, weight.T)  # (N, out)
        if bias is not None:
            y += bias
        ctx.save_for_backward(rows, weight)
        ctx.x_shape = x.shape
        return y.reshape(*x.shape[:-1], weight.shape[0])

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray) -> tuple[Any, Any, Any]:
        rows, weight = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad
        grad = _rows(grad)  # (N, out)
        gx = batched_matmul(grad, weight).reshape(ctx.x_shape) if need_x else None  # $\bar Y W$
        gw = batched_matmul(grad.T, rows) if need_w else None  # $\bar Y^\top X$, (out, in)
        gb = grad.sum(axis=0) if need_b else None  # (out,)
        return gx, gw, gb
# --8<-- [end:linear]


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """`x @ weight.T + bias` over the last axis, as `torch.nn.functional.linear`: `x`
    `(..., in)`, `weight` `(out, in)`, `bias` `(out,)` or None -> `(..., out)`.

    Inside `nima.autocast` the float32 operands are lowered to float16 (a float16 result).
    """
    if isinstance(x, np.ndarray):  # an array is a constant input, as for the other ops
        x = Tensor(x)
    if amp.autocast_dtype() is not None:
        x, weight, bias = autocast_lower(x), autocast_lower(weight), autocast_lower(bias)
    if not isinstance(x, Tensor) or not isinstance(weight, Tensor) or weight.ndim != 2 or \
            x.ndim < 1 or x.shape[-1] != weight.shape[1]:
        raise ValueError(f"linear: expected x (..., in) and weight (out, in), got "
                         f"{getattr(x, 'shape', x)} and {getattr(weight, 'shape', weight)}")
    dtype = x.data.dtype
    if weight.data.dtype != dtype or (bias is not None and bias.data.dtype != dtype) or \
            dtype not in FLOAT_DTYPES:
        dtypes = {dtype, weight.dtype} | ({bias.dtype} if bias is not None else set())
        raise TypeError(f"linear: x, weight and bias must share one float dtype, got "
                        f"{', '.join(sorted(map(str, dtypes)))}")
    if dtype == np.float16 and amp.autocast_dtype() is None:
        raise TypeError("linear: float16 operands are multiplied only inside nima.autocast")
    if bias is not None and bias.shape != weight.shape[:1]:
        raise ValueError(f"linear: bias must have shape ({weight.shape[0]},), got {bias.shape}")
    return Linear.apply(x, weight, bias)
