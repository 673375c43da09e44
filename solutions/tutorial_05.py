"""Solutions of exercises/tutorial_05.py."""

import numpy as np


def rope(x, offset, base=10000.0):
    T, d = x.shape
    omega = base ** (-np.arange(0, d, 2) / d)  # (d/2,)
    angle = (offset + np.arange(T))[:, None] * omega  # (T, d/2)
    cos, sin = np.cos(angle), np.sin(angle)
    x1, x2 = x[:, : d // 2], x[:, d // 2:]
    return np.concatenate([x1 * cos - x2 * sin, x1 * sin + x2 * cos], axis=1)


def _rope_interleaved(x, offset, base=10000.0):
    """Pairs neighbouring dimensions (2i, 2i+1), Meta's original layout."""
    T, d = x.shape
    angle = (offset + np.arange(T))[:, None] * base ** (-np.arange(0, d, 2) / d)
    out = np.empty_like(x)
    out[:, 0::2] = x[:, 0::2] * np.cos(angle) - x[:, 1::2] * np.sin(angle)
    out[:, 1::2] = x[:, 0::2] * np.sin(angle) + x[:, 1::2] * np.cos(angle)
    return out


def _rope_ignoring_offset(x, offset, base=10000.0):
    """Starts every call at position 0: wrong under a KV cache."""
    return rope(x, 0, base)


def alibi_bias(slopes, T):
    i, j = np.arange(T)[:, None], np.arange(T)[None, :]
    return -slopes[:, None, None] * (i - j)


WRONG = {
    "rope": [_rope_interleaved, _rope_ignoring_offset],
    "alibi_bias": [lambda slopes, T: slopes[:, None, None] * (np.arange(T)[:, None]
                                                              - np.arange(T)[None, :])],
}
