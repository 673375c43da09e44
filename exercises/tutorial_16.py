r"""Exercises of tutorial 16, tree attention by hand."""

import numpy as np

import nima
from exercises import close, equal
from nima.nn import TreeAttention
from nima.nn.tree_attention import tree_levels, tree_pattern


def tree_attention_by_hand(layer: TreeAttention, x: np.ndarray) -> np.ndarray:
    r"""A whole tree attention layer in NumPy.

    `layer` is a float64 `TreeAttention` with mean summaries and sigmoid gates; `x` is
    `(T, d)`. Return its output `(T, d)` from `layer.qkv`, `layer.gate_logit`, `layer.proj`,
    `layer.chunk_size` $b$, `layer.levels` $L$ and `layer.n_head`. Per query $t$, head $h$ and
    level $l$: the vectors it reads at that level (its leaf chunk's tokens for $l = 0$, else
    the means of the completed sibling chunks of $b^l$ tokens), projected by the tokens' own
    $W_K, W_V$ (biases included); one softmax of $q K^\top/\sqrt{d_h}$ per level, a level
    without keys adding nothing; $y_h = \sum_l \sigma(a_{h,l})\, Y_{h,l}$; the heads
    concatenated and projected by `proj`.
    """
    raise NotImplementedError


def check_tree_attention_by_hand(tree_attention_by_hand) -> None:
    """Compares with the layer's own forward, to 1e-10, for (T, b, heads, d) = (16, 2, 2, 8),
    (20, 3, 2, 6) and (13, 4, 1, 4), with gates drawn at random."""
    rng = np.random.default_rng(0)
    for T, b, nh, d in [(16, 2, 2, 8), (20, 3, 2, 6), (13, 4, 1, 4)]:
        nima.manual_seed(0)
        layer = TreeAttention(d, nh, T, chunk_size=b).double()
        layer.gate_logit.data[...] = rng.standard_normal(layer.gate_logit.shape)
        layer.qkv.bias.data[...] = rng.standard_normal(layer.qkv.bias.shape)
        x = rng.standard_normal((T, d))
        with nima.no_grad():
            expected = layer(nima.tensor(x[None])).data[0]
        close(tree_attention_by_hand(layer, x.copy()), expected,
              f"the output for T={T}, b={b}, {nh} head(s)", rtol=1e-10, atol=1e-10)


def cache_sizes(t: int, b: int, L: int) -> list[int]:
    r"""What the decoding cache holds.

    After `t` tokens have been decoded one by one, how many children does `TreeCache` keep at
    each level $0, \dots, L$ (tokens of the open leaf chunk at level 0, summaries above)? A
    chunk that completes is pooled into one summary a level up and leaves its level; the top
    level $L$ pools nothing. Return the $L + 1$ counts, level 0 first.
    """
    raise NotImplementedError


def check_cache_sizes(cache_sizes) -> None:
    """Decodes `block_size` tokens one at a time through a `TreeAttention` and compares with its
    cache's count at each level after every token, for (block_size, b) = (8, 2), (16, 2),
    (20, 3) and (27, 3)."""
    rng = np.random.default_rng(1)
    for T, b in [(8, 2), (16, 2), (20, 3), (27, 3)]:
        L = tree_levels(T, b)
        nima.manual_seed(0)
        layer = TreeAttention(4, 1, T, chunk_size=b).double()
        cache = layer.new_cache()
        x = rng.standard_normal((1, T, 4))
        with nima.no_grad():
            for t in range(1, T + 1):
                layer(nima.tensor(x[:, t - 1:t]), cache=cache)
                equal([int(n) for n in cache_sizes(t, b, L)], [kv.length for kv in cache.kv],
                      f"the counts after {t} tokens (b={b}, L={L})")


def summary_readers(j: int, level: int, b: int, T: int) -> list[int]:
    r"""Who reads a summary.

    The level-`level` chunk `j` covers positions $[j b^l, (j+1) b^l)$ of a sequence of `T`.
    Return, in increasing order, the queries $t < T$ that read its summary: those after the
    whole chunk whose level-$(l+1)$ chunk is the same as its own. (None reads a chunk that
    ends past `T`.)
    """
    raise NotImplementedError


def check_summary_readers(summary_readers) -> None:
    """Reads the readers of every chunk at every level off `tree_pattern` (the queries that
    see all of the chunk's positions through that level) for (T, b) = (16, 2), (20, 3) and
    (64, 4)."""
    for T, b in [(16, 2), (20, 3), (64, 4)]:
        L = tree_levels(T, b)
        pattern = tree_pattern(T, b, L)
        for level in range(1, L + 1):
            span = b**level
            for j in range(-(-T // span)):
                chunk = pattern[:, j * span:(j + 1) * span]
                readers = [t for t in range(T)
                           if (j + 1) * span <= T and (chunk[t] == level).all()]
                equal([int(t) for t in summary_readers(j, level, b, T)], readers,
                      f"the readers of chunk {j} at level {level} (T={T}, b={b})")
