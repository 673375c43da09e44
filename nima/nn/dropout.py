"""`Dropout`: zero a random fraction `p` of activations while training, scale the rest by
$1/(1-p)$ so expectations match evaluation, where it does nothing."""

from __future__ import annotations

from nima import functional as F
from nima._tensor import Tensor
from nima.nn.module import Module


# --8<-- [start:dropout]
class Dropout(Module):
    """Inverted dropout, seeded by `nima.manual_seed`; the identity in `eval()` mode."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"Dropout: p must be in [0, 1], got {p}")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        return F.dropout(x, self.p, self.training)
# --8<-- [end:dropout]

    def extra_repr(self) -> str:
        return f"p={self.p}"
