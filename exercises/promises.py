r"""Exercises of the What Nima promises page (docs/promises.md)."""

import numpy as np

import nima
import nima.functional as F
from exercises import close, equal


def softmax_row(x: np.ndarray) -> np.ndarray:
    r"""A softmax that keeps Nima's promises.

    Return the softmax of the 1-D float64 row `x` with Nima's rules for special values: a row
    that is entirely $-\infty$ (fully masked) gives zeros; a row holding a NaN, or a
    $+\infty$, gives all NaN; $-\infty$ among finite values gets probability 0; otherwise the
    usual, shifted by the maximum.
    """
    raise NotImplementedError


def check_softmax_row(softmax_row) -> None:
    """Compares with `F.softmax` on ordinary rows and on rows of NaN, ±∞ and fully masked
    ones (NaN must be NaN where Nima gives NaN)."""
    inf, nan = np.inf, np.nan
    rows = [[1.0, 2.0, 3.0], [-inf, -inf, -inf], [0.0, -inf, 1.0], [1.0, nan, 2.0],
            [nan, -inf, -inf], [inf, 0.0, 1.0], [1000.0, -1000.0, 999.0], [-inf, 5.0, -inf]]
    for row in rows:
        x = np.array(row)
        with np.errstate(all="ignore"):
            close(softmax_row(x.copy()), F.softmax(nima.tensor(x), dim=-1).data,
                  f"the softmax of {row}")


def checked_size(op: str, size: object) -> int:
    r"""A size checked at the door.

    Return `size` as an int if it is an integer $\ge 0$ (a Python `int` or a NumPy integer —
    but not a `bool`); otherwise raise a one-line error naming `op` and the value: `TypeError`
    for anything that is not an integer (`2.9` must not be truncated to 2), `ValueError` for a
    negative one.
    """
    raise NotImplementedError


def check_checked_size(checked_size) -> None:
    """Feeds good and bad sizes and compares the outcome with `nima.zeros`: the same value, or
    the same kind of error, with the bad value in your message."""
    for size in [0, 3, np.int64(2), 2.9, -1, True, "3", None, 2.0]:
        try:
            expected = ("ok", len(nima.zeros(size)))
        except (TypeError, ValueError) as error:
            expected = (type(error).__name__, None)
        try:
            got = ("ok", int(checked_size("zeros", size)))
        except (TypeError, ValueError) as error:
            got = (type(error).__name__, None)
            if repr(size) not in str(error) and str(size) not in str(error):
                raise AssertionError(f"the message for {size!r} does not name the value: "
                                     f"{error}") from None
        equal(got, expected, f"the outcome for {size!r}")
