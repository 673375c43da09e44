"""The vectorisable exp: accuracy over a dense grid, special values, float64 path, bit cast."""

import math

import numpy as np
import pytest
from numba import njit

from nima.kernels.fastexp import fast_exp, fast_exp_float32, int32_bits_to_float32


@njit(cache=True)
def exp_all(x: np.ndarray) -> np.ndarray:
    out = np.empty_like(x)
    for i in range(x.size):
        out[i] = fast_exp(x[i])
    return out


@njit(cache=True)
def bits_to_float(bits: np.ndarray) -> np.ndarray:
    out = np.empty(bits.size, dtype=np.float32)
    for i in range(bits.size):
        out[i] = int32_bits_to_float32(bits[i])
    return out


def pure_python_exp(x: np.float32) -> np.float32:
    """The float32 algorithm as plain Python (what `NUMBA_DISABLE_JIT=1` runs)."""
    with np.errstate(over="ignore", invalid="ignore"):
        return fast_exp_float32.py_func(x)


def relative_error(got: np.ndarray, x: np.ndarray) -> np.ndarray:
    exact = np.exp(x.astype(np.float64))
    return np.abs(got.astype(np.float64) - exact) / exact


def test_float32_relative_error_on_a_dense_grid() -> None:
    x = np.linspace(-87.0, 0.0, 2_000_001, dtype=np.float32)
    got = exp_all(x)
    assert got.dtype == np.float32
    assert relative_error(got, x).max() < 2.5e-7


def test_float32_relative_error_over_the_whole_domain() -> None:
    x = np.random.default_rng(0).uniform(-87.33, 88.02, 1_000_000).astype(np.float32)
    assert relative_error(exp_all(x), x).max() < 2.5e-7


@pytest.mark.parametrize(
    ("x", "expected"),
    [
        (-np.inf, 0.0),
        (-1e30, 0.0),
        (-88.0, 0.0),
        (-87.4, 0.0),
        (0.0, 1.0),
        (np.inf, np.inf),
        (89.0, np.inf),
        (88.5, np.inf),  # documented: overflows at 88.03, before float32's 88.72
    ],
)
def test_float32_special_values(x: float, expected: float) -> None:
    got = exp_all(np.array([x], dtype=np.float32))[0]
    assert got == expected
    assert pure_python_exp(np.float32(x)) == expected


def test_float32_nan_propagates() -> None:
    assert np.isnan(exp_all(np.array([np.nan], dtype=np.float32))[0])
    assert np.isnan(pure_python_exp(np.float32(np.nan)))


def test_smallest_normal_result_is_not_flushed() -> None:
    x = np.float32(-87.3)
    got = exp_all(np.array([x]))[0]
    assert got > 0 and abs(got / math.exp(x) - 1) < 1e-6


def test_float64_is_math_exp() -> None:
    x = np.array([-745.0, -700.5, -30.25, -1.0, -1e-12, 0.0, 1.5, 700.0, -np.inf])
    np.testing.assert_array_equal(exp_all(x), [math.exp(v) for v in x])


def test_pure_python_path_matches_compiled() -> None:
    x = np.linspace(-87.0, 10.0, 997, dtype=np.float32)
    python = np.array([pure_python_exp(v) for v in x], dtype=np.float32)
    assert python.dtype == np.float32
    np.testing.assert_allclose(python, exp_all(x), rtol=3e-7, atol=0)
    assert abs(fast_exp(np.float32(-1.0)) / math.exp(-1.0) - 1) < 2.5e-7
    assert fast_exp(-1.0) == math.exp(-1.0)


def test_bit_cast() -> None:
    bits = np.array([0x3F800000, 0x00800000, 0x7F800000, 0x40490FDB], dtype=np.int64)
    expected = np.array([1.0, 2.0**-126, np.inf, np.float32(np.pi)], dtype=np.float32)
    np.testing.assert_array_equal(bits_to_float(bits), expected)
    assert int32_bits_to_float32(0x40000000) == 2.0
