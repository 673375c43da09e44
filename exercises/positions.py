r"""Exercises of the Positions page (docs/positions.md)."""

import numpy as np

from exercises import close
from nima.nn.positional import alibi_slopes as nima_alibi_slopes
from nima.nn.positional import sinusoidal_table as nima_sinusoidal_table


def sinusoidal_table(T: int, d: int) -> np.ndarray:
    r"""The sinusoidal table.

    Return the `(T, d)` table with $PE_{p,2i} = \sin(p\,\omega_i)$ and
    $PE_{p,2i+1} = \cos(p\,\omega_i)$, $\omega_i = 10000^{-2i/d}$, for an even `d`: sines in the
    even columns, cosines in the odd ones.
    """
    raise NotImplementedError


def check_sinusoidal_table(sinusoidal_table) -> None:
    """Compares with `nima.nn.positional.sinusoidal_table` for (T, d) = (10, 8) and (50, 32)."""
    for T, d in [(10, 8), (50, 32)]:
        close(sinusoidal_table(T, d), nima_sinusoidal_table(T, d), f"the table ({T}, {d})")


def shift_matrix(k: int, d: int) -> np.ndarray:
    r"""The linear map that moves every position k steps on.

    Return the `(d, d)` matrix $M_k$ with $PE_{p+k} = M_k\,PE_p$ for every position $p$: block
    diagonal, one $2\times2$ rotation by $k\,\omega_i$ per column pair (see the page). The same
    matrix for all $p$ is what lets attention learn "three tokens back" with one linear map.
    """
    raise NotImplementedError


def check_shift_matrix(shift_matrix) -> None:
    """Applies $M_k$ to every row of a 64-position table and compares with the table shifted by
    $k$, for k = 1, 3 and 10."""
    d = 16
    table = nima_sinusoidal_table(80, d)
    for k in (1, 3, 10):
        M = shift_matrix(k, d)
        close(table[:64] @ np.asarray(M).T, table[k:64 + k], f"M_{k} PE_p against PE_(p+{k})",
              atol=1e-10)


def alibi_slopes(n: int) -> np.ndarray:
    r"""ALiBi's slopes.

    Return the `(n,)` slopes: for a power of two, $m_h = 2^{-8h/n}$, $h = 1 \dots n$; otherwise
    the slopes of the largest power of two $n_0 < n$, then every other slope of the sequence
    for $2 n_0$ heads (the ones the $n_0$ sequence skips), until there are $n$.
    """
    raise NotImplementedError


def check_alibi_slopes(alibi_slopes) -> None:
    """Compares with `nima.nn.positional.alibi_slopes` for 1 to 12 heads and 16."""
    for n in [*range(1, 13), 16]:
        close(alibi_slopes(n), nima_alibi_slopes(n), f"the slopes of {n} heads")
