"""Cross-entropy: numba kernels vs NumPy references vs a float64 oracle and finite differences."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kernel_arrays import dtypes, layouts, random_array, seeds

from nima import kernels
from nima.kernels.cross_entropy import (
    cross_entropy_backward_numba,
    cross_entropy_backward_numpy,
    cross_entropy_forward_numba,
    cross_entropy_forward_numpy,
)

IGNORE = -100


def oracle_losses(x: np.ndarray, t: np.ndarray, ignore: int, eps: float) -> np.ndarray:
    """PyTorch's smoothed cross-entropy row by row with `math` in float64."""
    losses = []
    for row, target in zip(np.asarray(x, dtype=np.float64), t, strict=True):
        if target == ignore:
            losses.append(0.0)
            continue
        m = max(row)
        lse = m + math.log(math.fsum(math.exp(v - m) for v in row))
        loss = (1 - eps) * (lse - row[target])
        losses.append(loss + eps * (lse - math.fsum(row) / len(row)) if eps else loss)
    return np.array(losses)


def finite_difference_grad(x: np.ndarray, t: np.ndarray, g: np.ndarray, eps: float) -> np.ndarray:
    """d(sum g * losses)/dx by central differences on the float64 oracle."""
    x = x.astype(np.float64)
    grad = np.zeros_like(x)
    h = 1e-6
    for index in np.ndindex(x.shape):
        up, down = x.copy(), x.copy()
        up[index] += h
        down[index] -= h
        diff = oracle_losses(up, t, IGNORE, eps) - oracle_losses(down, t, IGNORE, eps)
        grad[index] = g @ diff / (2 * h)
    return grad


