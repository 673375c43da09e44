r"""Exercises of the Hybrid attention page (docs/hybrid_attention.md)."""

import numpy as np

import nima
from exercises import close, equal
from nima.nn import HybridAttention


def reweight_weights(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, n_head: int,
                     block_size: int) -> np.ndarray:
    r"""Reweight attention's weights.

    `x` is `(B, T, d)`; `weight` `(n_head * block_size, d)` and `bias` `(n_head * block_size,)`
    are the layer `reweight`. Every token writes, for each head, a row of `block_size` logits
    over absolute key positions: $R = xW^\top + b$, viewed as `(B, T, n_head, block_size)`
    (head-major: head $h$ owns columns $h \cdot \text{block\_size} \dots$). Return
    $A^\text{rw} = \operatorname{softmax}(R + M_\text{causal})$ over the first $T$ key
    positions, `(B, n_head, T, T)`.
    """
    raise NotImplementedError


def check_reweight_weights(reweight_weights) -> None:
    """Compares with the weights `HybridAttention(mode="reweight")` returns with
    `need_weights=True`, for T = 5 in a window of 8."""
    nima.manual_seed(0)
    layer = HybridAttention(6, 2, 8, mode="reweight").double()
    x = np.random.default_rng(0).standard_normal((2, 5, 6))
    with nima.no_grad():
        _, expected = layer(nima.tensor(x), need_weights=True)
    close(reweight_weights(x, layer.reweight.weight.data, layer.reweight.bias.data, 2, 8),
          expected, "the reweight attention weights")


def alpha_logit_grad(alpha: np.ndarray, a_rw: np.ndarray, a_c: np.ndarray,
                     grad: np.ndarray) -> np.ndarray:
    r"""The gradient that decides the mix.

    The hybrid's weights are $A_h = \alpha_h A^\text{rw}_h + (1 - \alpha_h) A^\text{c}_h$ with
    $\alpha_h = \sigma(a_h)$. Given $\alpha$ `(n_head,)`, $A^\text{rw}$ and $A^\text{c}$
    `(B, n_head, T, S)` and $\bar A$ (`grad`, same shape), return $\partial L / \partial a$,
    `(n_head,)`.
    """
    raise NotImplementedError


def check_alpha_logit_grad(alpha_logit_grad) -> None:
    """Compares with Nima's autograd of $\\sigma(a) A^\\text{rw} + (1 - \\sigma(a)) A^\\text{c}$
    for 3 heads."""
    rng = np.random.default_rng(1)
    logit = nima.tensor(rng.standard_normal(3), requires_grad=True)
    a_rw, a_c = rng.dirichlet(np.ones(4), (2, 3, 4)), rng.dirichlet(np.ones(4), (2, 3, 4))
    grad = rng.standard_normal((2, 3, 4, 4))
    alpha = logit.sigmoid().reshape(3, 1, 1)
    (alpha * nima.tensor(a_rw) + (1 - alpha) * nima.tensor(a_c)).backward(gradient=grad)
    got = alpha_logit_grad(1 / (1 + np.exp(-logit.data)), a_rw, a_c, grad)
    close(got, logit.grad, "the gradient of the mixing logits")


def reweight_parameters(d: int, n_head: int, block_size: int, bias: bool) -> int:
    r"""Predict the reweight layer's size.

    How many parameters does the `reweight` layer of `HybridAttention(d, n_head, block_size,
    bias=bias)` hold? Write it as a formula of the arguments.
    """
    raise NotImplementedError


def check_reweight_parameters(reweight_parameters) -> None:
    """Builds the layer for the baby GPT's and GPT-2 small's shapes, with and without biases,
    and counts `reweight`'s parameters."""
    for d, nh, bs in [(128, 4, 64), (768, 12, 1024), (10, 5, 7)]:
        for bias in (True, False):
            layer = HybridAttention(d, nh, bs, bias=bias)
            expected = sum(p.size for p in layer.reweight.parameters())
            equal(int(reweight_parameters(d, nh, bs, bias)), expected,
                  f"d={d}, n_head={nh}, block_size={bs}, bias={bias}")
