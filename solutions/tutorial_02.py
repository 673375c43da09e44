"""Solutions of exercises/tutorial_02.py."""

import math

import numpy as np

from nima.autograd import Context, Function


def tanh_grad(x, y):
    t = math.tanh(x * y + y * y)
    d = 1 - t * t  # tanh'(u) at u = xy + y^2
    return d * y, d * (x + 2 * y)  # du/dx = y, du/dy = x + 2y


class Hypot(Function):
    @staticmethod
    def forward(ctx: Context, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        y = np.sqrt(a * a + b * b)
        ctx.save_for_backward(a, b, y)
        return y

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        a, b, y = ctx.saved_tensors
        return grad * a / y, grad * b / y


class _HypotSwapped(Hypot):
    """Gives each input the other's gradient."""

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        a, b, y = ctx.saved_tensors
        return grad * b / y, grad * a / y


WRONG = {
    "tanh_grad": [lambda x, y: (y * (1 - math.tanh(x * y + y * y) ** 2),
                                x * (1 - math.tanh(x * y + y * y) ** 2))],  # forgets y^2
    "Hypot": [_HypotSwapped],
}
