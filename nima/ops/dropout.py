r"""Inverted dropout: zero each element with probability $p$, scale the survivors by $1/(1-p)$.

With a mask $m_i \sim \text{Bernoulli}(1 - p)$, $y = x \odot m / (1-p)$, so
$\mathbb{E}[y] = x$ and the network needs no rescaling at evaluation time, when dropout is the
identity. The mask comes from Nima's generator (`nima.random.generator()`), so
`nima.manual_seed(s)` makes it reproducible.
"""

from __future__ import annotations

import numpy as np

from nima._tensor import FLOAT_DTYPES, Tensor
from nima.autograd import Context, Function
from nima.random import generator


# --8<-- [start:dropout]
class Dropout(Function):
    r"""$y = x \odot s$ with the scaled mask $s_i = m_i / (1 - p)$; $\bar x = \bar y \odot s$.

    $s$ is drawn in the forward and saved, so the backward drops exactly the same elements.
    """

    @staticmethod
    def forward(ctx: Context, x: np.ndarray, p: float) -> np.ndarray:
        keep = generator().random(x.shape, dtype=np.float32) >= np.float32(p)  # P = 1 - p
        scale = 0.0 if p == 1 else 1.0 / (1.0 - p)
        mask = np.where(keep, x.dtype.type(scale), x.dtype.type(0))  # (...) like x
        ctx.save_for_backward(mask)
        return x * mask

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray) -> tuple[np.ndarray, None]:
        (mask,) = ctx.saved_tensors
        return grad * mask, None
# --8<-- [end:dropout]


def dropout(x: Tensor, p: float = 0.5, training: bool = True) -> Tensor:
    r"""Inverted dropout: each element is zeroed with probability `p`, the rest scaled by
    $1/(1-p)$.

    `training=False` or `p=0` returns `x` itself (no copy, no graph node); `p=1` gives zeros.
    The mask is drawn from `nima.random.generator()`: seed it with `nima.manual_seed`.

    Example: with `p=0.5`, `dropout(ones(4))` is some mix of 0s and 2s, e.g. `[2, 0, 0, 2]`.
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"dropout: expected a Tensor, got {type(x).__name__}")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout: p must be in [0, 1], got p={p} (x of shape {x.shape})")
    if x.dtype not in FLOAT_DTYPES:
        raise TypeError(f"dropout: needs a floating-point tensor, got {x.dtype} "
                        f"(shape {x.shape})")
    if not training or p == 0:
        return x
    return Dropout.apply(x, float(p))
