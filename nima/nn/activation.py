"""Activation functions as modules, for `Sequential` and readable model reprs."""

from __future__ import annotations

from nima import functional as F
from nima._tensor import Tensor
from nima.nn.module import Module


class ReLU(Module):
    r"""$\max(x, 0)$."""

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(x)


class GELU(Module):
    r"""$x\,\Phi(x)$; `approximate="tanh"` for GPT-2's tanh form."""

    def __init__(self, approximate: str = "none") -> None:
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f"GELU: approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def forward(self, x: Tensor) -> Tensor:
        return F.gelu(x, self.approximate)

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"


class SiLU(Module):
    r"""$x\,\sigma(x)$ (swish)."""

    def forward(self, x: Tensor) -> Tensor:
        return F.silu(x)


class Tanh(Module):
    r"""$\tanh x$."""

    def forward(self, x: Tensor) -> Tensor:
        return F.tanh(x)


class Sigmoid(Module):
    r"""$\sigma(x) = 1/(1 + e^{-x})$."""

    def forward(self, x: Tensor) -> Tensor:
        return F.sigmoid(x)
