r"""The rotation of rotary position embedding (RoPE) on arrays: dim $i$ of a head paired with
dim $i + d/2$, the pair at angle $\theta$ rotated as

$$\operatorname{rot}_\theta(x) = (x_1 \cos\theta - x_2 \sin\theta,\;
x_1 \sin\theta + x_2 \cos\theta),$$

with $x_1, x_2$ the two halves of the last axis. NumPy only, so that `nima.nn.positional`
imports it without loading numba; the fused attention kernel (`nima.kernels.causal_attention`)
rotates its queries and keys the same way inside its own loop.
"""

import numpy as np


# --8<-- [start:rotate_pairs]
def rotate_pairs(x: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
    """`x` `(..., T, d)` rotated pair by pair by the angles whose `cos`, `sin` are `(T, d/2)`
    (or broadcast to `(..., T, d/2)`)."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]  # (..., T, d/2) each
    return np.concatenate([x1 * cos - x2 * sin, x1 * sin + x2 * cos], axis=-1)  # (..., T, d)
# --8<-- [end:rotate_pairs]
