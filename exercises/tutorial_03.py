r"""Exercises of tutorial 03, kernels: numba against NumPy."""

import numpy as np

import nima
import nima.functional as F
from exercises import close


def exp_polynomial(x: np.ndarray) -> np.ndarray:
    r"""An exponential from a polynomial.

    Compute $e^x$ for float64 `x` in $[-80, 80]$ from multiply-adds only (no `np.exp`): reduce
    $x = n \ln 2 + r$ with $|r| \le \tfrac{\ln 2}{2}$, approximate $e^r$ by its Taylor
    polynomial of degree 10 ($\sum_{k \le 10} r^k / k!$, evaluated by Horner's rule), and scale
    by $2^n$ (`np.ldexp`). Relative error: below $10^{-12}$.
    """
    raise NotImplementedError


def check_exp_polynomial(exp_polynomial) -> None:
    """Compares with `np.exp` on 2001 points of [-80, 80], to 1e-12 relative, and checks that
    `np.exp` was not called."""
    x = np.linspace(-80, 80, 2001)
    real_exp = np.exp
    try:
        np.exp = None  # any call fails
        got = exp_polynomial(x.copy())
    finally:
        np.exp = real_exp
    close(got, np.exp(x), "e^x", rtol=1e-12, atol=0)


def log_softmax_backward(logp: np.ndarray, grad: np.ndarray) -> np.ndarray:
    r"""The log-softmax backward, from its output.

    Given $\ell = \log\operatorname{softmax}(x)$ over the last axis and $\bar\ell$ (`grad`),
    return $\bar x = \bar\ell - e^{\ell} \sum_j \bar\ell_j$, the sum taken row by row.
    """
    raise NotImplementedError


def check_log_softmax_backward(log_softmax_backward) -> None:
    """Compares with the gradient `F.log_softmax(x).backward(gradient=grad)` leaves in
    `x.grad`, for shapes `(4, 6)` and `(2, 3, 5)`."""
    rng = np.random.default_rng(0)
    for shape in [(4, 6), (2, 3, 5)]:
        x = nima.tensor(rng.standard_normal(shape) * 3, requires_grad=True)
        grad = rng.standard_normal(shape)
        logp = F.log_softmax(x, dim=-1)
        logp.backward(gradient=grad)
        close(log_softmax_backward(logp.data.copy(), grad), x.grad, f"the gradient, {shape}")
