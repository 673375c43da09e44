r"""`Linear`: $y = x W^\top + b$, with `weight` stored (out_features, in_features) as in PyTorch."""

from __future__ import annotations

import math

import numpy as np

from nima._tensor import Tensor
from nima.nn import init
from nima.nn.module import Module
from nima.nn.parameter import Parameter
from nima.ops.linalg import linear


# --8<-- [start:linear]
class Linear(Module):
    r"""$y = x W^\top + b$ over the last axis: `(..., in_features) -> (..., out_features)`.

    Initialised as PyTorch does:
    $W, b \sim \mathcal U(-1/\sqrt{n_\text{in}}, 1/\sqrt{n_\text{in}})$.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 dtype: np.dtype | type = np.float32) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = Parameter(np.empty((out_features, in_features), dtype=dtype))
        bound = 1 / math.sqrt(in_features) if in_features else 0.0
        init.uniform_(self.weight, -bound, bound)
        self.bias = Parameter(np.empty(out_features, dtype=dtype)) if bias else None
        if self.bias is not None:
            init.uniform_(self.bias, -bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1:] != (self.in_features,):
            raise ValueError(f"Linear: expected input (..., {self.in_features}), got {x.shape}")
        return linear(x, self.weight, self.bias)  # (..., out_features): $x W^\top + b$
# --8<-- [end:linear]

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}")
