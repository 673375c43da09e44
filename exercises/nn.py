r"""Exercises of the Modules and layers page (docs/nn.md)."""

import numpy as np

import nima
import nima.functional as F
from exercises import close
from nima.nn import init


def rms_norm_backward(x: np.ndarray, gamma: np.ndarray, grad: np.ndarray,
                      eps: float) -> tuple[np.ndarray, np.ndarray]:
    r"""RMSNorm's backward.

    The forward is $y = \hat x \odot \gamma$ with $\hat x = x / r$ and
    $r = \sqrt{\frac1d \sum_i x_i^2 + \epsilon}$, over the last axis of `x` (`(..., d)`;
    `gamma` is `(d,)`). Given $\bar y$ (`grad`, shaped like `x`), return
    $(\bar x, \bar\gamma)$. Start from $g = \bar y \odot \gamma$; LayerNorm's formula on the
    page, without its centring term, is the answer — derive why.
    """
    raise NotImplementedError


def check_rms_norm_backward(rms_norm_backward) -> None:
    r"""Compares $\bar x$ and $\bar\gamma$ with the gradients of `F.rms_norm` (itself checked by
    central differences) for inputs of shape `(3, 5)` and `(2, 2, 4)`, with ε = 1e-6 and 0.5."""
    rng = np.random.default_rng(0)
    for shape, eps in [((3, 5), 1e-6), ((2, 2, 4), 0.5)]:
        x = nima.tensor(rng.standard_normal(shape), requires_grad=True)
        gamma = nima.tensor(rng.uniform(0.5, 1.5, shape[-1]), requires_grad=True)
        grad = rng.standard_normal(shape)
        F.rms_norm(x, shape[-1], gamma, eps=eps).backward(gradient=grad)
        got = rms_norm_backward(x.data.copy(), gamma.data.copy(), grad, eps)
        close(got[0], x.grad, f"grad of x, shape {shape}, eps {eps}")
        close(got[1], gamma.grad, f"grad of gamma, shape {shape}, eps {eps}")


def embedding_grad(ids: np.ndarray, grad: np.ndarray, V: int) -> np.ndarray:
    r"""The embedding's scatter-add.

    The forward read rows `ids` (any shape) of a `(V, d)` table; `grad` is the gradient of those
    rows, shaped `ids.shape + (d,)`. Return the table's gradient, `(V, d)`: every position adds
    its gradient to the row it read — a token that appears $k$ times collects $k$ gradients.
    """
    raise NotImplementedError


def check_embedding_grad(embedding_grad) -> None:
    """Compares with the gradient of `F.embedding` for ids of shape `(2, 6)` drawn from a
    vocabulary of 5, so that most ids repeat."""
    rng = np.random.default_rng(1)
    ids = rng.integers(0, 5, (2, 6))
    table = nima.tensor(rng.standard_normal((5, 3)), requires_grad=True)
    grad = rng.standard_normal((2, 6, 3))
    F.embedding(ids, table).backward(gradient=grad)
    close(embedding_grad(ids, grad, 5), table.grad, "the table's gradient")


def kaiming_std(fan_in: int, a: float) -> float:
    r"""Kaiming's standard deviation.

    Return the standard deviation of He initialisation for a layer with `fan_in` inputs followed
    by a leaky ReLU of negative slope `a` (`a = 0` is ReLU): the one that keeps the second moment
    of the activations constant from layer to layer.
    """
    raise NotImplementedError


def check_kaiming_std(kaiming_std) -> None:
    """Compares with the standard deviation of a `(1000, fan_in)` weight filled by
    `nima.nn.init.kaiming_normal_`, to 2%, for ReLU and two leaky slopes."""
    for fan_in, a in [(64, 0.0), (256, 0.2), (100, 1.0)]:
        nima.manual_seed(0)
        w = init.kaiming_normal_(nima.zeros(1000, fan_in, dtype=np.float64), a=a)
        close(kaiming_std(fan_in, a), float(w.data.std()), f"the std at fan_in {fan_in}, a {a}",
              rtol=0.02)
