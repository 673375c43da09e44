"""Solutions of exercises/autograd.py."""

import numpy as np

from nima.autograd import Context, Function


def unbroadcast(grad: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    extra = grad.ndim - len(shape)
    grad = grad.sum(axis=tuple(range(extra)))  # the new leading axes
    ones = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    return grad.sum(axis=ones, keepdims=True)  # the stretched size-1 axes, kept


def _unbroadcast_leading_only(grad: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Forgets the axes of size 1 that were stretched."""
    return grad.sum(axis=tuple(range(grad.ndim - len(shape))))


def _unbroadcast_mean(grad: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Averages over the copies instead of adding them up."""
    extra = grad.ndim - len(shape)
    grad = grad.mean(axis=tuple(range(extra)))
    ones = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    return grad.mean(axis=ones, keepdims=True)


class SiLU(Function):
    @staticmethod
    def forward(ctx: Context, x: np.ndarray) -> np.ndarray:
        s = 1.0 / (1.0 + np.exp(-x))
        ctx.save_for_backward(x, s)
        return x * s

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray) -> np.ndarray:
        x, s = ctx.saved_tensors
        return grad * (s + x * s * (1 - s))  # product rule: $\sigma + x \sigma'$


class _SiLUWithoutProductRule(SiLU):
    """Treats $\\sigma(x)$ as a constant factor."""

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray) -> np.ndarray:
        _, s = ctx.saved_tensors
        return grad * s


def grad_after_two_backwards() -> float:
    # dy/dx = 2x + 1 = 7 at x = 3; gradients accumulate, so two backward calls give 7 + 7
    return 2 * (2 * 3.0 + 1)


WRONG = {
    "unbroadcast": [_unbroadcast_leading_only, _unbroadcast_mean],
    "SiLU": [_SiLUWithoutProductRule],
    "grad_after_two_backwards": [lambda: 7.0],
}
