"""The fused tanh-GELU backward against its NumPy reference and a float64 oracle."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from nima import kernels
from nima.kernels import gelu


def _oracle(grad: np.ndarray, x: np.ndarray) -> np.ndarray:
    """d/dx of 0.5 x (1 + tanh(u)), written out in float64 from scratch."""
    x64, g64 = x.astype(np.float64), grad.astype(np.float64)
    u = math.sqrt(2 / math.pi) * (x64 + 0.044715 * x64**3)
    du = math.sqrt(2 / math.pi) * (1 + 3 * 0.044715 * x64**2)
    return g64 * (0.5 * (1 + np.tanh(u)) + 0.5 * x64 * (1 - np.tanh(u) ** 2) * du)


@given(shape=hnp.array_shapes(min_dims=0, max_dims=3, max_side=40),
       dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2**16),
       transposed=st.booleans())
def test_fused_matches_reference_and_oracle(shape: tuple[int, ...], dtype: type, seed: int,
                                            transposed: bool) -> None:
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    if transposed:
        x = np.ascontiguousarray(x.T).T  # same values, transposed strides
    grad = rng.standard_normal(shape).astype(dtype)
    t = np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x * x * x))
    fused = gelu.gelu_tanh_backward_numba(grad, x, t)
    reference = gelu.gelu_tanh_backward_numpy(grad, x, t)
    assert fused.dtype == dtype and fused.shape == x.shape
    tol = {"rtol": 1e-5, "atol": 1e-5} if dtype == np.float32 else {"rtol": 1e-12, "atol": 1e-12}
    np.testing.assert_allclose(fused, reference, **tol)
    np.testing.assert_allclose(fused, _oracle(grad, x), **tol)


def test_dispatcher_checks_shapes_and_dtypes() -> None:
    x = np.ones((2, 3), dtype=np.float32)
    with pytest.raises(ValueError, match="gelu_tanh_backward"):
        kernels.gelu_tanh_backward(x, x, np.ones((3, 2), dtype=np.float32))
    with pytest.raises(TypeError, match="gelu_tanh_backward"):
        kernels.gelu_tanh_backward(x, x.astype(np.float64), x)
    with kernels.backend("numpy"):
        np.testing.assert_array_equal(kernels.gelu_tanh_backward(x, x, np.tanh(x)),
                                      gelu.gelu_tanh_backward_numpy(x, x, np.tanh(x)))
