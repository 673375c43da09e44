"""Hypothesis strategies shared by the tests: shapes (0–4 dims, size-1 dims for broadcasting),
float64 arrays that may be non-contiguous (transposed or strided views), and values kept away
from an op's kinks and domain edges."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import nima


def shapes(min_dims: int = 0, max_dims: int = 4, min_side: int = 1,
           max_side: int = 4) -> st.SearchStrategy[tuple[int, ...]]:
    return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=min_side,
                            max_side=max_side)


def broadcastable_shapes(num_shapes: int = 2, min_dims: int = 0, max_dims: int = 4,
                         max_side: int = 4) -> st.SearchStrategy[tuple[tuple[int, ...], ...]]:
    """`num_shapes` shapes that broadcast together (some with size-1 or missing dims)."""
    return hnp.mutually_broadcastable_shapes(
        num_shapes=num_shapes, min_dims=min_dims, max_dims=max_dims, max_side=max_side
    ).map(lambda r: r.input_shapes)


def values(low: float = -3.0, high: float = 3.0, avoid: Sequence[float] = (),
           margin: float = 0.1) -> st.SearchStrategy[float]:
    """Floats in [low, high] at least `margin` away from every point in `avoid` (the kinks)."""
    return st.floats(low, high, allow_nan=False, allow_infinity=False).filter(
        lambda v: all(abs(v - p) >= margin for p in avoid)
    )


@st.composite
def arrays(draw: st.DrawFn, shape: tuple[int, ...],
           elements: st.SearchStrategy[float] | None = None,
           dtype: type = np.float64) -> np.ndarray:
    """An array of `shape`, laid out contiguously, as a transposed view, or as a strided view."""
    elements = values() if elements is None else elements
    layouts = ["contiguous", "transposed", "strided"] if shape else ["contiguous"]
    layout = draw(st.sampled_from(layouts))
    if layout == "transposed":
        base = draw(hnp.arrays(dtype, shape[::-1], elements=elements))
        return base.T
    if layout == "strided":
        base = draw(hnp.arrays(dtype, (*shape[:-1], 2 * shape[-1]), elements=elements))
        return base[..., ::2]
    return draw(hnp.arrays(dtype, shape, elements=elements))


@st.composite
def tensors(draw: st.DrawFn, shape: tuple[int, ...] | st.SearchStrategy | None = None,
            elements: st.SearchStrategy[float] | None = None,
            requires_grad: bool = True) -> nima.Tensor:
    """A float64 leaf tensor (possibly non-contiguous) for gradient checks."""
    if shape is None:
        shape = shapes()
    if isinstance(shape, st.SearchStrategy):
        shape = draw(shape)
    return nima.Tensor(draw(arrays(shape, elements)), requires_grad=requires_grad)
