"""Solutions of exercises/kernels.py."""

import math

import numpy as np


def softmax_backward(y: np.ndarray, grad: np.ndarray) -> np.ndarray:
    dot = (grad * y).sum(axis=-1, keepdims=True)  # one number per row: <grad, y>
    return y * (grad - dot)


def _softmax_backward_diagonal(y: np.ndarray, grad: np.ndarray) -> np.ndarray:
    """Keeps only the diagonal of the Jacobian, as for an elementwise op."""
    return grad * y * (1 - y)


def _softmax_backward_one_dot(y: np.ndarray, grad: np.ndarray) -> np.ndarray:
    """Takes one dot product over the whole array instead of one per row."""
    return y * (grad - (grad * y).sum())


def cross_entropy_grad(z: np.ndarray, target: np.ndarray, smoothing: float) -> np.ndarray:
    N, C = z.shape
    e = np.exp(z - z.max(axis=1, keepdims=True))
    p = e / e.sum(axis=1, keepdims=True)
    q = np.full((N, C), smoothing / C)
    q[np.arange(N), target] += 1 - smoothing
    return (p - q) / N


def _cross_entropy_grad_no_mean(z: np.ndarray, target: np.ndarray, smoothing: float):
    """Forgets that the loss is a mean over the rows."""
    return cross_entropy_grad(z, target, smoothing) * z.shape[0]


def _cross_entropy_grad_no_smoothing(z: np.ndarray, target: np.ndarray, smoothing: float):
    """Ignores the smoothing: q is one-hot."""
    return cross_entropy_grad(z, target, 0.0)


def range_reduce(x: float) -> tuple[int, float]:
    n = math.floor(x / math.log(2) + 0.5)  # the nearest integer to x / ln 2
    return n, x - n * math.log(2)


def _range_reduce_floor(x: float) -> tuple[int, float]:
    """Rounds down instead of to the nearest: r lands in [0, ln 2)."""
    n = math.floor(x / math.log(2))
    return n, x - n * math.log(2)


WRONG = {
    "softmax_backward": [_softmax_backward_diagonal, _softmax_backward_one_dot],
    "cross_entropy_grad": [_cross_entropy_grad_no_mean, _cross_entropy_grad_no_smoothing],
    "range_reduce": [_range_reduce_floor],
}
