"""Solutions of exercises/positions.py."""

import math

import numpy as np


def sinusoidal_table(T: int, d: int) -> np.ndarray:
    omega = 10000.0 ** (-np.arange(0, d, 2) / d)  # (d/2,): one frequency per column pair
    angles = np.arange(T)[:, None] * omega  # (T, d/2)
    table = np.empty((T, d))
    table[:, 0::2], table[:, 1::2] = np.sin(angles), np.cos(angles)
    return table


def _sinusoidal_halves(T: int, d: int) -> np.ndarray:
    """All sines first, then all cosines: the right numbers in the wrong columns."""
    omega = 10000.0 ** (-np.arange(0, d, 2) / d)
    angles = np.arange(T)[:, None] * omega
    return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)


def _sinusoidal_wrong_frequency(T: int, d: int) -> np.ndarray:
    """Uses i / d instead of 2i / d in the exponent."""
    omega = 10000.0 ** (-np.arange(d // 2) / d)
    angles = np.arange(T)[:, None] * omega
    table = np.empty((T, d))
    table[:, 0::2], table[:, 1::2] = np.sin(angles), np.cos(angles)
    return table


def shift_matrix(k: int, d: int) -> np.ndarray:
    M = np.zeros((d, d))
    for i, w in enumerate(10000.0 ** (-np.arange(0, d, 2) / d)):
        c, s = math.cos(k * w), math.sin(k * w)
        # sin(a + b) = sin a cos b + cos a sin b;  cos(a + b) = cos a cos b - sin a sin b
        M[2 * i:2 * i + 2, 2 * i:2 * i + 2] = [[c, s], [-s, c]]
    return M


def _shift_matrix_transposed(k: int, d: int) -> np.ndarray:
    """Rotates the wrong way: the inverse shift, p - k."""
    return shift_matrix(k, d).T


def alibi_slopes(n: int) -> np.ndarray:
    def geometric(m: int) -> list[float]:
        return [2.0 ** (-8.0 * h / m) for h in range(1, m + 1)]

    n0 = 2 ** int(math.log2(n))
    return np.array(geometric(n0) + geometric(2 * n0)[0::2][:n - n0])


WRONG = {
    "sinusoidal_table": [_sinusoidal_halves, _sinusoidal_wrong_frequency],
    "shift_matrix": [_shift_matrix_transposed],
    "alibi_slopes": [lambda n: np.array([2.0 ** (-8.0 * h / n) for h in range(1, n + 1)]),
                     lambda n: np.array([2.0 ** (-8.0 * h / n) for h in range(n)])],
}
