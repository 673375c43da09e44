"""Solutions of exercises/tutorial_03.py."""

import math

import numpy as np


def exp_polynomial(x):
    n = np.floor(x / math.log(2) + 0.5)
    r = x - n * math.log(2)  # |r| <= ln 2 / 2
    p = np.ones_like(r)
    for k in range(10, 0, -1):  # Horner: 1 + r/1 (1 + r/2 (1 + ... (1 + r/10)))
        p = 1 + r / k * p
    return np.ldexp(p, n.astype(int))


def _exp_taylor_without_reduction(x):
    """The Taylor polynomial of e^x itself: useless far from 0."""
    p = np.ones_like(x)
    for k in range(10, 0, -1):
        p = 1 + x / k * p
    return p


def _exp_degree_four(x):
    """A degree-4 polynomial: about 1e-5 relative error."""
    n = np.floor(x / math.log(2) + 0.5)
    r = x - n * math.log(2)
    return np.ldexp(1 + r + r**2 / 2 + r**3 / 6 + r**4 / 24, n.astype(int))


def log_softmax_backward(logp, grad):
    return grad - np.exp(logp) * grad.sum(axis=-1, keepdims=True)


def _log_softmax_backward_softmax_rule(logp, grad):
    """Uses the softmax's rule, y (g - <g, y>), on the log-probabilities."""
    y = np.exp(logp)
    return y * (grad - (grad * y).sum(axis=-1, keepdims=True))


WRONG = {
    "exp_polynomial": [_exp_taylor_without_reduction, _exp_degree_four],
    "log_softmax_backward": [_log_softmax_backward_softmax_rule,
                             lambda logp, grad: grad - np.exp(logp) * grad.sum()],
}
