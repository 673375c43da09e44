r"""Exercises of tutorial 10, decoding strategies compared."""

import numpy as np

from exercises import close
from nima.generation import TopK
from nima.generation.decoding import sample_tokens


def inverse_cdf(probs: np.ndarray, u: np.ndarray) -> np.ndarray:
    r"""Sampling by inverse CDF.

    `probs` is `(B, V)` (rows need not sum exactly to 1), `u` `(B,)` uniform numbers in
    $(0, 1]$. Return, for each row, the first index $i$ whose cumulative probability
    $F_i = \sum_{j \le i} p_j$ reaches $u \cdot F_V$ — so a token of probability 0 is never
    chosen.
    """
    raise NotImplementedError


def check_inverse_cdf(inverse_cdf) -> None:
    """Compares with `nima.generation.decoding.sample_tokens` driven by a generator that
    returns chosen numbers, including ones that land exactly on a cumulative sum."""

    class Fixed:
        def __init__(self, values: np.ndarray) -> None:
            self.values = values

        def random(self, n: int) -> np.ndarray:
            return self.values[:n]

    probs = np.array([[0.25, 0.25, 0.5, 0.0], [0.0, 0.5, 0.0, 0.5], [0.1, 0.2, 0.3, 0.4]])
    for u in ([0.5, 0.5, 0.3], [1.0, 0.25, 0.999], [1e-9, 1.0, 0.6]):
        u = np.array(u)
        expected = sample_tokens(probs, Fixed(1.0 - u))  # it draws 1 - random()
        close(np.asarray(inverse_cdf(probs, u)), expected, f"the tokens for u = {u.tolist()}")


def top_k_filter(logits: np.ndarray, k: int) -> np.ndarray:
    r"""Top-k, ties included.

    Return a copy of `logits` `(B, V)` where every logit below the row's $k$-th largest is
    $-\infty$ — a logit *equal* to the $k$-th largest stays, so ties keep more than $k$.
    """
    raise NotImplementedError


def check_top_k_filter(top_k_filter) -> None:
    """Compares with `nima.generation.TopK` on rows with ties at the cut-off and k = 1, 2, V."""
    logits = np.array([[1.0, 3.0, 3.0, 0.5, 2.0], [0.0, 0.0, 0.0, 1.0, -1.0]])
    for k in (1, 2, 3, 5):
        expected = TopK(k)(np.zeros((2, 1), dtype=np.int64), logits)
        close(top_k_filter(logits.copy(), k), expected, f"the logits kept by top-{k}")
