"""`kernels.sum_of_squares`: the numba kernel and its NumPy reference against a float64 oracle."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nima import kernels
from nima.kernels import sumsq


@settings(max_examples=30, deadline=None)
@given(n=st.integers(0, 3000), dtype=st.sampled_from([np.float32, np.float64]),
       seed=st.integers(0, 2**16))
def test_kernel_and_reference_match_a_float64_sum(n: int, dtype: type, seed: int) -> None:
    x = (np.random.default_rng(seed).standard_normal(n) * 100).astype(dtype)
    exact = float(np.sum(x.astype(np.float64) ** 2))
    for impl in (sumsq.sum_of_squares_numba, sumsq.sum_of_squares_numpy):
        assert impl(x) == pytest.approx(exact, rel=1e-12, abs=1e-300)


def test_any_shape_and_strides_and_float16() -> None:
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4).transpose(2, 0, 1)[::2]
    exact = float((x.astype(np.float64) ** 2).sum())
    assert kernels.sum_of_squares(x) == exact
    with kernels.backend("numpy"):
        assert kernels.sum_of_squares(x) == exact
    half = np.array([1.5, -2.0], dtype=np.float16)
    assert kernels.sum_of_squares(half) == 6.25


def test_nan_and_inf_propagate() -> None:
    assert np.isnan(kernels.sum_of_squares(np.array([1.0, np.nan], dtype=np.float32)))
    assert kernels.sum_of_squares(np.array([np.inf, 1.0], dtype=np.float32)) == np.inf


def test_refuses_integers() -> None:
    with pytest.raises(TypeError, match="sum_of_squares: expected a float array, got int64"):
        kernels.sum_of_squares(np.arange(3))
