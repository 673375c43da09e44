"""Solutions of exercises/tree_attention.py."""

import numpy as np


def tree_pattern(T, b, L):
    pattern = np.full((T, T), -1)
    for t in range(T):
        for s in range(t + 1):
            pattern[t, s] = next(l for l in range(L + 1) if s // b ** (l + 1) == t // b ** (l + 1))
    return pattern


def _tree_pattern_same_level_chunk(T, b, L):
    """Uses the lowest level whose own chunk they share: every level one too high."""
    pattern = np.full((T, T), -1)
    for t in range(T):
        for s in range(t + 1):
            pattern[t, s] = min(next(l for l in range(L + 2) if s // b**l == t // b**l), L)
    return pattern


def max_keys(b: int, L: int) -> int:
    return b + L * (b - 1)  # a whole leaf chunk, then b - 1 completed siblings per level


def tree_levels(block_size: int, b: int) -> int:
    L = 0
    while b ** (L + 1) < block_size:
        L += 1
    return max(L, 1)


def _tree_levels_at_least(block_size: int, b: int) -> int:
    """Stops one level early when block_size is an exact power: b^(L+1) must be >= it."""
    L = 0
    while b ** (L + 1) <= block_size:
        L += 1
    return max(L, 1)


WRONG = {
    "tree_pattern": [_tree_pattern_same_level_chunk],
    "max_keys": [lambda b, L: b * (L + 1), lambda b, L: b + L * b],
    "tree_levels": [_tree_levels_at_least],
}
