r"""Indexing: `x[index]` with NumPy's rules, and the gradient scattered back to where it came from.

Three kinds of index, freely mixed in one tuple as NumPy allows:

* **basic** — ints, slices (with steps), `None` (new axis) and `...`: the result is a view, and
  every element of `x` appears in it at most once;
* **integer arrays** — lists, NumPy arrays or integer tensors: elements are gathered, possibly
  *more than once* (`x[[0, 0, 2]]` reads row 0 twice);
* **boolean masks** — bool arrays or tensors: the elements where the mask is true.

The backward is a scatter, $\bar x = \operatorname{scatter}(\bar y)$: each element of $\bar y$
is added to the position of $x$ it was read from. An element read $k$ times gets the sum of its
$k$ gradients — `np.add.at` does exactly that, where plain `out[index] = grad` would keep only
the last write. Pure basic indexing cannot repeat an element, so it uses the faster assignment.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nima._tensor import Tensor
from nima.autograd import Context, Function

Index = tuple[Any, ...]


# --8<-- [start:getitem]
class GetItem(Function):
    r"""$y = x[\text{index}]$; $\bar x = \operatorname{scatter\_add}(0, \text{index}, \bar y)$.

    Example: `x[[0, 0, 2]]` of a 3-row `x` with $\bar y = 1$ gives $\bar x$ rows `[2, 0, 1]`.
    """

    @staticmethod
    def forward(ctx: Context, x: np.ndarray, index: Index, basic: bool) -> np.ndarray:
        ctx.shape, ctx.index, ctx.basic = x.shape, index, basic
        try:
            return x[index]
        except IndexError as e:
            raise IndexError(
                f"getitem: cannot index a tensor of shape {x.shape} with {_describe(index)}: {e}"
            ) from None

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray) -> tuple[np.ndarray, None, None]:
        out = np.zeros(ctx.shape, dtype=grad.dtype)
        if ctx.basic:
            out[ctx.index] = grad  # a view's elements are distinct: no accumulation needed
        else:
            np.add.at(out, ctx.index, grad)  # repeated indices add up
        return out, None, None
# --8<-- [end:getitem]


def _component(part: Any) -> Any:
    """One entry of an index tuple as NumPy should see it; tensors and lists become arrays."""
    if part is None or part is Ellipsis or isinstance(part, slice):
        return part
    if isinstance(part, (bool, np.bool_)):
        return bool(part)
    if isinstance(part, (int, np.integer)):
        return int(part)
    array = part.data if isinstance(part, Tensor) else np.asarray(part)
    if array.size == 0 and isinstance(part, (list, tuple)):
        array = array.astype(np.intp)  # `x[[]]` selects nothing (NumPy reads `[]` as float)
    if array.dtype.kind not in "biu":
        raise TypeError(
            f"getitem: indices must be integers, slices, None, ..., or integer/bool arrays; "
            f"got {type(part).__name__} of dtype {array.dtype}"
        )
    return array


def _is_basic(part: Any) -> bool:
    """Ints, slices, None and `...` select each element at most once (bools and arrays may not)."""
    if isinstance(part, bool):
        return False
    return part is None or part is Ellipsis or isinstance(part, (slice, int))


def _describe(index: Index) -> str:
    """A short rendering of an index for error messages (big arrays by shape only)."""
    parts = []
    for p in index:
        if isinstance(p, np.ndarray):
            parts.append(str(p.tolist()) if p.size <= 8 else f"<{p.dtype} array {p.shape}>")
        elif isinstance(p, slice):
            parts.append(":".join("" if v is None else str(v) for v in (p.start, p.stop, p.step))
                         .removesuffix(":"))
        else:
            parts.append("..." if p is Ellipsis else str(p))
    return "[" + ", ".join(parts) + "]"


def getitem(x: Tensor, index: Any) -> Tensor:
    """`x[index]` with NumPy semantics (basic, integer-array and boolean-mask indexing).

    Basic indexing returns a view sharing memory with `x`, as in PyTorch. Float indices raise
    `TypeError`; out-of-range indices raise `IndexError` naming the index and `x`'s shape.
    """
    parts = index if isinstance(index, tuple) else (index,)
    parts = tuple(_component(p) for p in parts)
    return GetItem.apply(x, parts, all(_is_basic(p) for p in parts))
