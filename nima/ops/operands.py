r"""What an op's operands may be, and the dtype casts that autocast inserts.

A binary op takes two tensors, or a tensor and a Python number, or a tensor and an array or
list (made a constant tensor of the tensor's dtype). A Python number keeps the tensor's dtype; two
float tensors of different dtypes are refused rather than silently promoted (float64 creeping
into a float32 model doubles its cost) — convert one with `.float()` or `.double()`. The one
exception is a float16/float32 pair inside `nima.autocast`, promoted to float32.

`Cast` is the differentiable dtype conversion; `autocast_lower` and `autocast_float32` are the
two casts `nima.autocast` inserts in front of an op (see `nima.amp` for which ops get which).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nima import amp
from nima._tensor import FLOAT_DTYPES, Tensor
from nima.autograd import Context, Function


def as_operand(op: str, x: Any, like: Tensor) -> Any:
    """`x` as the other operand of a binary op with tensor `like`.

    Numbers stay Python scalars (NumPy keeps the tensor's dtype for them); arrays, lists and
    int/bool tensors become constant tensors of `like`'s float dtype; tensors must not mix
    float dtypes.
    """
    if isinstance(x, Tensor):
        a, b = like.data.dtype, x.data.dtype
        if a in FLOAT_DTYPES and b not in FLOAT_DTYPES:
            return Tensor(x.data.astype(a))  # an int/bool tensor: a constant of like's dtype
        if (a is not b and a != b and a in FLOAT_DTYPES and b in FLOAT_DTYPES
                and not amp.promotes(a, b)):
            raise TypeError(
                f"{op}: dtype mismatch {like.dtype} vs {x.dtype} (shapes {like.shape} and "
                f"{x.shape}); convert one with .float() or .double()"
            )
        return x
    if isinstance(x, np.generic):  # first: np.float64 is a subclass of float
        return x.item()
    if isinstance(x, (float, int)):
        return x
    dtype = like.dtype if like.dtype in FLOAT_DTYPES else None
    return Tensor(np.asarray(x, dtype=dtype))


def binary_operands(op: str, a: Any, b: Any) -> tuple[Any, Any]:
    """Coerce the operands of a binary op; at least one of them must be a tensor."""
    if isinstance(a, Tensor) and (a.data.dtype in FLOAT_DTYPES or not isinstance(b, Tensor)):
        if type(b) is float:  # the common `x * 0.5`: nothing to check
            return a, b
        b = as_operand(op, b, a)
    else:
        a = as_operand(op, a, b)
    if (amp.autocast_dtype() is not None and isinstance(a, Tensor) and isinstance(b, Tensor)
            and a.data.dtype != b.data.dtype):  # autocast's float16/float32 pair: promote
        return autocast_float32(a), autocast_float32(b)
    return a, b


class Cast(Function):
    r"""$y = x$ in another dtype; $\bar x = \bar y$ cast back.

    Values beyond float16's range become $\pm\infty$ without a warning: that overflow is
    float16's defined behaviour, and `GradScaler` looks for it."""

    @staticmethod
    def forward(ctx: Context, x: np.ndarray, dtype: np.dtype) -> np.ndarray:
        ctx.source = x.dtype
        return _cast_array(x, dtype)

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray) -> tuple[np.ndarray, None]:
        return _cast_array(grad, ctx.source), None


def _cast_array(x: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if dtype == amp.FLOAT16:
        with np.errstate(over="ignore"):
            return x.astype(dtype, copy=False)
    return x.astype(dtype, copy=False)


def cast(x: Tensor, dtype: np.dtype) -> Tensor:
    if x.dtype == dtype:
        return x
    if x.requires_grad and dtype not in FLOAT_DTYPES:
        return Tensor(x.data.astype(dtype))
    return Cast.apply(x, dtype)


# --8<-- [start:autocast_casts]
def autocast_lower(x: Any) -> Any:
    """Inside `nima.autocast`, a float32 tensor cast to float16 (matmul's operands); else `x`."""
    low = amp.autocast_dtype()
    if low is not None and isinstance(x, Tensor) and x.data.dtype == amp.FLOAT32:
        return cast(x, low)
    return x


def autocast_float32(x: Any) -> Any:
    """Inside `nima.autocast`, a float16 tensor cast to float32 (precision-sensitive ops and
    promotion); else `x`. The `Cast` node sends the gradient back in float16."""
    if amp.autocast_dtype() is not None and isinstance(x, Tensor) and x.data.dtype == amp.FLOAT16:
        return cast(x, amp.FLOAT32)
    return x
# --8<-- [end:autocast_casts]
