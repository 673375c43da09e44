r"""Exercises of the Gradient checking page (docs/gradcheck.md)."""

from collections.abc import Callable

import numpy as np

from exercises import close


def numerical_grad(f: Callable[[np.ndarray], float], x: np.ndarray,
                   eps: float = 1e-5) -> np.ndarray:
    r"""Central differences.

    Return the gradient of the scalar function `f` at the float64 array `x` (any shape),
    element by element: $\frac{f(x + \epsilon e_i) - f(x - \epsilon e_i)}{2\epsilon}$. Leave `x`
    as you found it.
    """
    raise NotImplementedError


def check_numerical_grad(numerical_grad) -> None:
    r"""Compares with the exact gradients of $\sum_i \sin(x_i) x_i^2$ and of
    $\log\sum_i e^{x_i}$ to 1e-8 relative, on a `(2, 3)` array, and checks `x` is unchanged."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3))
    before = x.copy()
    cases = [(lambda a: float(np.sum(np.sin(a) * a**2)), np.cos(x) * x**2 + 2 * x * np.sin(x)),
             (lambda a: float(np.log(np.exp(a).sum())), np.exp(x) / np.exp(x).sum())]
    for i, (f, exact) in enumerate(cases):
        close(numerical_grad(f, x, 1e-5), exact, f"the gradient of function {i + 1}", rtol=1e-8,
              atol=1e-9)
        close(x, before, "x after the call")


def best_epsilon(delta: float, L: float, L3: float) -> float:
    r"""The step that balances truncation against rounding.

    The error of a central difference is about
    $\frac{\epsilon^2}{6}|L'''| + \frac{\delta |L|}{\epsilon}$, for a function of size $|L|$,
    third derivative $|L'''|$, computed with relative rounding error $\delta$. Return the
    $\epsilon$ that minimises it.
    """
    raise NotImplementedError


def check_best_epsilon(best_epsilon) -> None:
    """Minimises the error formula numerically on a fine logarithmic grid, for float64 and
    float32 rounding and for several sizes of $L$ and $L'''$, and compares to 0.1%."""
    grid = np.logspace(-12, 0, 200001)
    for delta, L, L3 in [(2.2e-16, 1.0, 1.0), (6e-8, 1.0, 1.0), (2.2e-16, 1e3, 0.1),
                         (2.2e-16, 0.5, 40.0)]:
        error = grid**2 / 6 * L3 + delta * L / grid
        close(best_epsilon(delta, L, L3), grid[np.argmin(error)],
              f"the best eps for delta={delta}, |L|={L}, |L'''|={L3}", rtol=1e-3)
