"""Solutions of exercises/interop.py."""

import numpy as np


def rope_permutation(n_head, head_dim):
    within = np.concatenate([np.arange(0, head_dim, 2), np.arange(1, head_dim, 2)])  # evens, odds
    return np.concatenate([h * head_dim + within for h in range(n_head)])


def _rope_permutation_inverse(n_head, head_dim):
    """The inverse permutation: place i takes row i // 2 or its partner, the wrong way round."""
    within = rope_permutation(1, head_dim)
    inverse = np.argsort(within)
    return np.concatenate([h * head_dim + inverse for h in range(n_head)])


def widen_bfloat16(bits):
    return (bits.astype(np.uint32) << 16).view(np.float32)  # the low half of a float32 is zero


def _widen_as_float16(bits):
    """Reads the bits as IEEE float16, a different format (5 exponent bits, 10 mantissa)."""
    return bits.view(np.float16).astype(np.float32)


WRONG = {
    "rope_permutation": [_rope_permutation_inverse,
                         lambda n_head, head_dim: np.arange(n_head * head_dim)],
    "widen_bfloat16": [_widen_as_float16],
}
