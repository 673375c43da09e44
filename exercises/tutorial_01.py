r"""Exercises of tutorial 01, tensors and broadcasting."""

import numpy as np

from exercises import equal


def broadcast_shape(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    r"""NumPy's broadcasting rule.

    Return the shape two arrays of shapes `a` and `b` broadcast to, or raise `ValueError` if
    they do not: align the shapes at their *last* axis; a missing axis counts as 1; two sizes
    match if they are equal or one of them is 1, and the result takes the larger.
    """
    raise NotImplementedError


def check_broadcast_shape(broadcast_shape) -> None:
    """Compares with `np.broadcast_shapes` on pairs that broadcast and pairs that do not."""
    pairs = [((3, 1), (2, 3, 4)), ((4,), (5, 4)), ((), (2, 2)), ((1, 5, 1), (2, 1, 5, 3)),
             ((3,), (4,)), ((2, 1), (8, 4, 3)), ((5, 4), (4, 5)), ((0,), (1,))]
    for a, b in pairs:
        try:
            expected = np.broadcast_shapes(a, b)
        except ValueError:
            expected = "ValueError"
        try:
            got = tuple(broadcast_shape(a, b))
        except ValueError:
            got = "ValueError"
        equal(got, expected, f"the broadcast of {a} and {b}")


def strides(shape: tuple[int, ...], itemsize: int) -> tuple[int, ...]:
    r"""Where elements live.

    Return the strides (bytes to step along each axis) of a C-contiguous array of `shape`
    with elements of `itemsize` bytes: the last axis steps one element, each axis before it
    steps over a whole slice of the axes after it.
    """
    raise NotImplementedError


def check_strides(strides) -> None:
    """Compares with the strides of `np.zeros(shape, dtype)` for several shapes and dtypes."""
    for shape, dtype in [((3, 4), np.float32), ((2, 3, 5), np.float64), ((7,), np.int16),
                         ((2, 1, 4), np.float32), ((), np.float64)]:
        equal(tuple(strides(shape, np.dtype(dtype).itemsize)), np.zeros(shape, dtype).strides,
              f"the strides of {shape} {np.dtype(dtype)}")
