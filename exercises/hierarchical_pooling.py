r"""Exercises of the Hierarchical pooling page (docs/hierarchical_pooling.md)."""

import numpy as np

import nima
from exercises import close, equal
from nima.nn import HierarchicalPooling
from nima.nn.hierarchical_pooling import upsample as nima_upsample


def mean_pyramid(x: np.ndarray, b: int, L: int) -> list[np.ndarray]:
    r"""The mean pyramid.

    `x` is `(B, T, C)`. Return `[S_1, ..., S_L]`: $S_l$ is `(B, T // b**l, C)`, the mean of
    every *completed* chunk of $b^l$ tokens, oldest first. Build each level from the one below
    ($b$ children per summary), dropping a trailing incomplete chunk.
    """
    raise NotImplementedError


def check_mean_pyramid(mean_pyramid) -> None:
    """Compares with `HierarchicalPooling(mode="mean")` for T = 16 and T = 13 (incomplete
    chunks) with b = 2, L = 3, and T = 10 with b = 3, L = 2."""
    rng = np.random.default_rng(0)
    for T, b, L in [(16, 2, 3), (13, 2, 3), (10, 3, 2)]:
        x = rng.standard_normal((2, T, 4))
        with nima.no_grad():
            expected = HierarchicalPooling(4, b, L)(nima.tensor(x))
        got = mean_pyramid(x, b, L)
        equal(len(got), L, f"the number of levels (T={T}, b={b})")
        for l, (mine, theirs) in enumerate(zip(got, expected, strict=True), 1):
            close(mine, theirs, f"level {l} (T={T}, b={b})")


def upsample(summaries: np.ndarray, span: int, length: int) -> np.ndarray:
    r"""Causal upsampling.

    `summaries` is `(B, n, C)`, one per completed chunk of `span` tokens. Return
    `(B, length, C)` where position $t$ gets the summary of the last chunk completed *before
    its own chunk began*: $U[t] = S[\lfloor t/\text{span} \rfloor - 1]$ for $t \ge$ span, and
    zeros before. (Span 2, summaries `[a, b]`, length 6 give `[0, 0, a, a, b, b]`.)
    """
    raise NotImplementedError


def check_upsample(upsample) -> None:
    """Compares with `nima.nn.hierarchical_pooling.upsample` for spans 1, 2 and 4 and lengths
    that end inside a chunk."""
    rng = np.random.default_rng(1)
    for n, span, length in [(3, 2, 6), (3, 2, 7), (2, 4, 9), (4, 1, 5)]:
        s = rng.standard_normal((2, n, 3))
        close(upsample(s, span, length), nima_upsample(nima.tensor(s), span, length),
              f"n={n}, span={span}, length={length}")
