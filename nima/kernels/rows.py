r"""Row helpers shared by the softmax, log-softmax and cross-entropy kernels.

Every one of those ops works on the last axis, one row at a time, and starts the same way: the
row maximum $m = \max_j x_j$, then the shifted sum $s = \sum_j e^{x_j - m}$ and the log-sum-exp

$$\operatorname{lse}(x) = m + \log \sum_j e^{x_j - m},$$

which never overflows because every exponent is $\le 0$. A row whose entries are all $-\infty$
(fully masked) has $m = -\infty$ and $x_j - m$ undefined; the helpers report
$\operatorname{lse} = -\infty$ for it and each op states what it then returns. A NaN anywhere
in a row makes its lse NaN, and every op's output for that row NaN, as in NumPy.

The numba helpers are scalar functions of one row, called from inside the ops' `prange` loops;
the NumPy helpers work on whole arrays along the last axis.
"""

import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic, overload

from nima.kernels.fastexp import fast_exp

# Fast-math flags for the row kernels: reassociation lets LLVM vectorise sums, contraction fuses
# multiply-adds. Not nnan/ninf: masked rows hold -inf, and LLVM may assume those flags away.
ROW_FASTMATH = {"reassoc", "contract"}


# --8<-- [start:as_rows]
def as_rows(x: np.ndarray) -> np.ndarray:
    """View (or copy) `x` as a C-contiguous 2-D array of rows over its last axis.

    The kernels are compiled for this one layout, which keeps their inner loops unit-stride and
    their specialisations few. `x.shape[:-1]` is flattened; a 1-D `x` is one row.
    """
    return np.ascontiguousarray(x).reshape(math.prod(x.shape[:-1]), x.shape[-1])
# --8<-- [end:as_rows]


# --8<-- [start:max_ignoring_nan]
def max_ignoring_nan(a: float, b: float) -> float:
    """The larger of `a` and `b`; if one is NaN, the other (NumPy's `fmax`; pure-Python path)."""
    return np.fmax(a, b)


@intrinsic
def _llvm_maxnum(typingctx, a, b):
    """`max_ignoring_nan` as one call of LLVM's `llvm.maxnum`, for compiled code.

    Why an intrinsic: a running maximum written in Python (`m = v if v > m else m`, or `max`)
    becomes a compare and a `select`, and numba puts no fast-math flags on a `select`, so LLVM
    refuses to vectorise it (it cannot reorder a NaN-sensitive chain). `llvm.maxnum` has
    NaN-ignoring semantics that make the order irrelevant, and LLVM vectorises a loop of them
    into packed `vmaxps` (measured: the max pass over rows in cache got about 3x faster).
    """
    if not (isinstance(a, types.Float) and a == b):
        return None

    def codegen(context, builder, signature, args):
        fp = context.get_value_type(signature.args[0])
        signature_ir = ir.FunctionType(fp, [fp, fp])
        maxnum = builder.module.declare_intrinsic("llvm.maxnum", [fp], signature_ir)
        return builder.call(maxnum, args)

    return a(a, b), codegen


@overload(max_ignoring_nan)
def _max_ignoring_nan_jit(a, b):
    return lambda a, b: _llvm_maxnum(a, b)
# --8<-- [end:max_ignoring_nan]


# --8<-- [start:row_helpers_numba]
# --8<-- [start:row_max]
@njit(cache=True)
def row_max(r: np.ndarray) -> float:
    r"""The shift for a row's exponentials: $\max_j r_j$ over its non-NaN entries.

    $-\infty$ for an empty or fully masked row. A row whose entries are all NaN or $-\infty$
    gives NaN, so it is not mistaken for a fully masked one; a NaN beside a larger entry needs no
    such care, as $e^{\text{NaN} - m}$ is NaN and makes the whole row NaN.

    A running maximum through `max_ignoring_nan`, which LLVM vectorises (see there); the NaN
    search runs only when that maximum is $-\infty$.
    """
    m = r.dtype.type(-np.inf)
    for j in range(r.shape[0]):
        m = max_ignoring_nan(m, r[j])
    if m == -np.inf:
        for j in range(r.shape[0]):
            if np.isnan(r[j]):
                return r[j]
    return m
# --8<-- [end:row_max]


@njit(cache=True, fastmath=ROW_FASTMATH)
def row_sum_exp(r: np.ndarray, shift: float) -> float:
    r"""$\sum_j e^{r_j - \text{shift}}$, accumulated in the row's dtype (vectorised)."""
    s = r.dtype.type(0)
    for j in range(r.shape[0]):
        s += fast_exp(r[j] - shift)
    return s


@njit(cache=True)
def row_logsumexp(r: np.ndarray) -> float:
    r"""$\operatorname{lse}(r)$; $-\infty$ for a fully masked row, NaN for a row holding NaN."""
    m = row_max(r)
    if m == -np.inf:
        return m
    return m + np.log(row_sum_exp(r, m))
# --8<-- [end:row_helpers_numba]


# --8<-- [start:row_helpers_numpy]
def row_shift_numpy(x: np.ndarray) -> np.ndarray:
    r"""Row maxima (keepdims) to subtract before `exp`; 0 for fully masked rows.

    With the shift 0, a masked row gives $e^{-\infty} = 0$ everywhere instead of
    $e^{-\infty - (-\infty)} = \text{NaN}$.
    """
    m = x.max(axis=-1, keepdims=True, initial=-np.inf)  # -inf for an empty row too
    return np.where(np.isneginf(m), np.zeros_like(m), m)


def logsumexp_numpy(x: np.ndarray) -> np.ndarray:
    r"""$\operatorname{lse}$ over the last axis (keepdims); $-\infty$ for fully masked rows."""
    m = row_shift_numpy(x)
    with np.errstate(divide="ignore"):  # log(0) = -inf is the intended answer
        return m + np.log(np.exp(x - m).sum(axis=-1, keepdims=True))
# --8<-- [end:row_helpers_numpy]
