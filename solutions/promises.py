"""Solutions of exercises/promises.py."""

import numbers

import numpy as np


def softmax_row(x):
    if np.all(x == -np.inf):
        return np.zeros_like(x)  # fully masked: no distribution, zeros by choice
    if np.isnan(x).any() or (x == np.inf).any():
        return np.full_like(x, np.nan)  # NaN goes in, NaN comes out
    e = np.exp(x - x.max())
    return e / e.sum()


def _softmax_row_textbook(x):
    """The textbook line: a fully masked row gives 0/0 = NaN."""
    with np.errstate(all="ignore"):
        e = np.exp(x - np.max(x))
        return e / e.sum()


def _softmax_row_nan_ignored(x):
    """Treats NaN like a masked entry: hides a divergence."""
    return softmax_row(np.where(np.isnan(x), -np.inf, x))


def checked_size(op, size):
    if isinstance(size, bool) or not isinstance(size, numbers.Integral):
        raise TypeError(f"{op}: sizes must be integers, got {size!r} ({type(size).__name__})")
    if size < 0:
        raise ValueError(f"{op}: sizes must be >= 0, got {size}")
    return int(size)


def _checked_size_truncating(op, size):
    """Converts with int(), so 2.9 becomes 2 and True becomes 1."""
    size = int(size)
    if size < 0:
        raise ValueError(f"{op}: sizes must be >= 0, got {size}")
    return size


WRONG = {
    "softmax_row": [_softmax_row_textbook, _softmax_row_nan_ignored],
    "checked_size": [_checked_size_truncating],
}
