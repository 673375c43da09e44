r"""Shape ops: they move elements around without changing them, so each backward moves the
gradient back the same way (reshape ↔ reshape, permute ↔ inverse permute, cat ↔ split).

Where NumPy can, the forward returns a view that shares memory with its input, as PyTorch's
`view`/`permute`/`expand` do.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from nima._tensor import Axis, Tensor
from nima.autograd import Context, Function, unbroadcast
from nima.ops.reduce import normalize_dims


def _dim(op: str, dim: int, ndim: int) -> int:
    """One axis as a non-negative index; a 0-d tensor accepts 0 and -1 (as in PyTorch)."""
    dims = normalize_dims(op, dim, ndim)  # raises for an out-of-range dim
    return dims[0] if dims else 0


class Reshape(Function):
    r"""Same elements, new shape (a view if possible); $\bar x = \operatorname{reshape}(\bar y)$."""

    @staticmethod
    def forward(ctx: Context, x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        ctx.shape = x.shape
        return x.reshape(shape)

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray) -> tuple[np.ndarray, None]:
        return grad.reshape(ctx.shape), None


# --8<-- [start:permute]
class Permute(Function):
    r"""$y = x$ with axes reordered by $\pi$; $\bar x = \bar y$ reordered by $\pi^{-1}$."""

    @staticmethod
    def forward(ctx: Context, x: np.ndarray, dims: tuple[int, ...]) -> np.ndarray:
        ctx.inverse = tuple(sorted(range(len(dims)), key=dims.__getitem__))
        return x.transpose(dims)

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray) -> tuple[np.ndarray, None]:
        return grad.transpose(ctx.inverse), None
# --8<-- [end:permute]


class Expand(Function):
    r"""Broadcast to a larger shape (a read-only view); $\bar x = $ `unbroadcast`$(\bar y)$."""

    @staticmethod
    def forward(ctx: Context, x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        ctx.shape = x.shape
        return np.broadcast_to(x, shape)

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray) -> tuple[np.ndarray, None]:
        return unbroadcast(grad, ctx.shape), None


class Narrow(Function):
    r"""$y = x[\ldots, s:s+n, \ldots]$ along `dim`; $\bar x$ is zero outside the slice."""

    @staticmethod
    def forward(ctx: Context, x: np.ndarray, dim: int, start: int, length: int) -> np.ndarray:
        ctx.shape, ctx.index = x.shape, (slice(None),) * dim + (slice(start, start + length),)
        return x[ctx.index]

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray) -> tuple[np.ndarray, None, None, None]:
        out = np.zeros(ctx.shape, dtype=grad.dtype)
        out[ctx.index] = grad
        return out, None, None, None


class Cat(Function):
    r"""Join along `dim`; $\bar x_k$ is the matching slice of $\bar y$."""

    @staticmethod
    def forward(ctx: Context, *arrays: np.ndarray, dim: int) -> np.ndarray:
        ctx.dim = dim
        ctx.bounds = np.cumsum([a.shape[dim] for a in arrays])[:-1]
        return np.concatenate(arrays, axis=dim)

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray) -> tuple[np.ndarray, ...]:
        return tuple(np.split(grad, ctx.bounds, axis=ctx.dim))


class Stack(Function):
    r"""Join along a new axis `dim`; $\bar x_k = \bar y[\ldots, k, \ldots]$."""

    @staticmethod
    def forward(ctx: Context, *arrays: np.ndarray, dim: int) -> np.ndarray:
        ctx.dim = dim
        return np.stack(arrays, axis=dim)

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray) -> tuple[np.ndarray, ...]:
        return tuple(np.moveaxis(grad, ctx.dim, 0))


class Triangle(Function):
    r"""Keep the lower (`tril`) or upper (`triu`) triangle of the last two axes, zero the rest;
    the gradient is masked the same way."""

    @staticmethod
    def forward(ctx: Context, x: np.ndarray, diagonal: int, lower: bool) -> np.ndarray:
        ctx.diagonal, ctx.lower = diagonal, lower
        return np.tril(x, diagonal) if lower else np.triu(x, diagonal)

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray) -> tuple[np.ndarray, None, None]:
        keep = np.tril if ctx.lower else np.triu
        return keep(grad, ctx.diagonal), None, None


# ------------------------------------------------------------------------------ public functions
def reshape(x: Tensor, shape: Sequence[int]) -> Tensor:
    """`x` with a new shape of the same size; one entry may be -1 (inferred)."""
    shape = tuple(int(n) for n in shape)
    known = math.prod(n for n in shape if n != -1)
    if shape.count(-1) > 1 or (-1 not in shape and known != x.size) or \
            (-1 in shape and (known == 0 or x.size % known)):
        raise ValueError(f"reshape: cannot view a tensor of shape {x.shape} as {shape}")
    return Reshape.apply(x, shape)


view = reshape


def permute(x: Tensor, dims: Sequence[int]) -> Tensor:
    dims = tuple(int(d) for d in dims)
    axes = sorted(d + x.ndim if d < 0 else d for d in dims)  # no wrap-around: 5 is not axis 2
    if len(dims) != x.ndim or axes != list(range(x.ndim)):
        raise ValueError(f"permute: {dims} is not a permutation of the {x.ndim} axes of {x.shape}")
    return Permute.apply(x, tuple(d % x.ndim for d in dims))


def transpose(x: Tensor, dim0: int, dim1: int) -> Tensor:
    """Swap two axes."""
    dims = list(range(x.ndim))
    a, b = _dim("transpose", dim0, x.ndim), _dim("transpose", dim1, x.ndim)
    if dims:
        dims[a], dims[b] = dims[b], dims[a]
    return Permute.apply(x, tuple(dims))


def expand(x: Tensor, shape: Sequence[int]) -> Tensor:
    """Broadcast `x` to `shape` without copying; -1 keeps a dimension's size."""
    shape = tuple(int(n) for n in shape)
    lead = len(shape) - x.ndim
    full = tuple(x.shape[i - lead] if n == -1 and i >= lead else n for i, n in enumerate(shape))
    try:
        ok = lead >= 0 and np.broadcast_shapes(x.shape, full) == full
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"expand: cannot expand shape {x.shape} to {shape}")
    return Expand.apply(x, full)


