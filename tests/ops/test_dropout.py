"""dropout: seeded reproducibility, kept fraction, scale, gradient = the scaled mask, eval mode,
edge values of p, errors."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from strategies import shapes, tensors

import nima
import nima.functional as F
from nima import gradcheck


def test_seeded_masks_are_reproducible() -> None:
    x = nima.ones(64, 32)
    nima.manual_seed(3)
    a = F.dropout(x, 0.3)
    b = F.dropout(x, 0.3)
    nima.manual_seed(3)
    c = F.dropout(x, 0.3)
    np.testing.assert_array_equal(a.data, c.data)
    assert not np.array_equal(a.data, b.data)  # the generator moved on


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_kept_fraction_and_scale(p: float) -> None:
    """Survivors are x / (1 - p); their count is Binomial(n, 1 - p).

    The bound is 6 standard deviations: a correct dropout fails it with probability ~2e-9.
    """
    n = 200_000
    nima.manual_seed(0)
    x = nima.tensor(np.linspace(1, 2, n, dtype=np.float32))
    y = F.dropout(x, p)
    kept = y.data != 0
    assert abs(kept.sum() - n * (1 - p)) <= 6 * math.sqrt(n * p * (1 - p))
    np.testing.assert_allclose(y.data[kept], x.data[kept] / (1 - p), rtol=1e-6)
    assert y.dtype == np.float32
    assert abs(y.data.mean() - x.data.mean()) < 0.05  # inverted dropout keeps the mean


def test_gradient_is_the_scaled_mask() -> None:
    nima.manual_seed(1)
    x = nima.tensor(np.random.default_rng(0).standard_normal((50, 40)), requires_grad=True)
    y = F.dropout(x, 0.25)
    g = np.random.default_rng(1).standard_normal(x.shape)
    y.backward(g)
    mask = (y.data != 0) / 0.75
    np.testing.assert_allclose(x.grad, g * mask, rtol=1e-12)


@given(tensors(shapes(min_dims=1, max_dims=3)), st.sampled_from([0.2, 0.5, 0.8]))
def test_gradcheck_with_a_fixed_seed(x: nima.Tensor, p: float) -> None:
    def fn(t: nima.Tensor) -> nima.Tensor:
        nima.manual_seed(7)  # the same mask on every call, so the function is deterministic
        return F.dropout(t, p)

    assert gradcheck(fn, [x])


def test_eval_and_p_zero_return_the_input_itself() -> None:
    x = nima.randn(3, 4, requires_grad=True)
    assert F.dropout(x, 0.5, training=False) is x
    assert F.dropout(x, 0.0) is x
    assert F.dropout(x, 1.0, training=False) is x


def test_p_one_gives_zeros_and_zero_gradient() -> None:
    x = nima.randn(5, 6, requires_grad=True)
    y = F.dropout(x, 1.0)
    np.testing.assert_array_equal(y.data, np.zeros((5, 6)))
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, np.zeros((5, 6)))
    assert not np.isnan(x.grad).any()


def test_errors() -> None:
    x = nima.ones(2, 3)
    for p in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match=r"dropout: p must be in \[0, 1\], got p=.*\(2, 3\)"):
            F.dropout(x, p)
    with pytest.raises(TypeError, match=r"dropout: needs a floating-point tensor, got int64"):
        F.dropout(nima.tensor([1, 2]), 0.5)
    with pytest.raises(TypeError, match="dropout: expected a Tensor, got list"):
        F.dropout([1.0, 2.0], 0.5)
