r"""Elementwise ops: each `forward` beside its `backward`, the derivative in the docstring.

Binary ops broadcast as NumPy does; `Function.apply`'s engine sums each input's gradient back
to its shape. Which operands mix, and how, is `nima.ops.operands`'s rule.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from nima import kernels
from nima._tensor import Tensor
from nima.autograd import Context, Function
from nima.ops.operands import autocast_float32, binary_operands


class Add(Function):
    r"""$y = a + b$; $\bar a = \bar y$, $\bar b = \bar y$."""

    @staticmethod
    def forward(ctx: Context, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return a + b

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return grad, grad


class Sub(Function):
    r"""$y = a - b$; $\bar a = \bar y$, $\bar b = -\bar y$."""

    @staticmethod
    def forward(ctx: Context, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return a - b

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray) -> tuple[Any, Any]:
        return grad, (-grad if ctx.needs_input_grad[1] else None)


# --8<-- [start:mul]
class Mul(Function):
    r"""$y = a b$; $\bar a = \bar y\, b$, $\bar b = \bar y\, a$."""

    @staticmethod
    def forward(ctx: Context, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        ctx.save_for_backward(a, b)
        return a * b

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray) -> tuple[Any, Any]:
        a, b = ctx.saved_tensors
        need_a, need_b = ctx.needs_input_grad
        return (grad * b if need_a else None), (grad * a if need_b else None)
# --8<-- [end:mul]


class Div(Function):
    r"""$y = a / b$; $\bar a = \bar y / b$, $\bar b = -\bar y\, a / b^2$."""

    @staticmethod
    def forward(ctx: Context, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        ctx.save_for_backward(a, b)
        return a / b

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray) -> tuple[Any, Any]:
        a, b = ctx.saved_tensors
        need_a, need_b = ctx.needs_input_grad
        ga = grad / b if need_a else None
        gb = -grad * a / (b * b) if need_b else None
        return ga, gb


class Pow(Function):
    r"""$y = a^b$; $\bar a = \bar y\, b\, a^{b-1}$, $\bar b = \bar y\, y \ln a$."""

    @staticmethod
    def forward(ctx: Context, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        out = a**b
        ctx.save_for_backward(a, b, out)
        return out

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray) -> tuple[Any, Any]:
        a, b, out = ctx.saved_tensors
        need_a, need_b = ctx.needs_input_grad
        ga = grad * b * a ** (b - 1) if need_a else None
        gb = grad * out * np.log(a, dtype=out.dtype) if need_b else None
        return ga, gb


class Neg(Function):
    r"""$y = -x$; $\bar x = -\bar y$."""

    @staticmethod
    def forward(ctx: Context, x: np.ndarray) -> np.ndarray:
        return -x

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray) -> np.ndarray:
        return -grad


# --8<-- [start:exp]
class Exp(Function):
    r"""$y = e^x$; $\bar x = \bar y\, y$ (the output is its own derivative)."""

    @staticmethod
    def forward(ctx: Context, x: np.ndarray) -> np.ndarray:
        out = np.exp(x)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray) -> np.ndarray:
        (out,) = ctx.saved_tensors
        return grad * out
# --8<-- [end:exp]


class Log(Function):
    r"""$y = \ln x$; $\bar x = \bar y / x$."""

    @staticmethod
    def forward(ctx: Context, x: np.ndarray) -> np.ndarray:
        ctx.save_for_backward(x)
        return np.log(x)

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray) -> np.ndarray:
        (x,) = ctx.saved_tensors
        return grad / x


class Sqrt(Function):
    r"""$y = \sqrt{x}$; $\bar x = \bar y / (2y)$."""

    @staticmethod
    def forward(ctx: Context, x: np.ndarray) -> np.ndarray:
        out = np.sqrt(x)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray) -> np.ndarray:
        (out,) = ctx.saved_tensors
        return grad / (2 * out)


class Abs(Function):
    r"""$y = |x|$; $\bar x = \bar y\, \operatorname{sign}(x)$ (0 at the kink $x = 0$)."""

    @staticmethod
    def forward(ctx: Context, x: np.ndarray) -> np.ndarray:
        ctx.save_for_backward(x)
        return np.abs(x)

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray) -> np.ndarray:
        (x,) = ctx.saved_tensors
        return grad * np.sign(x)


class Tanh(Function):
    r"""$y = \tanh x$; $\bar x = \bar y\,(1 - y^2)$."""

    @staticmethod
    def forward(ctx: Context, x: np.ndarray) -> np.ndarray:
        out = np.tanh(x)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray) -> np.ndarray:
        (out,) = ctx.saved_tensors
        return grad * (1 - out * out)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    r"""$\sigma(x) = 1 / (1 + e^{-x})$, written as $\tfrac12(1 + \tanh(x/2))$: no overflow."""
    return 0.5 * (1 + np.tanh(0.5 * x))


class Sigmoid(Function):
    r"""$y = \sigma(x)$; $\bar x = \bar y\, y (1 - y)$."""

    @staticmethod
    def forward(ctx: Context, x: np.ndarray) -> np.ndarray:
        out = _sigmoid(x)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray) -> np.ndarray:
        (out,) = ctx.saved_tensors
        return grad * out * (1 - out)


# --8<-- [start:relu]
class Relu(Function):
    r"""$y = \max(x, 0)$; $\bar x = \bar y\, [x > 0]$."""

    @staticmethod
    def forward(ctx: Context, x: np.ndarray) -> np.ndarray:
        ctx.save_for_backward(x)
        return np.maximum(x, 0)

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray) -> np.ndarray:
        (x,) = ctx.saved_tensors
        return grad * (x > 0)
# --8<-- [end:relu]


# --8<-- [start:gelu]
class Gelu(Function):
    r"""GELU, $y = x\,\Phi(x)$ with $\Phi$ the standard normal CDF.

    Exact: $\Phi(x) = \tfrac12\left(1 + \operatorname{erf}(x/\sqrt2)\right)$ and
    $\bar x = \bar y\,\left(\Phi(x) + x\,\varphi(x)\right)$, $\varphi(x) = e^{-x^2/2}/\sqrt{2\pi}$.

    `approximate="tanh"` (GPT-2's): $\Phi(x) \approx \tfrac12(1 + \tanh u)$ with
    $u = \sqrt{2/\pi}\,(x + c\,x^3)$, $c = 0.044715$; forward and backward are fused kernels in
    `nima.kernels.gelu`, and only $x$ is saved.
    """

    @staticmethod
    def forward(ctx: Context, x: np.ndarray, approximate: str) -> np.ndarray:
        ctx.approximate = approximate
        if approximate == "tanh":
            ctx.save_for_backward(x, None)  # the backward recomputes the gate from x
            return kernels.gelu_tanh_forward(x)
        if approximate != "none":
            raise ValueError(f"approximate must be 'none' or 'tanh', got {approximate!r}")
        cdf = kernels.normal_cdf(x)
        ctx.save_for_backward(x, cdf)
        return x * cdf

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray) -> tuple[np.ndarray, None]:
        x, cdf = ctx.saved_tensors
        if ctx.approximate == "tanh":
            return kernels.gelu_tanh_backward(grad, x), None
        pdf = np.exp(-0.5 * x * x) * (1 / math.sqrt(2 * math.pi))
        return grad * (cdf + x * pdf), None


# --8<-- [end:gelu]


class Silu(Function):
    r"""SiLU (swish), $y = x\,\sigma(x)$; $\bar x = \bar y\,\sigma(x)\,(1 + x(1 - \sigma(x)))$."""

    @staticmethod
    def forward(ctx: Context, x: np.ndarray) -> np.ndarray:
        s = _sigmoid(x)
        ctx.save_for_backward(x, s)
        return x * s

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray) -> np.ndarray:
        x, s = ctx.saved_tensors
        return grad * s * (1 + x * (1 - s))


class Softplus(Function):
    r"""$y = \ln(1 + e^x)$, as `logaddexp(0, x)` (no overflow); $\bar x = \bar y\,\sigma(x)$."""

    @staticmethod
    def forward(ctx: Context, x: np.ndarray) -> np.ndarray:
        ctx.save_for_backward(x)
        return np.logaddexp(x.dtype.type(0), x)

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray) -> np.ndarray:
        (x,) = ctx.saved_tensors
        return grad * _sigmoid(x)


def _split(ctx: Context, grad: np.ndarray, share: np.ndarray) -> tuple[Any, Any]:
    """Send `share` of the gradient to the first input and the rest to the second."""
    need_a, need_b = ctx.needs_input_grad
    share = share.astype(grad.dtype, copy=False)
    return (grad * share if need_a else None), (grad * (1 - share) if need_b else None)


class Maximum(Function):
    r"""$y = \max(a, b)$; the gradient goes to the larger input, split evenly on ties."""

    @staticmethod
    def forward(ctx: Context, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        ctx.save_for_backward(a, b)
        return np.maximum(a, b)

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray) -> tuple[Any, Any]:
        a, b = ctx.saved_tensors
        share = (a > b) + 0.5 * (a == b)
        return _split(ctx, grad, share)


class Minimum(Function):
    r"""$y = \min(a, b)$; the gradient goes to the smaller input, split evenly on ties."""

    @staticmethod
    def forward(ctx: Context, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        ctx.save_for_backward(a, b)
        return np.minimum(a, b)

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray) -> tuple[Any, Any]:
        a, b = ctx.saved_tensors
        share = (a < b) + 0.5 * (a == b)
        return _split(ctx, grad, share)


class Clamp(Function):
    r"""$y = \min(\max(x, lo), hi)$; $\bar x = \bar y\,[lo \le x \le hi]$; bounds pass."""

    @staticmethod
    def forward(ctx: Context, x: np.ndarray, lo: float | None, hi: float | None) -> np.ndarray:
        ctx.lo, ctx.hi = lo, hi
        ctx.save_for_backward(x)
        return np.clip(x, lo, hi)

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray) -> tuple[np.ndarray, None, None]:
        (x,) = ctx.saved_tensors
        inside = np.ones(x.shape, dtype=bool)
        if ctx.lo is not None:
            inside &= x >= ctx.lo
        if ctx.hi is not None:
            inside &= x <= ctx.hi
        return grad * inside, None, None


class Where(Function):
    r"""$y = c \,?\, a : b$; $\bar a = \bar y\,[c]$, $\bar b = \bar y\,[\lnot c]$."""

    @staticmethod
    def forward(ctx: Context, cond: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        ctx.save_for_backward(cond)
        return np.where(cond, a, b)

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray) -> tuple[None, Any, Any]:
        (cond,) = ctx.saved_tensors
        zero = grad.dtype.type(0)
        need_a, need_b = ctx.needs_input_grad[1:]
        return (None, np.where(cond, grad, zero) if need_a else None,
                np.where(cond, zero, grad) if need_b else None)


# ------------------------------------------------------------------------------ public functions
def add(a: Any, b: Any) -> Tensor:
    return Add.apply(*binary_operands("add", a, b))


def sub(a: Any, b: Any) -> Tensor:
    return Sub.apply(*binary_operands("sub", a, b))


def mul(a: Any, b: Any) -> Tensor:
    return Mul.apply(*binary_operands("mul", a, b))


def div(a: Any, b: Any) -> Tensor:
    return Div.apply(*binary_operands("div", a, b))


def pow(a: Any, b: Any) -> Tensor:
    return Pow.apply(*binary_operands("pow", a, b))


def neg(x: Tensor) -> Tensor:
    return Neg.apply(x)


def exp(x: Tensor) -> Tensor:
    return Exp.apply(x)


def log(x: Tensor) -> Tensor:
    return Log.apply(x)


def sqrt(x: Tensor) -> Tensor:
    return Sqrt.apply(x)


def abs(x: Tensor) -> Tensor:
    return Abs.apply(x)


def tanh(x: Tensor) -> Tensor:
    return Tanh.apply(x)


def sigmoid(x: Tensor) -> Tensor:
    return Sigmoid.apply(x)


def relu(x: Tensor) -> Tensor:
    return Relu.apply(x)


def gelu(x: Tensor, approximate: str = "none") -> Tensor:
    """GELU; `approximate="tanh"` for GPT-2's tanh approximation. Runs in float32 inside
    `nima.autocast` (NumPy's float16 `tanh`/`erf` loops are ~12x slower than float32 here)."""
    return Gelu.apply(autocast_float32(x), approximate)


def silu(x: Tensor) -> Tensor:
    return Silu.apply(x)


def softplus(x: Tensor) -> Tensor:
    return Softplus.apply(x)


def maximum(a: Any, b: Any) -> Tensor:
    return Maximum.apply(*binary_operands("maximum", a, b))


def minimum(a: Any, b: Any) -> Tensor:
    return Minimum.apply(*binary_operands("minimum", a, b))


def clamp(x: Tensor, min: float | None = None, max: float | None = None) -> Tensor:
    if min is None and max is None:
        raise ValueError("clamp: give at least one of min and max")
    return Clamp.apply(x, min, max)


def where(cond: Any, a: Any, b: Any) -> Tensor:
    """`a` where `cond` is true, else `b` (all three broadcast together)."""
    cond = np.asarray(cond.data if isinstance(cond, Tensor) else cond)
    if cond.dtype != np.bool_:
        raise TypeError(f"where: condition must be bool, got {cond.dtype}")
    a, b = binary_operands("where", a, b)
    return Where.apply(cond, a, b)


def masked_fill(x: Tensor, mask: Any, value: float) -> Tensor:
    """`x` with `value` wherever `mask` (broadcast to `x`'s shape) is true."""
    mask = np.asarray(mask.data if isinstance(mask, Tensor) else mask)
    if mask.dtype != np.bool_:
        raise TypeError(f"masked_fill: mask must be bool, got {mask.dtype}")
    try:
        shape = np.broadcast_shapes(mask.shape, x.shape)
    except ValueError:
        shape = None
    if shape != x.shape:
        raise ValueError(f"masked_fill: mask of shape {mask.shape} does not broadcast to {x.shape}")
    return Where.apply(mask, value, x)




def _compare(ufunc: np.ufunc, a: Any, b: Any) -> Tensor:
    """Comparisons give bool tensors and no gradient."""
    a, b = binary_operands(ufunc.__name__, a, b)
    av = a.data if isinstance(a, Tensor) else a
    bv = b.data if isinstance(b, Tensor) else b
    return Tensor(ufunc(av, bv))


def eq(a: Any, b: Any) -> Tensor:
    return _compare(np.equal, a, b)


def ne(a: Any, b: Any) -> Tensor:
    return _compare(np.not_equal, a, b)


def lt(a: Any, b: Any) -> Tensor:
    return _compare(np.less, a, b)


def le(a: Any, b: Any) -> Tensor:
    return _compare(np.less_equal, a, b)


def gt(a: Any, b: Any) -> Tensor:
    return _compare(np.greater, a, b)


def ge(a: Any, b: Any) -> Tensor:
    return _compare(np.greater_equal, a, b)