def squeeze(x: Tensor, dim: Axis = None) -> Tensor:
    """Drop axes of size 1 (all of them, or those in `dim` that have size 1)."""
    dims = normalize_dims("squeeze", dim, x.ndim)
    shape = tuple(n for i, n in enumerate(x.shape) if not (i in dims and n == 1))
    return Reshape.apply(x, shape)


def unsqueeze(x: Tensor, dim: int) -> Tensor:
    """Insert an axis of size 1 at `dim` (in the result's numbering)."""
    d = _dim("unsqueeze", dim, x.ndim + 1)
    return Reshape.apply(x, (*x.shape[:d], 1, *x.shape[d:]))


def flatten(x: Tensor, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    """Merge axes `start_dim..end_dim` (inclusive) into one."""
    if x.ndim == 0:
        return Reshape.apply(x, (1,))
    s, e = _dim("flatten", start_dim, x.ndim), _dim("flatten", end_dim, x.ndim)
    if s > e:
        raise ValueError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim}")
    return Reshape.apply(x, (*x.shape[:s], int(np.prod(x.shape[s:e + 1])), *x.shape[e + 1:]))


def _same_shapes(op: str, tensors: Sequence[Tensor], skip: int | None) -> None:
    if not tensors:
        raise ValueError(f"{op}: expected a non-empty sequence of tensors")
    first = tensors[0]
    for t in tensors[1:]:
        if t.ndim != first.ndim or any(
            a != b for i, (a, b) in enumerate(zip(t.shape, first.shape, strict=True)) if i != skip
        ):
            raise ValueError(f"{op}: shapes {[u.shape for u in tensors]} do not match"
                             + (f" outside dim {skip}" if skip is not None else ""))
        if t.dtype != first.dtype:
            raise TypeError(f"{op}: dtypes {[str(u.dtype) for u in tensors]} differ")


def cat(tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
    """Concatenate along an existing axis."""
    d = _dim("cat", dim, tensors[0].ndim) if tensors else 0
    _same_shapes("cat", tensors, d)
    return Cat.apply(*tensors, dim=d)


def stack(tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
    """Join along a new axis."""
    d = _dim("stack", dim, tensors[0].ndim + 1) if tensors else 0
    _same_shapes("stack", tensors, None)
    return Stack.apply(*tensors, dim=d)


def narrow(x: Tensor, dim: int, start: int, length: int) -> Tensor:
    """The slice `start:start+length` along `dim`."""
    d = _dim("narrow", dim, x.ndim)
    if not (start >= 0 and length >= 0 and start + length <= x.shape[d]):
        raise IndexError(f"narrow: [{start}, {start + length}) is outside dim {d} of {x.shape}")
    return Narrow.apply(x, d, start, length)


def split(x: Tensor, split_size: int | Sequence[int], dim: int = 0) -> tuple[Tensor, ...]:
    """Pieces of `split_size` along `dim` (the last may be smaller), or of the given sizes."""
    d = _dim("split", dim, x.ndim)
    n = x.shape[d]
    if isinstance(split_size, (int, np.integer)):
        if split_size <= 0:
            raise ValueError(f"split: split_size must be positive, got {split_size}")
        sizes = [min(int(split_size), n - s) for s in range(0, n, int(split_size))]
    else:
        sizes = [int(s) for s in split_size]
        if sum(sizes) != n:
            raise ValueError(f"split: sizes {sizes} do not add up to {n} (dim {d} of {x.shape})")
    starts = np.cumsum([0, *sizes[:-1]])
    return tuple(Narrow.apply(x, d, int(s), k) for s, k in zip(starts, sizes, strict=True))


def chunk(x: Tensor, chunks: int, dim: int = 0) -> tuple[Tensor, ...]:
    """At most `chunks` pieces of equal size ($\\lceil n / \\text{chunks} \\rceil$) along `dim`."""
    if chunks <= 0:
        raise ValueError(f"chunk: chunks must be positive, got {chunks}")
    n = x.shape[_dim("chunk", dim, x.ndim)]
    return split(x, max(-(-n // chunks), 1), dim)


def tril(x: Tensor, diagonal: int = 0) -> Tensor:
    """Lower triangle of the last two axes (elements with column - row <= `diagonal`)."""
    _matrix("tril", x)
    return Triangle.apply(x, diagonal, True)


def triu(x: Tensor, diagonal: int = 0) -> Tensor:
    """Upper triangle of the last two axes (elements with column - row >= `diagonal`)."""
    _matrix("triu", x)
    return Triangle.apply(x, diagonal, False)


def _matrix(op: str, x: Tensor) -> None:
    if x.ndim < 2:
        raise ValueError(f"{op}: needs at least 2 dims, got shape {x.shape}")


