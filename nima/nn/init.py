r"""Initialisation schemes, each filling a tensor in place from Nima's generator.

Why they differ: a layer $y = Wx$ with $n_\text{in}$ inputs of unit variance gives outputs of
variance $n_\text{in}\operatorname{Var}(W)$. Keeping activations (and gradients) at a steady
scale through depth asks for $\operatorname{Var}(W) \approx 1/n_\text{in}$ —

* **Xavier/Glorot** balances forward and backward:
  $\operatorname{Var}(W) = 2/(n_\text{in} + n_\text{out})$;
* **Kaiming/He** corrects for ReLU zeroing half the inputs: $\operatorname{Var}(W) = 2/n_\text{in}$;
* **GPT-2** uses $\mathcal N(0, 0.02^2)$, and scales the projections that write into the
  residual stream by $1/\sqrt{2 n_\text{layer}}$, since $2n_\text{layer}$ of them add up there.
"""

from __future__ import annotations

import math

from nima import random
from nima._tensor import Tensor


# --8<-- [start:fans]
def _fans(t: Tensor) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight stored as (out_features, in_features, ...), as PyTorch."""
    if t.ndim < 2:
        raise ValueError(f"init: fan in/out need at least 2 dims, got shape {t.shape}")
    receptive = math.prod(t.shape[2:])
    return t.shape[1] * receptive, t.shape[0] * receptive
# --8<-- [end:fans]


def uniform_(t: Tensor, a: float = 0.0, b: float = 1.0) -> Tensor:
    """Fill with $\\mathcal U(a, b)$."""
    t.data[...] = random.generator().uniform(a, b, t.shape)
    return t


def normal_(t: Tensor, mean: float = 0.0, std: float = 1.0) -> Tensor:
    """Fill with $\\mathcal N(\\text{mean}, \\text{std}^2)$."""
    t.data[...] = random.generator().normal(mean, std, t.shape)
    return t


def zeros_(t: Tensor) -> Tensor:
    t.data[...] = 0
    return t


def ones_(t: Tensor) -> Tensor:
    t.data[...] = 1
    return t


# --8<-- [start:xavier]
def xavier_uniform_(t: Tensor, gain: float = 1.0) -> Tensor:
    r"""$\mathcal U(-a, a)$ with $a = \text{gain}\sqrt{6 / (n_\text{in} + n_\text{out})}$."""
    fan_in, fan_out = _fans(t)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(t, -bound, bound)


def xavier_normal_(t: Tensor, gain: float = 1.0) -> Tensor:
    r"""$\mathcal N(0, \sigma^2)$, $\sigma = \text{gain}\sqrt{2 / (n_\text{in} + n_\text{out})}$."""
    fan_in, fan_out = _fans(t)
    return normal_(t, 0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)))
# --8<-- [end:xavier]


# --8<-- [start:kaiming]
def kaiming_uniform_(t: Tensor, a: float = 0.0) -> Tensor:
    r"""$\mathcal U(-b, b)$, $b = \sqrt{6 / ((1 + a^2)\,n_\text{in})}$ ($a$: leaky-ReLU slope).

    PyTorch's default for `Linear` is $a = \sqrt 5$, i.e. $b = 1/\sqrt{n_\text{in}}$."""
    fan_in, _ = _fans(t)
    bound = math.sqrt(6.0 / ((1 + a * a) * fan_in))
    return uniform_(t, -bound, bound)


def kaiming_normal_(t: Tensor, a: float = 0.0) -> Tensor:
    r"""$\mathcal N(0, \sigma^2)$, $\sigma = \sqrt{2 / ((1 + a^2)\,n_\text{in})}$."""
    fan_in, _ = _fans(t)
    return normal_(t, 0.0, math.sqrt(2.0 / ((1 + a * a) * fan_in)))
# --8<-- [end:kaiming]


# --8<-- [start:scaled_residual]
def scaled_residual_normal_(t: Tensor, n_layer: int, std: float = 0.02) -> Tensor:
    r"""GPT-2's residual-projection init, $\mathcal N(0, (\text{std}/\sqrt{2n_\text{layer}})^2)$."""
    return normal_(t, 0.0, std / math.sqrt(2 * n_layer))
# --8<-- [end:scaled_residual]
