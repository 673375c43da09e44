"""The fused tanh-GELU forward and backward against their NumPy references and float64 oracles."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from nima import kernels
from nima.kernels import gelu


def _oracle(x: np.ndarray) -> np.ndarray:
    """0.5 x (1 + tanh(u)), GPT-2's formula as written, in float64."""
    x64 = x.astype(np.float64)
    return 0.5 * x64 * (1 + np.tanh(math.sqrt(2 / math.pi) * (x64 + 0.044715 * x64**3)))


def _oracle_grad(grad: np.ndarray, x: np.ndarray) -> np.ndarray:
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
    tol = {"rtol": 1e-5, "atol": 1e-6} if dtype == np.float32 else {"rtol": 1e-12, "atol": 1e-13}
    y = gelu.gelu_tanh_forward_numba(x)
    assert y.dtype == dtype and y.shape == x.shape
    np.testing.assert_allclose(y, gelu.gelu_tanh_forward_numpy(x), **tol)
    np.testing.assert_allclose(y, _oracle(x), **tol)
    fused = gelu.gelu_tanh_backward_numba(grad, x)
    assert fused.dtype == dtype and fused.shape == x.shape
    np.testing.assert_allclose(fused, gelu.gelu_tanh_backward_numpy(grad, x), **tol)
    np.testing.assert_allclose(fused, _oracle_grad(grad, x), **tol)


def test_far_tails_are_exact() -> None:
    """Far left the gate underflows to 0 (y = -0), far right it is 1 (y = x): no cancellation,
    no inf - inf, on both backends."""
    x = np.array([-1e4, -30.0, 30.0, 1e4], dtype=np.float32)
    for backend in ("numba", "numpy"):
        with kernels.backend(backend):
            np.testing.assert_array_equal(kernels.gelu_tanh_forward(x), [0.0, 0.0, 30.0, 1e4])
            np.testing.assert_array_equal(kernels.gelu_tanh_backward(np.ones_like(x), x),
                                          [0.0, 0.0, 1.0, 1.0])


def test_dispatcher_checks_shapes_and_dtypes() -> None:
    x = np.ones((2, 3), dtype=np.float32)
    with pytest.raises(ValueError, match="gelu_tanh_backward: gradient of shape"):
        kernels.gelu_tanh_backward(np.ones((3, 2), dtype=np.float32), x)
    with pytest.raises(TypeError, match="gelu_tanh_backward"):
        kernels.gelu_tanh_backward(x.astype(np.float64), x)
    half = x.astype(np.float16)  # no kernel for float16: the reference, in float16
    assert kernels.gelu_tanh_forward(half).dtype == np.float16
    with kernels.backend("numpy"):
        np.testing.assert_array_equal(kernels.gelu_tanh_backward(x, x),
                                      gelu.gelu_tanh_backward_numpy(x, x))
