"""Solutions of exercises/gradcheck.py."""

from collections.abc import Callable

import numpy as np


def numerical_grad(f: Callable[[np.ndarray], float], x: np.ndarray,
                   eps: float = 1e-5) -> np.ndarray:
    grad = np.zeros_like(x)
    flat, out = x.reshape(-1), grad.reshape(-1)  # views: writing flat[i] moves x itself
    for i in range(flat.size):
        keep = flat[i]
        flat[i] = keep + eps
        up = f(x)
        flat[i] = keep - eps
        down = f(x)
        flat[i] = keep  # restore exactly
        out[i] = (up - down) / (2 * eps)
    return grad


def _one_sided_grad(f: Callable[[np.ndarray], float], x: np.ndarray,
                    eps: float = 1e-5) -> np.ndarray:
    """The one-sided difference: its error is O(eps), about 1e-5 here."""
    grad, base = np.zeros_like(x), f(x)
    for i in np.ndindex(x.shape):
        keep = x[i]
        x[i] = keep + eps
        grad[i] = (f(x) - base) / eps
        x[i] = keep
    return grad


def _half_step_grad(f: Callable[[np.ndarray], float], x: np.ndarray,
                    eps: float = 1e-5) -> np.ndarray:
    """Divides by eps instead of 2 eps: every gradient twice too large."""
    return 2 * numerical_grad(f, x, eps)


def best_epsilon(delta: float, L: float, L3: float) -> float:
    # d/de (e^2 L3 / 6 + delta L / e) = e L3 / 3 - delta L / e^2 = 0
    return (3 * delta * L / L3) ** (1 / 3)


WRONG = {
    "numerical_grad": [_one_sided_grad, _half_step_grad],
    "best_epsilon": [lambda delta, L, L3: (delta * L / L3) ** 0.5],  # the one-sided optimum
}
