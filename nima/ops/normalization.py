r"""Normalisation ops: layer norm and RMSNorm over the trailing `normalized_shape` dims.

Both flatten the normalised dims into one axis of $C$ values and run the fused kernels in
`nima.kernels.layernorm`, which save one mean and one rstd per row instead of the intermediate
tensors an unfused composition (`x.mean(...)`, `x.var(...)`, subtract, divide, ...) would keep:

$$\text{layer\_norm}: \; y = \frac{x - \mu}{\sqrt{\sigma^2 + \epsilon}} \odot w + b,
\qquad \text{rms\_norm}: \; y = \frac{x}{\sqrt{\operatorname{mean}(x^2) + \epsilon}} \odot w,$$

with $\mu$, $\sigma^2$ (biased) and $\operatorname{mean}(x^2)$ taken over those $C$ values.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from nima import kernels
from nima._tensor import Tensor
from nima.autograd import Context, Function
from nima.ops.operands import autocast_float32

_KERNEL_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _rows(x: np.ndarray, n_dims: int) -> np.ndarray:
    """`x` with its last `n_dims` dims flattened into one axis: (..., C)."""
    lead = x.shape[: x.ndim - n_dims]
    return np.ascontiguousarray(x).reshape(*lead, math.prod(x.shape[x.ndim - n_dims:]))


def _flat(w: np.ndarray | None) -> np.ndarray | None:
    return None if w is None else w.reshape(-1)


def _param_grad(ctx: Context, i: int, g: np.ndarray, param: np.ndarray | None) -> Any:
    """The gradient of parameter input `i` (whose array was `param`), in its shape, if it
    wants one."""
    return g.reshape(param.shape) if ctx.needs_input_grad[i] else None


class LayerNorm(Function):
    r"""$y = \hat x \odot w + b$, $\hat x = (x - \mu)\,\text{rstd}$, over the last `n_dims` dims.

    $\bar x = \text{rstd}\,(\bar{\hat x} - \operatorname{mean}(\bar{\hat x})
    - \hat x \operatorname{mean}(\bar{\hat x} \odot \hat x))$ with $\bar{\hat x} = \bar y
    \odot w$; $\bar w = \sum_{\text{rows}} \bar y \odot \hat x$,
    $\bar b = \sum_{\text{rows}} \bar y$ — all three from one fused backward kernel.
    """

    @staticmethod
    def forward(ctx: Context, x: np.ndarray, weight: np.ndarray | None,
                bias: np.ndarray | None, n_dims: int, eps: float) -> np.ndarray:
        x2 = _rows(x, n_dims)  # (..., C)
        y, mean, rstd = kernels.layer_norm_forward(x2, _flat(weight), _flat(bias), eps)
        ctx.save_for_backward(x2, weight, bias, mean, rstd)
        ctx.x_shape = x.shape
        return y.reshape(x.shape)

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray) -> tuple[Any, ...]:
        x2, weight, bias, mean, rstd = ctx.saved_tensors
        dx, dw, db = kernels.layer_norm_backward(grad.reshape(x2.shape), x2, _flat(weight),
                                                 mean, rstd)
        return (dx.reshape(ctx.x_shape), _param_grad(ctx, 1, dw, weight),
                _param_grad(ctx, 2, db, bias), None, None)


class RMSNorm(Function):
    r"""$y = x\,\text{rstd} \odot w$, $\text{rstd} = 1/\sqrt{\operatorname{mean}(x^2)+\epsilon}$.

    With $\hat x = x\,\text{rstd}$ and $\bar{\hat x} = \bar y \odot w$:
    $\bar x = \text{rstd}\,(\bar{\hat x} - \hat x \operatorname{mean}(\bar{\hat x} \odot
    \hat x))$ — layer norm's formula without the centring term — and
    $\bar w = \sum_{\text{rows}} \bar y \odot \hat x$.
    """

    @staticmethod
    def forward(ctx: Context, x: np.ndarray, weight: np.ndarray | None, n_dims: int,
                eps: float) -> np.ndarray:
        x2 = _rows(x, n_dims)  # (..., C)
        y, rstd = kernels.rms_norm_forward(x2, _flat(weight), eps)
        ctx.save_for_backward(x2, weight, rstd)
        ctx.x_shape = x.shape
        return y.reshape(x.shape)

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray) -> tuple[Any, ...]:
        x2, weight, rstd = ctx.saved_tensors
        dx, dw = kernels.rms_norm_backward(grad.reshape(x2.shape), x2, _flat(weight), rstd)
        return dx.reshape(ctx.x_shape), _param_grad(ctx, 1, dw, weight), None, None


# ------------------------------------------------------------------------------ public functions
def _checked(op: str, x: Any, normalized_shape: int | tuple[int, ...],
             **params: Tensor | None) -> int:
    """Check x, `normalized_shape` and the parameters; the number of normalised dims."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{op}: expected a Tensor, got {type(x).__name__}")
    if x.dtype not in _KERNEL_DTYPES:
        raise TypeError(f"{op}: needs a float32 or float64 tensor, got {x.dtype} "
                        f"(shape {x.shape})")
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    if not shape or 0 in shape or x.shape[x.ndim - len(shape):] != shape or len(shape) > x.ndim:
        raise ValueError(f"{op}: normalized_shape {shape} must be non-empty and match the "
                         f"trailing dims of x, got x of shape {x.shape}")
    for name, p in params.items():
        if p is None:
            continue
        if not isinstance(p, Tensor):
            raise TypeError(f"{op}: {name} must be a Tensor or None, got {type(p).__name__}")
        if p.shape != shape:
            raise ValueError(f"{op}: {name} of shape {p.shape} does not match normalized_shape "
                             f"{shape} (x of shape {x.shape})")
        if p.dtype != x.dtype:
            raise TypeError(f"{op}: {name} is {p.dtype} but x is {x.dtype} (shapes {p.shape} "
                            f"and {x.shape}); convert one with .float() or .double()")
    return len(shape)