@st.composite
def problems(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    n = draw(st.integers(1, 9))
    c = draw(st.sampled_from([1, 2, 5, 8, 9, 33, 70]))
    dtype, seed = draw(dtypes), draw(seeds)
    x = random_array(seed, (n, c), dtype, draw(st.sampled_from([3.0, 1e4])), draw(layouts))
    rng = np.random.default_rng(seed)
    t = rng.integers(0, c, n)
    t[rng.random(n) < 0.25] = IGNORE
    g = rng.standard_normal(n).astype(dtype)
    return x, t, g, draw(st.sampled_from([0.0, 0.1, 0.3]))


@settings(deadline=None)  # the first example compiles the kernel
@given(problem=problems())
def test_forward_matches_reference_and_oracle(problem: tuple) -> None:
    x, t, _, eps = problem
    losses, lse = cross_entropy_forward_numba(x, t, IGNORE, eps)
    ref_losses, ref_lse = cross_entropy_forward_numpy(x, t, IGNORE, eps)
    assert losses.dtype == lse.dtype == x.dtype and losses.shape == lse.shape == t.shape
    rtol = 1e-5 if x.dtype == np.float32 else 1e-12
    scale = np.abs(x).max()  # the loss is a difference of numbers of this size
    atol = 4 * scale * np.finfo(x.dtype).eps
    np.testing.assert_allclose(losses, ref_losses, rtol=rtol, atol=atol)
    np.testing.assert_allclose(lse, ref_lse, rtol=rtol, atol=atol)
    np.testing.assert_allclose(losses, oracle_losses(x, t, IGNORE, eps), rtol=rtol, atol=atol)
    assert (losses[t == IGNORE] == 0).all()


@settings(deadline=None)  # the first example compiles the kernel
@given(problem=problems())
def test_backward_matches_reference(problem: tuple) -> None:
    x, t, g, eps = problem
    _, lse = cross_entropy_forward_numpy(x, t, IGNORE, eps)
    dx = cross_entropy_backward_numba(x, t, lse, g, IGNORE, eps)
    assert dx.dtype == x.dtype and dx.shape == x.shape
    rtol, atol = (1e-5, 1e-6) if x.dtype == np.float32 else (1e-12, 1e-13)
    np.testing.assert_allclose(dx, cross_entropy_backward_numpy(x, t, lse, g, IGNORE, eps),
                               rtol=rtol, atol=atol)
    assert (dx[t == IGNORE] == 0).all()
    np.testing.assert_allclose(dx.sum(axis=1), 0, atol=1e-5 if x.dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("eps", [0.0, 0.2])
def test_reference_gradient_matches_finite_differences(eps: float) -> None:
    x = random_array(3, (4, 6), np.float64)
    t = np.array([0, 5, IGNORE, 2])
    g = np.array([0.5, -1.0, 2.0, 0.25])
    _, lse = cross_entropy_forward_numpy(x, t, IGNORE, eps)
    analytic = cross_entropy_backward_numpy(x, t, lse, g, IGNORE, eps)
    np.testing.assert_allclose(analytic, finite_difference_grad(x, t, g, eps), atol=1e-7)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_masked_and_ignored_rows(dtype: type, backend: str) -> None:
    x = random_array(5, (5, 7), dtype)
    x[0] = -np.inf  # fully masked, valid target: impossible, loss +inf
    x[1] = -np.inf  # fully masked, ignored
    x[2, ::2] = -np.inf  # partly masked, target among the live entries
    x[3, 4] = -np.inf  # the target itself masked: loss +inf, gradient finite
    t = np.array([3, IGNORE, 1, 4, 6])
    g = np.ones(5, dtype=dtype)
    with kernels.backend(backend):
        losses, lse = kernels.cross_entropy_forward(x, t)
        dx = kernels.cross_entropy_backward(x, t, lse, g)
    assert np.isneginf(lse[:2]).all() and np.isfinite(lse[2:]).all()
    assert losses[0] == np.inf and losses[1] == 0 and losses[3] == np.inf
    assert np.isfinite(losses[[2, 4]]).all()
    assert not np.isnan(dx).any()
    assert (dx[:2] == 0).all()
    assert (dx[2, ::2] == 0).all()
    np.testing.assert_allclose(dx[2].sum(), 0, atol=1e-6)
    assert dx[3, 4] == -1  # p = 0 at the masked target
    np.testing.assert_allclose(losses[2], oracle_losses(x[2:3], t[2:3], IGNORE, 0.0)[0], rtol=1e-6)


def test_label_smoothing_with_a_masked_logit_is_infinite() -> None:
    x = np.array([[0.0, -np.inf, 1.0]], dtype=np.float32)
    for forward in (cross_entropy_forward_numba, cross_entropy_forward_numpy):
        assert forward(x, np.array([0]), IGNORE, 0.0)[0][0] < np.inf
        assert forward(x, np.array([0]), IGNORE, 0.1)[0][0] == np.inf


def test_custom_ignore_index_inside_the_class_range() -> None:
    x = random_array(2, (3, 4), np.float32)
    t = np.array([2, 1, 2])
    losses, lse = kernels.cross_entropy_forward(x, t, ignore_index=2)
    assert losses[0] == losses[2] == 0 and losses[1] > 0
    dx = kernels.cross_entropy_backward(x, t, lse, np.ones(3, np.float32), ignore_index=2)
    assert (dx[[0, 2]] == 0).all() and (dx[1] != 0).all()


@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize("bad", [5, 7, -1, -101])
def test_out_of_range_targets_raise(backend: str, bad: int) -> None:
    x = np.zeros((3, 5), dtype=np.float32)
    t = np.array([0, bad, IGNORE])
    with kernels.backend(backend):
        with pytest.raises(ValueError, match=rf"cross_entropy: target {bad} .* 5 classes"):
            kernels.cross_entropy_forward(x, t)
        with pytest.raises(ValueError, match=rf"cross_entropy: target {bad}"):
            kernels.cross_entropy_backward(x, t, np.zeros(3, np.float32), np.ones(3, np.float32))


def test_shape_and_type_errors() -> None:
    with pytest.raises(ValueError, match=r"cross_entropy: .*\(2, 3, 4\)"):
        kernels.cross_entropy_forward(np.zeros((2, 3, 4)), np.zeros(2, np.int64))
    with pytest.raises(ValueError, match=r"cross_entropy: .*\(3,\)"):
        kernels.cross_entropy_forward(np.zeros((2, 4)), np.zeros(3, np.int64))
    with pytest.raises(TypeError, match="targets must be integers"):
        kernels.cross_entropy_forward(np.zeros((2, 4)), np.zeros(2))
    with pytest.raises(ValueError, match="cross_entropy_backward: lse"):
        kernels.cross_entropy_backward(np.zeros((2, 4)), np.zeros(2, np.int64), np.zeros(3),
                                       np.zeros(2))


def test_int32_targets_and_float64_upstream_gradient_are_accepted() -> None:
    x = random_array(4, (3, 4), np.float32)
    t = np.array([0, 1, 3], dtype=np.int32)
    _, lse = kernels.cross_entropy_forward(x, t)
    dx = kernels.cross_entropy_backward(x, t, lse, np.full(3, 1 / 3))  # float64 g
    assert dx.dtype == np.float32
    with kernels.backend("numpy"):
        np.testing.assert_allclose(dx, kernels.cross_entropy_backward(x, t, lse, np.full(3, 1 / 3)),
                                   rtol=1e-5, atol=1e-7)
