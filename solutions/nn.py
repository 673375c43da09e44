"""Solutions of exercises/nn.py."""

import numpy as np


def rms_norm_backward(x: np.ndarray, gamma: np.ndarray, grad: np.ndarray,
                      eps: float) -> tuple[np.ndarray, np.ndarray]:
    r = np.sqrt((x * x).mean(axis=-1, keepdims=True) + eps)  # (..., 1)
    xhat = x / r
    g = grad * gamma
    # y depends on x directly and through r; dr/dx_i = x_i / (d r), so the second term removes
    # the component of g along xhat
    dx = (g - xhat * (g * xhat).mean(axis=-1, keepdims=True)) / r
    dgamma = (grad * xhat).reshape(-1, x.shape[-1]).sum(axis=0)
    return dx, dgamma


def _rms_norm_backward_constant_r(x, gamma, grad, eps):
    """Treats r as a constant: forgets that it depends on x."""
    r = np.sqrt((x * x).mean(axis=-1, keepdims=True) + eps)
    return grad * gamma / r, (grad * x / r).reshape(-1, x.shape[-1]).sum(axis=0)


def _rms_norm_backward_layer_norm(x, gamma, grad, eps):
    """Keeps LayerNorm's centring term, mean(g), which RMSNorm does not have."""
    r = np.sqrt((x * x).mean(axis=-1, keepdims=True) + eps)
    xhat, g = x / r, grad * gamma
    dx = (g - g.mean(axis=-1, keepdims=True)
          - xhat * (g * xhat).mean(axis=-1, keepdims=True)) / r
    return dx, (grad * xhat).reshape(-1, x.shape[-1]).sum(axis=0)


def embedding_grad(ids: np.ndarray, grad: np.ndarray, V: int) -> np.ndarray:
    out = np.zeros((V, grad.shape[-1]), dtype=grad.dtype)
    np.add.at(out, ids.reshape(-1), grad.reshape(-1, grad.shape[-1]))  # unbuffered: repeats add
    return out


def _embedding_grad_buffered(ids: np.ndarray, grad: np.ndarray, V: int) -> np.ndarray:
    """`out[ids] += grad` keeps only the last gradient of a repeated id."""
    out = np.zeros((V, grad.shape[-1]), dtype=grad.dtype)
    out[ids.reshape(-1)] += grad.reshape(-1, grad.shape[-1])
    return out


def kaiming_std(fan_in: int, a: float) -> float:
    # a leaky ReLU keeps (1 + a^2) / 2 of the second moment; the weights make up for it
    return float(np.sqrt(2.0 / ((1 + a * a) * fan_in)))


WRONG = {
    "rms_norm_backward": [_rms_norm_backward_constant_r, _rms_norm_backward_layer_norm],
    "embedding_grad": [_embedding_grad_buffered],
    "kaiming_std": [lambda fan_in, a: float(np.sqrt(2.0 / fan_in)),  # ignores the slope
                    lambda fan_in, a: float(np.sqrt(1.0 / fan_in))],  # Xavier-like, no factor 2
}
