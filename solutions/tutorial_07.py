"""Solutions of exercises/tutorial_07.py."""

import numpy as np


def windows(data, offsets, T):
    index = offsets[:, None] + np.arange(T + 1)  # (B, T + 1): each window and one more
    chunk = np.asarray(data[index], dtype=np.int64)
    return chunk[:, :-1], chunk[:, 1:]


def clip(grads, max_norm):
    norm = float(np.sqrt(sum((g.astype(np.float64) ** 2).sum() for g in grads)))
    scale = min(1.0, max_norm / (norm + 1e-6))
    return [g * scale for g in grads], norm


def _clip_each(grads, max_norm):
    """Clips every gradient by its own norm: the direction of the whole step changes."""
    out = []
    for g in grads:
        n = float(np.sqrt((g**2).sum()))
        out.append(g * min(1.0, max_norm / (n + 1e-6)))
    return out, float(np.sqrt(sum((g**2).sum() for g in grads)))


WRONG = {
    "windows": [lambda data, offsets, T: (data[offsets[:, None] + np.arange(T)],) * 2],
    "clip": [_clip_each],
}
