r"""InfoNCE, the contrastive loss: pick your own key out of a crowd of others.

For queries $q_i$ and keys $k_i$ that belong together (here: a token's query and its own key),
and negatives $n_m$ that do not (the other tokens' keys, and a bank of keys kept from the past),

$$\mathcal L = \frac1N \sum_i -\log \frac{e^{\langle \hat q_i, \hat k_i\rangle / \tau}}
{\sum_j e^{\langle \hat q_i, \hat k_j\rangle / \tau} + \sum_m e^{\langle \hat q_i, \hat n_m
\rangle / \tau}}, \qquad \hat x = x / \lVert x \rVert,$$

a cross-entropy whose right class is the query's own key: it pulls $\hat q_i$ towards
$\hat k_i$ and pushes it from every other key. Oord et al. (2018) named it (Contrastive
Predictive Coding); MoCo (He et al., 2020) drew the negatives from a FIFO queue of past keys —
exactly what `nima.nn.memory_bank.MemoryBank` holds. The vectors are normalised, so the loss
cannot be lowered by growing their norms; the temperature $\tau$ sets how sharp the choice is.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nima._tensor import Tensor
from nima.ops.reduce import logsumexp
from nima.ops.shape import cat


def _unit(x: Tensor) -> Tensor:
    """`x / ||x||` over the last axis (a zero vector stays zero)."""
    return x / ((x * x).sum(-1, keepdim=True) + 1e-12).sqrt()


# --8<-- [start:info_nce]
def info_nce(queries: Tensor, keys: Tensor, negatives: Any = None,
             temperature: float = 0.1) -> Tensor:
    r"""The InfoNCE loss (a scalar) of `queries` and `keys` `(..., N, d)` — row $i$ of each
    is a positive pair, the other rows are negatives — and extra `negatives` `(..., M, d)`
    (an array or Tensor; None or $M = 0$ for none), leading dims broadcasting."""
    if temperature <= 0:
        raise ValueError(f"info_nce: temperature must be > 0, got {temperature}")
    if queries.shape != keys.shape or queries.ndim < 2:
        raise ValueError(f"info_nce: expected queries and keys of one shape (..., N, d), got "
                         f"{queries.shape} and {keys.shape}")
    q, k = _unit(queries), _unit(keys)  # (..., N, d)
    # (..., N, N) scores $\langle\hat q_i, \hat k_j\rangle/\tau$, the positives on the diagonal
    logits = (q @ k.transpose(-2, -1)) * (1.0 / temperature)
    if negatives is not None and np.shape(negatives)[-2] > 0:
        neg = _unit(negatives if isinstance(negatives, Tensor) else Tensor(negatives))
        if neg.shape[-1] != q.shape[-1]:
            raise ValueError(f"info_nce: negatives {neg.shape} must end in d={q.shape[-1]}")
        logits = cat([logits, (q @ neg.transpose(-2, -1)) * (1.0 / temperature)], dim=-1)
    positive = (q * k).sum(-1) * (1.0 / temperature)  # (..., N): the diagonal
    return (logsumexp(logits, dim=-1) - positive).mean()  # $-\log$ softmax at the positive
# --8<-- [end:info_nce]
