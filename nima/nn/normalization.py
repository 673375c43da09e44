r"""`LayerNorm` and `RMSNorm` over the trailing `normalized_shape` dims.

LayerNorm: $y = \dfrac{x - \mu}{\sqrt{\sigma^2 + \epsilon}} \odot \gamma + \beta$;
RMSNorm drops the centring and the bias: $y = \dfrac{x}{\sqrt{\operatorname{mean}(x^2) + \epsilon}}
\odot \gamma$. Both run on the fused kernels in `nima.kernels.layernorm`.
"""

from __future__ import annotations

import numpy as np

from nima import functional as F
from nima._tensor import Tensor
from nima.kernels import check_eps
from nima.nn.module import Module
from nima.nn.parameter import Parameter


def _shape(normalized_shape: int | tuple[int, ...]) -> tuple[int, ...]:
    if isinstance(normalized_shape, int):
        return (normalized_shape,)
    return tuple(normalized_shape)


# --8<-- [start:layer_norm]
class LayerNorm(Module):
    """Layer normalisation with a learned scale $\\gamma$ (ones) and, if `bias`, shift
    $\\beta$ (zeros)."""

    def __init__(self, normalized_shape: int | tuple[int, ...], eps: float = 1e-5,
                 bias: bool = True, dtype: np.dtype | type = np.float32) -> None:
        super().__init__()
        self.normalized_shape = _shape(normalized_shape)
        self.eps = check_eps("LayerNorm", eps)
        self.weight = Parameter(np.ones(self.normalized_shape, dtype=dtype))
        self.bias = Parameter(np.zeros(self.normalized_shape, dtype=dtype)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
# --8<-- [end:layer_norm]

    def extra_repr(self) -> str:
        return f"{self.normalized_shape}, eps={self.eps}, bias={self.bias is not None}"


# --8<-- [start:rms_norm]
class RMSNorm(Module):
    """Root-mean-square normalisation with a learned scale $\\gamma$ (ones)."""

    def __init__(self, normalized_shape: int | tuple[int, ...], eps: float = 1e-6,
                 dtype: np.dtype | type = np.float32) -> None:
        super().__init__()
        self.normalized_shape = _shape(normalized_shape)
        self.eps = check_eps("RMSNorm", eps)
        self.weight = Parameter(np.ones(self.normalized_shape, dtype=dtype))

    def forward(self, x: Tensor) -> Tensor:
        return F.rms_norm(x, self.normalized_shape, self.weight, self.eps)
# --8<-- [end:rms_norm]

    def extra_repr(self) -> str:
        return f"{self.normalized_shape}, eps={self.eps}"
