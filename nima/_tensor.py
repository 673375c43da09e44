r"""`Tensor`: a NumPy array, whether it wants a gradient, and the node that made it.

A tensor holds its values in `.data` (a `numpy.ndarray`), its gradient in `.grad` (an array of
the same shape, filled by `backward()`), and — when it was computed from tensors that require
grad — the recorded `Context` in `._ctx`. Everything else here is a thin, typed front for the
ops in `nima.ops`, so that `x @ w + b` and `x.exp().sum()` read as they do in PyTorch.

The module is named `_tensor` (as in PyTorch) so that `nima.tensor` can be the factory function.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

Axis = int | tuple[int, ...] | None
FLOAT_DTYPES = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))
NUMERIC_KINDS = "biuf"  # the NumPy dtype kinds a tensor may hold: bool, int, uint, float


def numeric(array: np.ndarray, data: Any) -> np.ndarray:
    """`array` (made from `data`) if it holds numbers; strings, None and other objects are
    refused with a TypeError naming what `data` was."""
    if array.dtype.kind not in NUMERIC_KINDS:
        raise TypeError(f"tensor: expected numbers (bool, integer or floating point), got "
                        f"{type(data).__name__} data (NumPy dtype {array.dtype})")
    return array


class Tensor:
    """An n-dimensional array with reverse-mode autograd.

    Operators work as on NumPy arrays, broadcasting included, and are differentiable:
    `x + y`, `x - y`, `x * y`, `x / y`, `x ** y`, `x @ y`, `-x` and indexing `x[i]` (basic,
    integer-array and boolean). Comparisons (`==`, `!=`, `<`, `<=`, `>`, `>=`) give boolean
    tensors, with no gradient.
    """

    __slots__ = ("__weakref__", "_ctx", "_retains_grad", "data", "grad", "requires_grad")

    __array_priority__ = 1000  # so `ndarray + Tensor` defers to Tensor.__radd__

    def __init__(self, data: Any, requires_grad: bool = False) -> None:
        self.data: np.ndarray = numeric(np.asarray(data), data)
        """The values, a `numpy.ndarray` (ops read and write it; edit it only outside a graph)."""
        self.grad: np.ndarray | None = None
        r"""$\partial L / \partial x$ after `backward()`, shaped as `data`; None before."""
        self._ctx: Any = None
        self._retains_grad = False
        self.requires_grad: bool = False
        """Whether `backward()` computes a gradient for this tensor (set with `requires_grad_`)."""
        if requires_grad:
            self.requires_grad_(True)

    @classmethod
    def _from_array(cls, data: np.ndarray, requires_grad: bool) -> Tensor:
        """Wrap an op's output without copying or checking (the fast path of `Function.apply`)."""
        t = object.__new__(cls)
        t.data = data if type(data) is np.ndarray else np.asarray(data)
        t.grad = None
        t._ctx = None
        t._retains_grad = False
        t.requires_grad = requires_grad
        return t

    # ----------------------------------------------------------------------------- attributes
    @property
    def shape(self) -> tuple[int, ...]:
        """The size of each axis, as `numpy.ndarray.shape`."""
        return self.data.shape

    @property
    def ndim(self) -> int:
        """The number of axes."""
        return self.data.ndim

    @property
    def dtype(self) -> np.dtype:
        """The NumPy dtype of the values."""
        return self.data.dtype

    @property
    def size(self) -> int:
        r"""The number of elements, $\prod_i$ `shape[i]`."""
        return self.data.size

    @property
    def is_leaf(self) -> bool:
        """True for tensors the user created (gradients accumulate into their `.grad`)."""
        return self._ctx is None

    @property
    def T(self) -> Tensor:
        """All axes reversed, as `numpy.ndarray.T`."""
        return _ops.permute(self, tuple(reversed(range(self.ndim))))

    def __len__(self) -> int:
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.data.shape[0]

    def __repr__(self) -> str:
        body = np.array2string(self.data, separator=", ", precision=4, prefix="tensor(")
        extras = [f"dtype={self.dtype}"] if self.dtype != np.float32 else []
        if self._ctx is not None:
            extras.append(f"grad_fn=<{self._ctx.function.__name__}>")
        elif self.requires_grad:
            extras.append("requires_grad=True")
        return "tensor(" + body + "".join(", " + e for e in extras) + ")"

    # ----------------------------------------------------------------------------- autograd
    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        """Mark a leaf as wanting a gradient (only floating-point tensors can)."""
        if requires_grad and self.data.dtype not in FLOAT_DTYPES:
            raise TypeError(
                f"requires_grad: only floating-point tensors can require grad, got {self.dtype}"
            )
        if not requires_grad and self._ctx is not None:
            raise RuntimeError("requires_grad_: cannot turn off grad for a non-leaf; use detach()")
        self.requires_grad = requires_grad
        return self

    def retain_grad(self) -> Tensor:
        """Keep `.grad` for this non-leaf tensor too during `backward()`."""
        self._retains_grad = True
        return self

    def backward(self, gradient: Any = None, retain_graph: bool = False) -> None:
        """Accumulate gradients of this tensor into the `.grad` of every leaf it depends on.

        A non-scalar tensor needs `gradient` (the vector of the vector–Jacobian product). The
        graph is freed afterwards; a second `backward()` through it raises unless the first call
        passed `retain_graph=True`.
        """
        _autograd.backward(self, gradient, retain_graph)

    def detach(self) -> Tensor:
        """The same values (shared memory), cut from the graph."""
        return Tensor._from_array(self.data, False)

    def zero_grad_(self) -> None:
        """Forget the gradient: `.grad` becomes None."""
        self.grad = None

    # ----------------------------------------------------------------------------- conversion
    def numpy(self) -> np.ndarray:
        """The underlying array (shared memory; detach first if you mean to edit it)."""
        return self.data

    def item(self) -> float | int | bool:
        """The value of a one-element tensor as a Python number."""
        if self.data.size != 1:
            raise ValueError(
                f"item: only one-element tensors convert to a scalar, got {self.shape}"
            )
        return self.data.item()

    def tolist(self) -> Any:
        """The values as nested Python lists."""
        return self.data.tolist()

    def to(self, dtype: Any) -> Tensor:
        """Cast to `dtype` (differentiable between float dtypes)."""
        return _ops.cast(self, np.dtype(dtype))

    def float(self) -> Tensor:
        """Cast to float32 (differentiable from another float dtype)."""
        return self.to(np.float32)

    def double(self) -> Tensor:
        """Cast to float64 (differentiable from another float dtype)."""
        return self.to(np.float64)

    def long(self) -> Tensor:
        """Cast to int64 (no gradient flows through an integer cast)."""
        return self.to(np.int64)

    def contiguous(self) -> Tensor:
        """The tensor itself: Nima's ops accept any strides (for PyTorch code that calls it)."""
        return self

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        return self.data if dtype is None else self.data.astype(dtype)

    def __bool__(self) -> bool:
        return bool(self.item())

    def __float__(self) -> float:
        return float(self.item())

    def __int__(self) -> int:
        return int(self.item())

    __hash__ = object.__hash__

    # ----------------------------------------------------------------------------- operators
    def __add__(self, other: Any) -> Tensor:
        return _ops.add(self, other)

    def __radd__(self, other: Any) -> Tensor:
        return _ops.add(other, self)

    def __sub__(self, other: Any) -> Tensor:
        return _ops.sub(self, other)

    def __rsub__(self, other: Any) -> Tensor:
        return _ops.sub(other, self)

    def __mul__(self, other: Any) -> Tensor:
        return _ops.mul(self, other)

    def __rmul__(self, other: Any) -> Tensor:
        return _ops.mul(other, self)

    def __truediv__(self, other: Any) -> Tensor:
        return _ops.div(self, other)

    def __rtruediv__(self, other: Any) -> Tensor:
        return _ops.div(other, self)

    def __pow__(self, other: Any) -> Tensor:
        return _ops.pow(self, other)

    def __rpow__(self, other: Any) -> Tensor:
        return _ops.pow(other, self)

    def __matmul__(self, other: Any) -> Tensor:
        return _ops.matmul(self, other)

    def __rmatmul__(self, other: Any) -> Tensor:
        return _ops.matmul(other, self)

    def __neg__(self) -> Tensor:
        return _ops.neg(self)

    def __getitem__(self, index: Any) -> Tensor:
        return _ops.getitem(self, index)

    def __eq__(self, other: Any) -> Tensor:  # type: ignore[override]
        return _ops.eq(self, other)

    def __ne__(self, other: Any) -> Tensor:  # type: ignore[override]
        return _ops.ne(self, other)

    def __lt__(self, other: Any) -> Tensor:
        return _ops.lt(self, other)

    def __le__(self, other: Any) -> Tensor:
        return _ops.le(self, other)

    def __gt__(self, other: Any) -> Tensor:
        return _ops.gt(self, other)

    def __ge__(self, other: Any) -> Tensor:
        return _ops.ge(self, other)

    # ----------------------------------------------------------------------------- elementwise
    def exp(self) -> Tensor:
        r"""Elementwise $y = e^x$; $\bar x = \bar y\, y$."""
        return _ops.exp(self)

    def log(self) -> Tensor:
        r"""Elementwise natural log, $y = \ln x$; $\bar x = \bar y / x$."""
        return _ops.log(self)

    def sqrt(self) -> Tensor:
        r"""Elementwise $y = \sqrt x$; $\bar x = \bar y / (2y)$."""
        return _ops.sqrt(self)

    def abs(self) -> Tensor:
        r"""Elementwise $y = |x|$; $\bar x = \bar y \operatorname{sign}(x)$."""
        return _ops.abs(self)

    def tanh(self) -> Tensor:
        r"""Elementwise $y = \tanh x$; $\bar x = \bar y\,(1 - y^2)$."""
        return _ops.tanh(self)

    def sigmoid(self) -> Tensor:
        r"""Elementwise $y = \sigma(x) = 1 / (1 + e^{-x})$; $\bar x = \bar y\, y (1 - y)$."""
        return _ops.sigmoid(self)

    def relu(self) -> Tensor:
        r"""Elementwise $y = \max(x, 0)$; $\bar x = \bar y\,[x > 0]$."""
        return _ops.relu(self)

    def gelu(self, approximate: str = "none") -> Tensor:
        r"""Elementwise $y = x\,\Phi(x)$, $\Phi$ the normal CDF (`approximate="tanh"`: GPT-2's)."""
        return _ops.gelu(self, approximate)

    def silu(self) -> Tensor:
        r"""Elementwise $y = x\,\sigma(x)$ (SiLU, or swish)."""
        return _ops.silu(self)

    def softplus(self) -> Tensor:
        r"""Elementwise $y = \ln(1 + e^x)$, a smooth ReLU."""
        return _ops.softplus(self)

    def clamp(self, min: float | None = None, max: float | None = None) -> Tensor:
        r"""Elementwise $y = \min(\max(x, \text{min}), \text{max})$; either bound may be None."""
        return _ops.clamp(self, min, max)

    def maximum(self, other: Any) -> Tensor:
        r"""Elementwise $\max(x, \text{other})$, broadcast; ties split the gradient evenly."""
        return _ops.maximum(self, other)

    def minimum(self, other: Any) -> Tensor:
        r"""Elementwise $\min(x, \text{other})$, broadcast; ties split the gradient evenly."""
        return _ops.minimum(self, other)

    def masked_fill(self, mask: Any, value: float) -> Tensor:
        """The values, with `value` wherever the boolean `mask` (broadcast to `x`) is true."""
        return _ops.masked_fill(self, mask, value)

    # ----------------------------------------------------------------------------- reductions
    def sum(self, dim: Axis = None, keepdim: bool = False) -> Tensor:
        r"""$y = \sum_i x_i$ over `dim` (all axes when None); $\bar x_i = \bar y$."""
        return _ops.sum(self, dim, keepdim)

    def mean(self, dim: Axis = None, keepdim: bool = False) -> Tensor:
        r"""$y = \frac1n \sum_i x_i$ over `dim` (all axes when None); $\bar x_i = \bar y / n$."""
        return _ops.mean(self, dim, keepdim)

    def var(self, dim: Axis = None, keepdim: bool = False, correction: int = 1) -> Tensor:
        r"""$y = \frac{1}{n - c} \sum_i (x_i - \mu)^2$ over `dim`, $c$ = `correction`."""
        return _ops.var(self, dim, keepdim, correction)

    def max(self, dim: int | None = None, keepdim: bool = False) -> Tensor:
        r"""$y = \max_i x_i$ over `dim` (values only, as `torch.amax`); ties share the gradient."""
        return _ops.max(self, dim, keepdim)

    def min(self, dim: int | None = None, keepdim: bool = False) -> Tensor:
        r"""$y = \min_i x_i$ over `dim` (values only, as `torch.amin`); ties share the gradient."""
        return _ops.min(self, dim, keepdim)

    def logsumexp(self, dim: Axis = None, keepdim: bool = False) -> Tensor:
        r"""$y = \ln \sum_i e^{x_i}$ over `dim` (no overflow); $\bar x = \bar y\,e^{x - y}$."""
        return _ops.logsumexp(self, dim, keepdim)

    def argmax(self, dim: int | None = None, keepdim: bool = False) -> Tensor:
        """The index of the largest value along `dim` (in the flattened tensor if None)."""
        return _ops.argmax(self, dim, keepdim)

    def argmin(self, dim: int | None = None, keepdim: bool = False) -> Tensor:
        """The index of the smallest value along `dim` (in the flattened tensor if None)."""
        return _ops.argmin(self, dim, keepdim)

    # ----------------------------------------------------------------------------- shape
    def reshape(self, *shape: Any) -> Tensor:
        """The same values in a new shape of the same size; one entry may be -1 (inferred)."""
        return _ops.reshape(self, _shape_args(shape))

    def view(self, *shape: Any) -> Tensor:
        """The same as `reshape` (Nima has no separate strided views to distinguish)."""
        return _ops.reshape(self, _shape_args(shape))

    def permute(self, *dims: Any) -> Tensor:
        """The axes reordered: axis `i` of the result is axis `dims[i]` of `x`."""
        return _ops.permute(self, _shape_args(dims))

    def transpose(self, dim0: int, dim1: int) -> Tensor:
        """Axes `dim0` and `dim1` swapped."""
        return _ops.transpose(self, dim0, dim1)

    def expand(self, *shape: Any) -> Tensor:
        """Broadcast to `shape` without copying (-1 keeps an axis); the gradient is summed back."""
        return _ops.expand(self, _shape_args(shape))

    def squeeze(self, dim: Axis = None) -> Tensor:
        """Axes of size 1 dropped (all of them, or those in `dim`)."""
        return _ops.squeeze(self, dim)

    def unsqueeze(self, dim: int) -> Tensor:
        """A new axis of size 1 inserted at position `dim`."""
        return _ops.unsqueeze(self, dim)

    def flatten(self, start_dim: int = 0, end_dim: int = -1) -> Tensor:
        """Axes `start_dim` to `end_dim` (inclusive) merged into one."""
        return _ops.flatten(self, start_dim, end_dim)

    def split(self, split_size: int | Sequence[int], dim: int = 0) -> tuple[Tensor, ...]:
        """Pieces of `split_size` along `dim` (the last may be smaller), or of the sizes listed."""
        return _ops.split(self, split_size, dim)

    def chunk(self, chunks: int, dim: int = 0) -> tuple[Tensor, ...]:
        r"""At most `chunks` equal pieces along `dim`, of $\lceil n / \text{chunks} \rceil$ each."""
        return _ops.chunk(self, chunks, dim)

    def tril(self, diagonal: int = 0) -> Tensor:
        r"""The lower triangle of the last two axes: entries with column - row $\le$ `diagonal`."""
        return _ops.tril(self, diagonal)

    def triu(self, diagonal: int = 0) -> Tensor:
        r"""The upper triangle of the last two axes: entries with column - row $\ge$ `diagonal`."""
        return _ops.triu(self, diagonal)

    # ----------------------------------------------------------------------------- nn
    def matmul(self, other: Any) -> Tensor:
        r"""The matrix product $y = x\,W$ (batched over leading axes, as `x @ other`)."""
        return _ops.matmul(self, other)

    def softmax(self, dim: int = -1) -> Tensor:
        r"""$y_i = e^{x_i} / \sum_j e^{x_j}$; $\bar x = y \odot (\bar y - y^\top \bar y)$."""
        return _ops.softmax(self, dim)

    def log_softmax(self, dim: int = -1) -> Tensor:
        r"""$y_i = x_i - \ln \sum_j e^{x_j}$ on `dim`; $\bar x = \bar y - e^y \sum_j \bar y_j$."""
        return _ops.log_softmax(self, dim)


def _shape_args(args: tuple[Any, ...]) -> tuple[int, ...]:
    """Accept both `x.reshape(2, 3)` and `x.reshape((2, 3))`."""
    if len(args) == 1 and isinstance(args[0], (tuple, list)):
        return tuple(args[0])
    return tuple(args)


# Imported last: the ops and the engine are built on `Tensor`, defined above.
from nima import autograd as _autograd  # noqa: E402
from nima import ops as _ops  # noqa: E402
