r"""Exercises of "How to use the exercises" (docs/exercises.md): a warm-up."""

import numpy as np

import nima.functional as F
from exercises import close
from nima import tensor


def softmax(z: np.ndarray) -> np.ndarray:
    r"""A softmax that does not overflow.

    Write $\operatorname{softmax}(z)_i = e^{z_i} / \sum_j e^{z_j}$ over the last axis of `z`
    (any shape). $e^{1000}$ overflows float64, yet logits of 1000 are harmless: subtract
    $\max_j z_j$ first — the ratio does not change, and the largest exponent is then $e^0 = 1$.
    """
    raise NotImplementedError


def check_softmax(softmax) -> None:
    """Compares with `nima.functional.softmax` on random logits, on logits near ±1000 and on a
    row holding $-\\infty$ (a masked entry, which must get probability 0)."""
    rng = np.random.default_rng(0)
    cases = [rng.standard_normal((3, 5)), 1000 + rng.standard_normal((2, 4)),
             -1000 + rng.standard_normal(6), np.array([[0.0, -np.inf, 1.0]])]
    for z in cases:
        close(softmax(z.copy()), F.softmax(tensor(z), dim=-1).data, f"softmax of shape {z.shape}")