def layer_norm(x: Tensor, normalized_shape: int | tuple[int, ...], weight: Tensor | None = None,
               bias: Tensor | None = None, eps: float = 1e-5) -> Tensor:
    r"""Layer normalisation over the last `len(normalized_shape)` dims of `x`, as PyTorch's.

    $y = (x - \mu) / \sqrt{\sigma^2 + \epsilon} \odot w + b$ with the mean and the *biased*
    variance over those dims; `weight` and `bias` have shape `normalized_shape` (None: 1 and 0).

    Example: `layer_norm(tensor([1., 2., 3.]), 3)` is about `[-1.2247, 0, 1.2247]`
    ($\mu = 2$, $\sigma^2 = 2/3$).
    """
    x = autocast_float32(x)  # in autocast: float16 in, float32 out
    n_dims = _checked("layer_norm", x, normalized_shape, weight=weight, bias=bias)
    return LayerNorm.apply(x, weight, bias, n_dims, kernels.check_eps("layer_norm", eps))


def rms_norm(x: Tensor, normalized_shape: int | tuple[int, ...], weight: Tensor | None = None,
             eps: float = 1e-6) -> Tensor:
    r"""RMS normalisation over the last `len(normalized_shape)` dims of `x`.

    $y = x / \sqrt{\operatorname{mean}(x^2) + \epsilon} \odot w$ — no centring, no bias.
    `eps` defaults to 1e-6 (PyTorch's `F.rms_norm` uses the dtype's machine epsilon when it is
    None; pass that explicitly to match it).

    Example: `rms_norm(tensor([3., 4.]), 2, eps=0)` is `[3, 4] / sqrt(12.5)`.
    """
    x = autocast_float32(x)  # in autocast: float16 in, float32 out
    n_dims = _checked("rms_norm", x, normalized_shape, weight=weight)
    return RMSNorm.apply(x, weight, n_dims, kernels.check_eps("rms_norm", eps))
