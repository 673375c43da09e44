r"""Exercises of the Tree attention page (docs/tree_attention.md)."""

import numpy as np

from exercises import close, equal
from nima.nn.tree_attention import tree_levels as nima_tree_levels
from nima.nn.tree_attention import tree_pattern as nima_tree_pattern


def tree_pattern(T: int, b: int, L: int) -> np.ndarray:
    r"""Which level reads which key.

    Return a `(T, T)` int array: entry $(t, s)$ is the level through which query $t$ reads
    key $s \le t$ — the lowest $l$ at which $s$ and $t$ share a level-$(l+1)$ chunk,
    $\lfloor s/b^{l+1}\rfloor = \lfloor t/b^{l+1}\rfloor$ — and $-1$ for $s > t$. ($l = 0$: as a
    token; $l \ge 1$: inside the summary of $s$'s level-$l$ chunk.)
    """
    raise NotImplementedError


def check_tree_pattern(tree_pattern) -> None:
    """Compares with `nima.nn.tree_attention.tree_pattern` for (T, b, L) = (16, 2, 3),
    (20, 3, 2) and (64, 4, 2)."""
    for T, b, L in [(16, 2, 3), (20, 3, 2), (64, 4, 2)]:
        close(np.asarray(tree_pattern(T, b, L)), nima_tree_pattern(T, b, L),
              f"the pattern for T={T}, b={b}, L={L}")


def max_keys(b: int, L: int) -> int:
    r"""How many keys can one query read?

    Count the keys of the busiest query of a sequence of $b^{L+1}$ tokens: tokens of its own
    leaf chunk, plus one summary per completed sibling chunk at each level. Return the most any
    query reads, as a formula in $b$ and $L$.
    """
    raise NotImplementedError


def check_max_keys(max_keys) -> None:
    """Counts, from Nima's pattern over $b^{L+1}$ positions, the keys of every query (a
    summary of a level-$l$ chunk counting once) and compares the maximum."""
    for b, L in [(2, 1), (2, 3), (4, 2), (16, 1), (5, 2)]:
        T = b ** (L + 1)
        pattern = nima_tree_pattern(T, b, L)
        keys = (pattern == 0).sum(axis=1).astype(float)
        for level in range(1, L + 1):
            keys += (pattern == level).sum(axis=1) / b**level
        equal(int(max_keys(b, L)), int(keys.max()), f"the most keys for b={b}, L={L}")


def tree_levels(block_size: int, b: int) -> int:
    r"""Levels for a window.

    Return the number of levels $L \ge 1$ above the tokens with
    $b^L < \text{block\_size} \le b^{L+1}$: enough to reach the whole window, none whose
    summaries no query could see.
    """
    raise NotImplementedError


def check_tree_levels(tree_levels) -> None:
    """Compares with `nima.nn.tree_attention.tree_levels` over a range of windows and chunk
    sizes, including exact powers."""
    for b in (2, 3, 4, 16):
        for block_size in (2, 3, 4, 5, 16, 17, 64, 256, 257, 512, 4096):
            equal(int(tree_levels(block_size, b)), nima_tree_levels(block_size, b),
                  f"levels for block_size={block_size}, b={b}")
