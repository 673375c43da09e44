r"""Exercises of the Kernels page (docs/kernels.md)."""

import math

import numpy as np

import nima
import nima.functional as F
from exercises import close


def softmax_backward(y: np.ndarray, grad: np.ndarray) -> np.ndarray:
    r"""The softmax backward, from the output alone.

    Given the forward's output $y = \operatorname{softmax}(x)$ over the last axis and the
    upstream gradient $\bar y$ (same shape, any number of rows), return
    $\bar x = y \odot (\bar y - \langle \bar y, y \rangle)$, the dot product taken row by row.
    Do not build the Jacobian.
    """
    raise NotImplementedError


def check_softmax_backward(softmax_backward) -> None:
    """Compares with the gradient `F.softmax(x).backward(gradient=grad)` leaves in `x.grad`, on
    rows of 7 and on a batch of `(2, 3, 5)`."""
    rng = np.random.default_rng(0)
    for shape in [(4, 7), (2, 3, 5)]:
        x = nima.tensor(rng.standard_normal(shape), requires_grad=True)
        grad = rng.standard_normal(shape)
        y = F.softmax(x, dim=-1)
        y.backward(gradient=grad)
        close(softmax_backward(y.data.copy(), grad.copy()), x.grad,
              f"the gradient for shape {shape}")


def cross_entropy_grad(z: np.ndarray, target: np.ndarray, smoothing: float) -> np.ndarray:
    r"""The gradient of a mean cross-entropy with label smoothing.

    `z` is `(N, C)` logits, `target` `(N,)` class ids, `smoothing` $\varepsilon$. The loss is
    the mean over the $N$ rows of $-\sum_j q_j \log \operatorname{softmax}(z)_j$ with
    $q = (1 - \varepsilon)\operatorname{onehot}(t) + \varepsilon / C$. Return
    $\partial L / \partial z$, `(N, C)`: $(p - q) / N$ — compute $p$ stably.
    """
    raise NotImplementedError


def check_cross_entropy_grad(cross_entropy_grad) -> None:
    """Compares with the gradient of `F.cross_entropy(z, t, label_smoothing=eps)` (the mean over
    rows) at ε = 0 and 0.1, with logits up to ±60."""
    rng = np.random.default_rng(1)
    for eps in (0.0, 0.1):
        z = nima.tensor(rng.standard_normal((6, 5)) * 20, requires_grad=True)
        t = rng.integers(0, 5, 6)
        F.cross_entropy(z, t, label_smoothing=eps).backward()
        close(cross_entropy_grad(z.data.copy(), t.copy(), eps), z.grad,
              f"the gradient at smoothing {eps}")


def range_reduce(x: float) -> tuple[int, float]:
    r"""The range reduction of a vectorisable exp.

    Return $(n, r)$ with $x = n \ln 2 + r$, $n$ an integer and
    $r \in [-\tfrac{\ln 2}{2}, \tfrac{\ln 2}{2}]$, so that $e^x = 2^n e^r$ and a polynomial
    only has to approximate $e^r$ on a short interval around 0.
    """
    raise NotImplementedError


def check_range_reduce(range_reduce) -> None:
    """Checks on 200 values in [-80, 80] that n is an integer, that r lies in
    [-ln 2 / 2, ln 2 / 2] (to rounding), and that $2^n e^r = e^x$ to 1e-12 relative."""
    half = math.log(2) / 2 + 1e-12
    for x in np.linspace(-80, 80, 200):
        n, r = range_reduce(float(x))
        if int(n) != n:
            raise AssertionError(f"x = {x}: n = {n} is not an integer")
        if abs(r) > half:
            raise AssertionError(f"x = {x}: r = {r} is outside [-ln 2 / 2, ln 2 / 2]")
        close(math.ldexp(math.exp(r), int(n)), math.exp(x), f"2^n e^r at x = {x}", rtol=1e-12)
