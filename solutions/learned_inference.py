"""Solutions of exercises/learned_inference.py."""

import numpy as np


def _mass_before(p):
    order = np.argsort(-p, axis=-1, kind="stable")
    s = np.take_along_axis(p, order, axis=-1)
    before = np.cumsum(s, axis=-1) - s
    c = np.empty_like(s)
    np.put_along_axis(c, order, before, axis=-1)
    return c


def mass_before_backward(p, grad):
    order = np.argsort(-p, axis=-1, kind="stable")
    g = np.take_along_axis(grad, order, axis=-1)  # in ranked order
    after = np.cumsum(g[..., ::-1], axis=-1)[..., ::-1] - g  # sum over the entries ranked below
    out = np.empty_like(g)
    np.put_along_axis(out, order, after, axis=-1)
    return out


def _mass_before_backward_inclusive(p, grad):
    """Includes each entry's own gradient: the forward's sum is exclusive."""
    order = np.argsort(-p, axis=-1, kind="stable")
    g = np.take_along_axis(grad, order, axis=-1)
    out = np.empty_like(g)
    np.put_along_axis(out, order, np.cumsum(g[..., ::-1], axis=-1)[..., ::-1], axis=-1)
    return out


def _mass_before_backward_upward(p, grad):
    """Sends each gradient to the entries ranked *above* instead of below."""
    order = np.argsort(-p, axis=-1, kind="stable")
    g = np.take_along_axis(grad, order, axis=-1)
    out = np.empty_like(g)
    np.put_along_axis(out, order, np.cumsum(g, axis=-1) - g, axis=-1)
    return out


def soft_nucleus(logits, p, tau):
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    c = _mass_before(e / e.sum(axis=-1, keepdims=True))
    x = (c - p) / tau
    return -(np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x))))  # softplus, stable both ways


def _soft_nucleus_naive(logits, p, tau):
    """softplus as log(1 + exp(x)): exp overflows for a narrow ramp."""
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    c = _mass_before(e / e.sum(axis=-1, keepdims=True))
    return -np.log(1 + np.exp((c - p) / tau))


def temperature_grad(z, y, T):
    q = np.exp(z / T - (z / T).max())
    q /= q.sum()  # the tempered distribution
    return (z[y] - q @ z) / T**2


WRONG = {
    "mass_before_backward": [_mass_before_backward_inclusive, _mass_before_backward_upward],
    "soft_nucleus": [_soft_nucleus_naive],
    "temperature_grad": [lambda z, y, T: -temperature_grad(z, y, T),
                         lambda z, y, T: temperature_grad(z, y, T) * T],
}
