"""`Embedding`: a lookup table of learned vectors, one row per token id."""

from __future__ import annotations

from typing import Any

import numpy as np

from nima import functional as F
from nima._tensor import Tensor
from nima.nn import init
from nima.nn.module import Module
from nima.nn.parameter import Parameter


# --8<-- [start:embedding]
class Embedding(Module):
    r"""`ids (...) -> vectors (..., embedding_dim)`: row $i$ of `weight` for id $i$.

    Its gradient is a scatter-add: each id's row receives the sum of the gradients of every
    position that looked it up. Initialised $\mathcal N(0, 1)$ as PyTorch does.
    """

    def __init__(self, num_embeddings: int, embedding_dim: int,
                 dtype: np.dtype | type = np.float32) -> None:
        super().__init__()
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        # a table of vectors, not a map between them: no weight decay
        self.weight = Parameter(np.empty((num_embeddings, embedding_dim), dtype=dtype),
                                decay=False)
        init.normal_(self.weight)

    def forward(self, ids: Any) -> Tensor:
        return F.embedding(ids, self.weight)
# --8<-- [end:embedding]

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}"
