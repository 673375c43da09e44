"""Making tensors: `tensor`, `zeros`, `ones`, `full`, `arange`, `randn`, `rand` and `*_like`.

Floating-point data defaults to float32 (as in PyTorch); pass `dtype=nima.float64` (or
`np.float64`) for float64 end to end. A NumPy array keeps its own dtype.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nima import random
from nima._tensor import Tensor, numeric

DEFAULT_DTYPE = np.dtype(np.float32)
Shape = tuple[int, ...]


def _shape(op: str, size: tuple[Any, ...]) -> Shape:
    """`size` (ints, or one tuple or list of them) as a shape; anything else is refused, as a
    float would otherwise be truncated (`zeros(2.9)` is not 2 elements)."""
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        size = tuple(size[0])
    for n in size:
        if isinstance(n, bool) or not isinstance(n, int | np.integer):
            raise TypeError(f"{op}: sizes must be integers, got {n!r} ({type(n).__name__}) in "
                            f"size {size}")
        if n < 0:
            raise ValueError(f"{op}: sizes must be >= 0, got {n} in size {size}")
    return tuple(int(n) for n in size)


def tensor(data: Any, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    """A new tensor holding a copy of `data` (nested lists, numbers, arrays or a tensor).

    Raises:
        TypeError: `data` does not hold numbers (strings, None, objects) or does not convert
            to `dtype`.
        ValueError: nested lists of unequal lengths.
    """
    if isinstance(data, Tensor):
        data = data.data
    try:
        if dtype is None and not isinstance(data, np.ndarray):
            array = np.array(data)
            if array.dtype.kind == "f":
                array = array.astype(DEFAULT_DTYPE)
        else:
            array = np.array(data, dtype=dtype)
    except (TypeError, ValueError) as e:  # ragged lists, or a string for a float dtype
        kind = "an array" if dtype is None else f"a {np.dtype(dtype)} array"
        raise type(e)(f"tensor: cannot make {kind} of {type(data).__name__} data: {e}") from None
    return Tensor(numeric(array, data), requires_grad=requires_grad)


def _filled(shape: Shape, value: float, dtype: Any, requires_grad: bool) -> Tensor:
    return Tensor(np.full(shape, value, dtype=dtype or DEFAULT_DTYPE), requires_grad)


def zeros(*size: Any, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    return _filled(_shape("zeros", size), 0, dtype, requires_grad)


def ones(*size: Any, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    return _filled(_shape("ones", size), 1, dtype, requires_grad)


def full(size: Any, fill_value: float, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    return _filled(_shape("full", (size,)), fill_value, dtype, requires_grad)


def arange(start: float, end: float | None = None, step: float = 1, dtype: Any = None,
           requires_grad: bool = False) -> Tensor:
    """`[start, end)` in steps of `step`; integers give int64, as in PyTorch."""
    if end is None:
        start, end = 0, start
    values = np.arange(start, end, step)
    if dtype is None and values.dtype.kind == "f":
        dtype = DEFAULT_DTYPE
    return Tensor(values.astype(dtype) if dtype is not None else values, requires_grad)


def randn(*size: Any, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    """Standard normal samples from Nima's generator (see `manual_seed`)."""
    values = random.generator().standard_normal(_shape("randn", size))
    return Tensor(values.astype(dtype or DEFAULT_DTYPE), requires_grad)


def rand(*size: Any, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    """Uniform samples in $[0, 1)$ from Nima's generator."""
    values = random.generator().random(_shape("rand", size))
    return Tensor(values.astype(dtype or DEFAULT_DTYPE), requires_grad)


def _like(fn: Any, x: Tensor, dtype: Any, requires_grad: bool, *args: Any) -> Tensor:
    return fn(x.shape, *args, dtype=dtype or x.dtype, requires_grad=requires_grad)


def zeros_like(x: Tensor, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    return _like(zeros, x, dtype, requires_grad)


def ones_like(x: Tensor, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    return _like(ones, x, dtype, requires_grad)


def full_like(x: Tensor, fill_value: float, dtype: Any = None,
              requires_grad: bool = False) -> Tensor:
    return _like(full, x, dtype, requires_grad, fill_value)


def randn_like(x: Tensor, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    return _like(randn, x, dtype, requires_grad)


def rand_like(x: Tensor, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    return _like(rand, x, dtype, requires_grad)
