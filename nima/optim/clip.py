r"""`clip_grad_norm_`: rescale all gradients together so their global norm is at most `max_norm`.

$$\|g\| = \sqrt{\textstyle\sum_p \sum_i g_{p,i}^2}, \qquad
g \leftarrow g \cdot \min\Bigl(1, \frac{c}{\|g\| + 10^{-6}}\Bigr)$$

One norm over *every* gradient (not one per tensor), so the direction of the step is kept and
only its length is capped — as `torch.nn.utils.clip_grad_norm_`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from nima import kernels
from nima._tensor import Tensor


# --8<-- [start:clip]
def clip_grad_norm_(params: Iterable[Tensor] | Tensor, max_norm: float) -> float:
    """Scale the gradients in place so their global 2-norm is at most `max_norm`; return the
    norm measured *before* clipping (worth logging: spikes show instability). Parameters
    without a gradient are ignored; the norm is summed in float64."""
    params = [params] if isinstance(params, Tensor) else list(params)
    grads = [p.grad for p in params if p.grad is not None]
    # $\|g\|^2 = \sum_p \sum_i g_{p,i}^2$, on the calling thread (no BLAS: see kernels.sumsq)
    total = math.sqrt(sum(kernels.sum_of_squares(g) for g in grads))
    coef = max_norm / (total + 1e-6)
    if coef < 1.0:
        for g in grads:
            g *= g.dtype.type(coef)
    return total
# --8<-- [end:clip]
