r"""Exercises of tutorial 04, attention from scratch."""

import numpy as np

from exercises import close
from nima.ops.attention import causal_mask as nima_causal_mask


def causal_mask(t_q: int, t_k: int) -> np.ndarray:
    r"""The causal mask, aligned to the end.

    Return a bool `(t_q, t_k)` array, True where query $i$ may see key $j$. The queries are the
    *last* $t_q$ of $t_k$ positions (the earlier keys come from a cache), so query $i$ sees
    keys $j \le t_k - t_q + i$.
    """
    raise NotImplementedError


def check_causal_mask(causal_mask) -> None:
    """Compares with `nima.ops.attention.causal_mask` for square masks and for queries after
    cached keys."""
    for t_q, t_k in [(1, 1), (4, 4), (2, 5), (1, 7), (3, 3)]:
        close(np.asarray(causal_mask(t_q, t_k), dtype=bool), nima_causal_mask(t_q, t_k),
              f"the mask ({t_q}, {t_k})")


def split_heads(x: np.ndarray, n_head: int) -> np.ndarray:
    r"""Give every head its own matrix.

    `x` is `(B, T, C)`: head $h$ owns channels $h\,d_h \dots (h+1)\,d_h - 1$, $d_h = C/n_h$.
    Return `(B, n_head, T, d_h)` with `out[b, h, t] = x[b, t, h*d_h:(h+1)*d_h]` — one reshape
    and one transpose, no loop.
    """
    raise NotImplementedError


def check_split_heads(split_heads) -> None:
    """Compares, element by element, with the channels each head owns, for two shapes."""
    rng = np.random.default_rng(0)
    for B, T, C, nh in [(2, 3, 8, 2), (1, 5, 12, 3)]:
        x = rng.standard_normal((B, T, C))
        hd = C // nh
        expected = np.empty((B, nh, T, hd))
        for b in range(B):
            for h in range(nh):
                for t in range(T):
                    expected[b, h, t] = x[b, t, h * hd:(h + 1) * hd]
        close(split_heads(x, nh), expected, f"the heads of a {x.shape} input, {nh} heads")
