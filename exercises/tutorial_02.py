r"""Exercises of tutorial 02, autograd by hand."""

import numpy as np

import nima
from exercises import close
from nima.autograd import Context, Function


def tanh_grad(x: float, y: float) -> tuple[float, float]:
    r"""The tutorial's graph, by the chain rule.

    For $f(x, y) = \tanh(xy + y^2)$, return $(\partial f/\partial x, \partial f/\partial y)$ at
    the point given, worked out by hand: $\tanh' = 1 - \tanh^2$.
    """
    raise NotImplementedError


def check_tanh_grad(tanh_grad) -> None:
    """Compares with Nima's autograd at five points."""
    for x0, y0 in [(0.5, -0.3), (1.0, 1.0), (-2.0, 0.7), (0.0, 0.4), (0.3, -1.2)]:
        x = nima.tensor(x0, dtype=np.float64, requires_grad=True)
        y = nima.tensor(y0, dtype=np.float64, requires_grad=True)
        (x * y + y * y).tanh().backward()
        close(np.array(tanh_grad(x0, y0), dtype=float), np.array([x.grad, y.grad], dtype=float),
              f"the gradient at ({x0}, {y0})")


class Hypot(Function):
    r"""A two-input op: the hypotenuse.

    $y = \sqrt{a^2 + b^2}$. The forward is written and saves the inputs and the output. Write
    `backward`: return one gradient per input, $\bar a = \bar y\, a / y$ and
    $\bar b = \bar y\, b / y$. (The engine sums a broadcast input's gradient back to its
    shape.)
    """

    @staticmethod
    def forward(ctx: Context, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        y = np.sqrt(a * a + b * b)
        ctx.save_for_backward(a, b, y)
        return y

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError


def check_Hypot(Hypot) -> None:
    """Runs `nima.gradcheck` on `Hypot.apply` for inputs of one shape and for a `(3, 1)` input
    broadcast against a `(3, 4)` one."""
    rng = np.random.default_rng(0)
    for sa, sb in [((3, 4), (3, 4)), ((3, 1), (3, 4))]:
        a = nima.tensor(rng.standard_normal(sa) + 2, requires_grad=True)
        b = nima.tensor(rng.standard_normal(sb) - 2, requires_grad=True)
        nima.gradcheck(Hypot.apply, [a, b])
