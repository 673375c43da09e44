"""Softmax and log-softmax: numba kernels vs NumPy references vs a float64 Jacobian oracle."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kernel_arrays import dtypes, in_layout, layouts, random_array, seeds, tolerance

from nima import kernels
from nima.kernels.rows import max_ignoring_nan, row_max
from nima.kernels.softmax import (
    log_softmax_backward_numba,
    log_softmax_backward_numpy,
    log_softmax_forward_numba,
    log_softmax_forward_numpy,
    softmax_backward_numba,
    softmax_backward_numpy,
    softmax_forward_numba,
    softmax_forward_numpy,
)

# Widths: 1, around the SIMD widths of the vectorised row loops (8 and 16 lanes, unrolled 4x),
# and odd sizes past them.
row_shapes = st.lists(st.integers(1, 4), min_size=0, max_size=2).flatmap(
    lambda lead: st.sampled_from([1, 2, 7, 8, 9, 17, 33, 64, 65, 100]).map(lambda n: (*lead, n))
)


def oracle_softmax(x: np.ndarray) -> np.ndarray:
    """Row by row with `math`, in float64: exp(x - max) / fsum; zeros for a fully masked row."""
    rows = np.asarray(x, dtype=np.float64).reshape(-1, x.shape[-1])
    out = np.zeros_like(rows)
    for i, row in enumerate(rows):
        m = max(row, default=-math.inf)
        if m == -math.inf:
            continue
        e = [math.exp(v - m) for v in row]
        s = math.fsum(e)
        out[i] = [v / s for v in e]
    return out.reshape(x.shape)


def oracle_log_softmax(x: np.ndarray) -> np.ndarray:
    """x - (max + log fsum exp(x - max)) row by row in float64; -inf for a fully masked row."""
    rows = np.asarray(x, dtype=np.float64).reshape(-1, x.shape[-1])
    out = np.full_like(rows, -np.inf)
    for i, row in enumerate(rows):
        m = max(row, default=-math.inf)
        if m > -math.inf:
            out[i] = row - (m + math.log(math.fsum(math.exp(v - m) for v in row)))
    return out.reshape(x.shape)


def oracle_softmax_vjp(y: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """dy @ J with the explicit Jacobian J = diag(y) - y y^T, per row."""
    y2 = y.reshape(-1, y.shape[-1]).astype(np.float64)
    dy2 = dy.reshape(-1, y.shape[-1]).astype(np.float64)
    out = [g @ (np.diag(p) - np.outer(p, p)) for p, g in zip(y2, dy2, strict=True)]
    return np.array(out).reshape(y.shape)


def oracle_log_softmax_vjp(y: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """dy @ J with J = I - 1 p^T (p = exp(y)), per row."""
    y2, dy2 = y.reshape(-1, y.shape[-1]).astype(np.float64), dy.reshape(-1, y.shape[-1])
    n = y.shape[-1]
    out = [g @ (np.eye(n) - np.outer(np.ones(n), np.exp(p))) for p, g in zip(y2, dy2, strict=True)]
    return np.array(out).reshape(y.shape)


@settings(deadline=None)  # the first example compiles the kernel
@given(shape=row_shapes, dtype=dtypes, layout=layouts, seed=seeds, scale=st.sampled_from([3, 1e4]))
def test_softmax_forward(
    shape: tuple[int, ...], dtype: type, layout: str, seed: int, scale: float
) -> None:
    x = random_array(seed, shape, dtype, scale, layout)
    y = softmax_forward_numba(x)
    assert y.dtype == dtype and y.shape == shape
    np.testing.assert_allclose(y, softmax_forward_numpy(x), **tolerance(dtype))
    np.testing.assert_allclose(y, oracle_softmax(x), **tolerance(dtype))
    np.testing.assert_allclose(y.sum(axis=-1), 1, rtol=1e-5 if dtype == np.float32 else 1e-12)


@settings(deadline=None)  # the first example compiles the kernel
@given(shape=row_shapes, dtype=dtypes, layout=layouts, seed=seeds)
def test_softmax_backward(shape: tuple[int, ...], dtype: type, layout: str, seed: int) -> None:
    y = in_layout(softmax_forward_numpy(random_array(seed, shape, dtype)), layout)
    dy = random_array(seed + 1, shape, dtype, 1.0, layout)
    dx = softmax_backward_numba(y, dy)
    assert dx.dtype == dtype and dx.shape == shape
    np.testing.assert_allclose(dx, softmax_backward_numpy(y, dy), **tolerance(dtype))
    np.testing.assert_allclose(dx, oracle_softmax_vjp(y, dy), **tolerance(dtype))


@settings(deadline=None)  # the first example compiles the kernel
@given(shape=row_shapes, dtype=dtypes, layout=layouts, seed=seeds, scale=st.sampled_from([3, 1e4]))
def test_log_softmax_forward(
    shape: tuple[int, ...], dtype: type, layout: str, seed: int, scale: float
) -> None:
    x = random_array(seed, shape, dtype, scale, layout)
    y = log_softmax_forward_numba(x)
    assert y.dtype == dtype and y.shape == shape
    tol = tolerance(dtype)
    atol = tol["atol"] * max(1.0, scale)  # x - lse carries the absolute error of x's scale
    np.testing.assert_allclose(y, log_softmax_forward_numpy(x), rtol=tol["rtol"], atol=atol)
    np.testing.assert_allclose(y, oracle_log_softmax(x), rtol=tol["rtol"], atol=atol)


@settings(deadline=None)  # the first example compiles the kernel
@given(shape=row_shapes, dtype=dtypes, layout=layouts, seed=seeds)
def test_log_softmax_backward(shape: tuple[int, ...], dtype: type, layout: str, seed: int) -> None:
    y = in_layout(log_softmax_forward_numpy(random_array(seed, shape, dtype)), layout)
    dy = random_array(seed + 1, shape, dtype, 1.0, layout)
    dx = log_softmax_backward_numba(y, dy)
    assert dx.dtype == dtype and dx.shape == shape
    tol = {"rtol": 1e-4, "atol": 1e-5} if dtype == np.float32 else tolerance(dtype)
    np.testing.assert_allclose(dx, log_softmax_backward_numpy(y, dy), **tol)
    np.testing.assert_allclose(dx, oracle_log_softmax_vjp(y, dy), **tol)


def masked_logits(dtype: type) -> np.ndarray:
    """(4, 2, 9) logits with -inf entries; rows 0, 3 of the first block are fully masked."""
    x = random_array(7, (4, 2, 9), dtype)
    x[0, 0] = -np.inf
    x[3, 0] = -np.inf
    x[1, :, ::3] = -np.inf
    x[2, 1, :8] = -np.inf  # one entry left
    return x


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_masked_rows(dtype: type, backend: str) -> None:
    x = masked_logits(dtype)
    masked = np.isneginf(x)
    full = masked.all(axis=-1)
    dy = random_array(8, x.shape, dtype)
    with kernels.backend(backend), np.errstate(all="raise"):
        y = kernels.softmax_forward(x)
        dx = kernels.softmax_backward(y, dy)
        log_y = kernels.log_softmax_forward(x)
        log_dx = kernels.log_softmax_backward(log_y, dy)
    assert not np.isnan(y).any() and not np.isnan(dx).any() and not np.isnan(log_dx).any()
    assert (y[masked] == 0).all() and (dx[masked] == 0).all()
    assert (y[full] == 0).all() and (dx[full] == 0).all()
    np.testing.assert_allclose(y[~full].sum(axis=-1), 1, rtol=1e-6)
    assert y[2, 1, 8] == 1
    assert np.isneginf(log_y[masked]).all() and np.isfinite(log_y[~masked]).all()
    np.testing.assert_allclose(log_y, oracle_log_softmax(x), **tolerance(dtype))
    assert (log_dx[full] == 0).all()
    np.testing.assert_allclose(y, oracle_softmax(x), **tolerance(dtype))
    partial = ~full
    np.testing.assert_allclose(
        log_dx[partial], oracle_log_softmax_vjp(log_y[partial], dy[partial]), **tolerance(dtype)
    )


def test_one_huge_logit_takes_all_the_mass() -> None:
    x = np.array([[1e4, -1e4, 0.0, 9990.0]], dtype=np.float32)
    y = softmax_forward_numba(x)
    tail = math.exp(-10) / (1 + math.exp(-10))
    np.testing.assert_allclose(y, [[1 - tail, 0, 0, tail]], rtol=1e-6, atol=0)
    np.testing.assert_allclose(log_softmax_forward_numba(x)[0, 1], -2e4, rtol=1e-6)


def test_nan_input_gives_a_nan_row() -> None:
    x = np.array([[0.0, np.nan, 1.0], [0.0, 1.0, 2.0]], dtype=np.float32)
    y = softmax_forward_numba(x)
    assert np.isnan(y[0]).all() and np.isfinite(y[1]).all()


def test_empty_shapes() -> None:
    for shape in [(0,), (3, 0), (0, 5), (2, 0, 3)]:
        x = np.zeros(shape, dtype=np.float32)
        assert softmax_forward_numba(x).shape == shape
        assert log_softmax_backward_numba(x, x).shape == shape


def test_dispatcher_errors() -> None:
    with pytest.raises(TypeError, match=r"softmax_forward.*int64"):
        kernels.softmax_forward(np.arange(3))
    with pytest.raises(TypeError, match=r"softmax_backward.*float32, float64"):
        kernels.softmax_backward(np.zeros(3, np.float32), np.zeros(3))
    with pytest.raises(ValueError, match=r"log_softmax_backward.*\(2, 3\).*\(3, 2\)"):
        kernels.log_softmax_backward(np.zeros((2, 3)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"softmax_forward.*scalar"):
        kernels.softmax_forward(np.float64(1.0))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [0, 1, 15, 16, 17, 64, 65, 1000])
def test_row_max_skips_nans(dtype: type, n: int) -> None:
    """`row_max` (vectorised `llvm.maxnum`) and its pure-Python twin agree with `np.nanmax`, except
    that a row of only NaN and -inf gives NaN."""
    x = random_array(n, (n,), dtype)
    for row in (x, np.where(np.arange(n) % 3 == 0, np.nan, x).astype(dtype)):
        all_nan = row.size and np.isnan(row).all()
        expected = np.nan if all_nan else np.nanmax(row, initial=-np.inf)
        np.testing.assert_equal(row_max(row), expected)
        np.testing.assert_equal(row_max.py_func(row), expected)
    assert row_max(np.full(n, -np.inf, dtype)) == -np.inf  # fully masked (or empty)
    if n:  # all NaN, or NaN among -inf: NaN, not mistaken for a masked row
        assert np.isnan(row_max(np.full(n, np.nan, dtype)))
        assert np.isnan(row_max(np.where(np.arange(n) == n // 2, np.nan, -np.inf).astype(dtype)))
    got = row_max(np.array([-np.inf, np.nan, 2.0, np.inf], dtype))
    assert got == np.inf and max_ignoring_nan(dtype(np.nan), dtype(1)) == 1
