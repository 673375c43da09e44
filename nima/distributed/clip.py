r"""The global gradient norm when the parameters are split across ranks.

In pipeline and tensor parallelism each rank holds a different part of the model, so no rank
sees the whole gradient. The squared norm is a sum over parameters, so it splits the same way:

$$\|g\|^2 = \sum_{r=0}^{N-1} \underbrace{\sum_{p \,\in\, P_r} \|g_p\|^2}_{\text{rank } r},$$

one allreduce of one number. The sets $P_r$ must cover the model exactly once: a parameter
that several ranks hold — a tied embedding on the first and last pipeline stage, a layer norm
replicated on every tensor-parallel rank — is counted on one of them only (`counted`).

(Data parallelism needs none of this: after `DataParallel.allreduce_gradients` every rank
holds the whole averaged gradient, and `nima.optim.clip_grad_norm_` measures it.)
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from nima._tensor import Tensor
from nima.distributed.comm import Communicator

__all__ = ["clip_grad_norm_", "global_grad_norm"]


# --8<-- [start:global_grad_norm]
def global_grad_norm(counted: Iterable[Tensor], comm: Communicator) -> float:
    r"""$\sqrt{\sum_r \sum_{p \in P_r} \|g_p\|^2}$, where `counted` is this rank's $P_r$;
    the same value on every rank. Summed in float64; parameters without a gradient add 0."""
    local = sum(float(np.dot(g, g)) for g in
                (p.grad.reshape(-1).astype(np.float64) for p in counted if p.grad is not None))
    return math.sqrt(comm.allreduce(np.array([local]))[0])
# --8<-- [end:global_grad_norm]


def clip_grad_norm_(params: Iterable[Tensor], max_norm: float, comm: Communicator,
                    counted: Iterable[Tensor] | None = None) -> float:
    r"""Scale this rank's gradients so the global norm is at most `max_norm`:
    $g \leftarrow g \cdot \min(1, c / (\|g\| + 10^{-6}))$, as `nima.optim.clip_grad_norm_`.

    Args:
        params: every parameter this rank updates (all are scaled).
        max_norm: $c$.
        comm: the ranks that share the model.
        counted: the ones whose squares this rank adds to the norm (default: all of `params`).

    Returns:
        The global norm before clipping, the same on every rank.
    """
    params = list(params)
    total = global_grad_norm(params if counted is None else counted, comm)
    coef = max_norm / (total + 1e-6)
    if coef < 1.0:
        for p in params:
            if p.grad is not None:
                p.grad *= p.grad.dtype.type(coef)
    return total
