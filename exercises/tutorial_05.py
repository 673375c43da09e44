r"""Exercises of tutorial 05, positional encodings compared."""

import numpy as np

import nima
from exercises import close
from nima.nn import ALiBi, RotaryEmbedding


def rope(x: np.ndarray, offset: int, base: float = 10000.0) -> np.ndarray:
    r"""Rotate queries or keys.

    `x` is `(T, d)` (even $d$), the rows at positions `offset .. offset + T - 1`. Pair
    dimension $i$ with $i + d/2$ (the rotate-half layout) and turn each pair at position $p$ by
    $p\,\omega_i$, $\omega_i = \text{base}^{-2i/d}$:
    $(x_1, x_2) \mapsto (x_1 \cos - x_2 \sin,\; x_1 \sin + x_2 \cos)$.
    """
    raise NotImplementedError


def check_rope(rope) -> None:
    """Compares with `nima.nn.RotaryEmbedding` at offsets 0 and 5, head sizes 4 and 8."""
    rng = np.random.default_rng(0)
    for d, offset in [(4, 0), (8, 5)]:
        x = rng.standard_normal((6, d))
        expected = RotaryEmbedding(d, 32)(nima.tensor(x), offset).data
        close(rope(x.copy(), offset), expected, f"the rotation, d={d}, offset={offset}")


def alibi_bias(slopes: np.ndarray, T: int) -> np.ndarray:
    r"""ALiBi's bias.

    Return `(n_head, T, T)`: head $h$ adds $-m_h (i - j)$ to the score of query $i$ and key
    $j \le i$. (Above the diagonal the causal mask hides the keys; fill it with the same
    formula.)
    """
    raise NotImplementedError


def check_alibi_bias(alibi_bias) -> None:
    """Compares the lower triangle with `nima.nn.ALiBi(n).bias(T, T)` for 4 and 6 heads."""
    for n, T in [(4, 5), (6, 7)]:
        layer = ALiBi(n)
        expected = layer.bias(T, T)
        got = np.asarray(alibi_bias(layer.slopes.copy(), T))
        keep = np.tril(np.ones((T, T), dtype=bool))
        close(np.where(keep, got, 0.0), np.where(keep, expected, 0.0),
              f"the bias of {n} heads over {T} positions")
