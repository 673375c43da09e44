"""Layer norm and RMSNorm: numba kernels vs NumPy references vs a float64 row-by-row oracle."""

import math
import os
import subprocess
import sys
from pathlib import Path

import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kernel_arrays import dtypes, in_layout, layouts, random_array, seeds

from nima import kernels
from nima.kernels import layernorm as ln

# Widths: 1, around the vector width (8 float32 lanes) and odd sizes past it.
row_shapes = st.lists(st.integers(1, 4), min_size=0, max_size=2).flatmap(
    lambda lead: st.sampled_from([1, 2, 7, 8, 9, 17, 33, 100]).map(lambda n: (*lead, n))
)
affines = st.sampled_from(["weight and bias", "weight", "none"])


# ------------------------------------------------------------------------------ oracles
def oracle_forward(x: np.ndarray, w: np.ndarray | None, b: np.ndarray | None, eps: float,
                   centered: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row by row in float64 with `math.fsum`: (y, mean, rstd)."""
    rows = np.asarray(x, dtype=np.float64).reshape(-1, x.shape[-1])
    n = rows.shape[1]
    y, means, rstds = np.empty_like(rows), [], []
    for i, r in enumerate(rows):
        mean = math.fsum(r) / n if centered else 0.0
        rstd = 1 / math.sqrt(math.fsum((v - mean) ** 2 for v in r) / n + eps)
        y[i] = (r - mean) * rstd
        means.append(mean)
        rstds.append(rstd)
    y = y * (1.0 if w is None else w.astype(np.float64)) + (0.0 if b is None else b)
    lead = x.shape[:-1]
    return y.reshape(x.shape), np.reshape(means, lead), np.reshape(rstds, lead)


def oracle_backward(dy: np.ndarray, x: np.ndarray, w: np.ndarray | None, eps: float,
                    centered: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""dx = J^T (dy * w) with the explicit Jacobian of $\hat x$ per row, in float64:
    $\partial \hat x_j / \partial x_k = \text{rstd}(\delta_{jk} - [\text{centred}]/C -
    \hat x_j \hat x_k / C)$; dw, db as column sums."""
    c = x.shape[-1]
    rows = np.asarray(x, dtype=np.float64).reshape(-1, c)
    dys = np.asarray(dy, dtype=np.float64).reshape(-1, c)
    wf = np.ones(c) if w is None else w.astype(np.float64)
    xhat, _, rstd = oracle_forward(rows, None, None, eps, centered)
    dx = np.empty_like(rows)
    for i in range(len(rows)):
        jac = rstd[i] * (np.eye(c) - float(centered) / c - np.outer(xhat[i], xhat[i]) / c)
        dx[i] = jac.T @ (dys[i] * wf)
    return dx.reshape(x.shape), (dys * xhat).sum(axis=0), dys.sum(axis=0)


def close(dtype: type, offset: float = 0.0, terms: int = 1, scale: float = 1.0
          ) -> dict[str, float]:
    """Tolerances: a few ulp of the row's accumulations, plus the float32 limit on offset rows.

    The mean of values near `offset` cannot be better than about ulp(offset), which moves
    $\\hat x$ by ulp(offset) / sigma (sigma = 3 here); sums over `terms` rows add up errors;
    `scale` is the size of the result ($\\bar x$ carries a factor rstd, up to
    $1/\\sqrt\\epsilon$ for a one-column row).
    """
    ulp = np.finfo(dtype).eps
    atol = (1e-5 if dtype == np.float32 else 1e-12) + 8 * ulp * offset
    return {"rtol": 1e-4 if dtype == np.float32 else 1e-10,
            "atol": atol * math.sqrt(terms) * max(1.0, scale)}


def draw_case(seed: int, shape: tuple[int, ...], dtype: type, layout: str, offset: float,
              affine: str) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    x = in_layout((random_array(seed, shape, np.float64) + offset).astype(dtype), layout)
    w = random_array(seed + 1, shape[-1:], dtype, 1.0) if affine != "none" else None
    b = random_array(seed + 2, shape[-1:], dtype, 1.0) if affine == "weight and bias" else None
    return x, w, b


# ------------------------------------------------------------------------------ layer norm
@settings(deadline=None)  # the first example compiles the kernel
@given(shape=row_shapes, dtype=dtypes, layout=layouts, seed=seeds,
       offset=st.sampled_from([0.0, 1e4]), affine=affines)
def test_layer_norm_forward(shape: tuple[int, ...], dtype: type, layout: str, seed: int,
                            offset: float, affine: str) -> None:
    x, w, b = draw_case(seed, shape, dtype, layout, offset, affine)
    y, mean, rstd = ln.layer_norm_forward_numba(x, w, b, 1e-5)
    assert y.dtype == mean.dtype == rstd.dtype == dtype
    assert y.shape == shape and mean.shape == rstd.shape == shape[:-1]
    # ulp(offset) / sigma assumes sigma = 3; a short row can spread much less than that
    sigma = float(np.std(x.astype(np.float64), axis=-1).min()) if x.size else 3.0
    tol = close(dtype, offset, scale=3.0 / max(sigma, 1e-3))
    ref = ln.layer_norm_forward_numpy(x, w, b, 1e-5)
    want = oracle_forward(x, w, b, 1e-5, True)
    for got, r, o in zip((y, mean, rstd), ref, want, strict=True):
        np.testing.assert_allclose(got, r, **tol)
        np.testing.assert_allclose(got, o, **tol)
        np.testing.assert_allclose(r, o, **tol)


@settings(deadline=None)
@given(shape=row_shapes, dtype=dtypes, layout=layouts, seed=seeds,
       offset=st.sampled_from([0.0, 1e4]), affine=affines)
def test_layer_norm_backward(shape: tuple[int, ...], dtype: type, layout: str, seed: int,
                             offset: float, affine: str) -> None:
    x, w, _ = draw_case(seed, shape, dtype, layout, offset, affine)
    dy = random_array(seed + 3, shape, dtype, 1.0, layout)
    _, mean, rstd = ln.layer_norm_forward_numpy(x, w, None, 1e-5)
    got = ln.layer_norm_backward_numba(dy, x, w, mean, rstd)
    assert [g.dtype for g in got] == [dtype] * 3
    assert [g.shape for g in got] == [shape, shape[-1:], shape[-1:]]
    ref = ln.layer_norm_backward_numpy(dy, x, w, mean, rstd)
    want = oracle_backward(dy, x, w, 1e-5, True)
    rows = math.prod(shape[:-1])
    # every gradient carries x-hat's error, ulp(offset) / sigma, as the forward test says
    sigma = float(np.std(x.astype(np.float64), axis=-1).min()) if x.size else 3.0
    spread = 3.0 / max(sigma, 1e-3)
    for g, r, o, terms, scale in zip(got, ref, want, (1, rows, rows), (rstd.max(), 1, 1),
                                     strict=True):
        tol = close(dtype, offset, terms, scale * spread)
        np.testing.assert_allclose(g, r, **tol)
        np.testing.assert_allclose(g, o, **tol)
        np.testing.assert_allclose(r, o, **tol)


# ------------------------------------------------------------------------------ RMSNorm
@settings(deadline=None)
@given(shape=row_shapes, dtype=dtypes, layout=layouts, seed=seeds, weighted=st.booleans())
def test_rms_norm_forward(shape: tuple[int, ...], dtype: type, layout: str, seed: int,
                          weighted: bool) -> None:
    x, w, _ = draw_case(seed, shape, dtype, layout, 0.0, "weight" if weighted else "none")
    y, rstd = ln.rms_norm_forward_numba(x, w, 1e-6)
    assert y.dtype == rstd.dtype == dtype and y.shape == shape and rstd.shape == shape[:-1]
    ref = ln.rms_norm_forward_numpy(x, w, 1e-6)
    want = oracle_forward(x, w, None, 1e-6, False)
    for got, r, o in zip((y, rstd), ref, (want[0], want[2]), strict=True):
        np.testing.assert_allclose(got, r, **close(dtype))
        np.testing.assert_allclose(got, o, **close(dtype))
        np.testing.assert_allclose(r, o, **close(dtype))


@settings(deadline=None)
@given(shape=row_shapes, dtype=dtypes, layout=layouts, seed=seeds, weighted=st.booleans())
def test_rms_norm_backward(shape: tuple[int, ...], dtype: type, layout: str, seed: int,
                           weighted: bool) -> None:
    x, w, _ = draw_case(seed, shape, dtype, layout, 0.0, "weight" if weighted else "none")
    dy = random_array(seed + 3, shape, dtype, 1.0, layout)
    _, rstd = ln.rms_norm_forward_numpy(x, w, 1e-6)
    got = ln.rms_norm_backward_numba(dy, x, w, rstd)
    assert [g.dtype for g in got] == [dtype] * 2 and [g.shape for g in got] == [shape, shape[-1:]]
    ref = ln.rms_norm_backward_numpy(dy, x, w, rstd)
    want = oracle_backward(dy, x, w, 1e-6, False)
    rows = math.prod(shape[:-1])
    for g, r, o, terms, scale in zip(got, ref, want[:2], (1, rows), (rstd.max(), 1),
                                     strict=True):
        tol = close(dtype, 0.0, terms, scale)
        np.testing.assert_allclose(g, r, **tol)
        np.testing.assert_allclose(g, o, **tol)
        np.testing.assert_allclose(r, o, **tol)


# ------------------------------------------------------------------------------ special cases
@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_one_column_gives_the_bias_and_no_input_gradient(backend: str) -> None:
    x = np.array([[3.0], [-7.0]], dtype=np.float32)
    b = np.array([0.5], dtype=np.float32)
    with kernels.backend(backend):
        y, mean, rstd = kernels.layer_norm_forward(x, np.array([2.0], np.float32), b, 1e-5)
        dx, dw, db = kernels.layer_norm_backward(np.ones_like(x), x, b * 4, mean, rstd)
    np.testing.assert_array_equal(y, [[0.5], [0.5]])  # x - mean = 0 exactly
    np.testing.assert_allclose(rstd, [1 / math.sqrt(1e-5)] * 2, rtol=1e-6)
    np.testing.assert_array_equal(dx, [[0], [0]])
    np.testing.assert_array_equal(dw, [0])
    np.testing.assert_array_equal(db, [2])


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_huge_offset_float32_known_answer(backend: str) -> None:
    """mean(x^2) - mean(x)^2 would lose every digit here (x^2 ~ 1e8, ulp 8)."""
    x = np.float32(1e4) + np.array([[1.0, 2.0, 3.0]], dtype=np.float32)
    with kernels.backend(backend):
        y, mean, rstd = kernels.layer_norm_forward(x, eps=0.0)
    np.testing.assert_allclose(y, [[-math.sqrt(1.5), 0, math.sqrt(1.5)]], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(rstd, [math.sqrt(1.5)], rtol=1e-6)
    assert mean[0] == np.float32(10002.0)


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_none_parameters_mean_ones_and_zeros(backend: str) -> None:
    x = random_array(0, (5, 9), np.float64)
    dy = random_array(1, (5, 9), np.float64)
    ones, zeros = np.ones(9), np.zeros(9)
    with kernels.backend(backend):
        plain = kernels.layer_norm_forward(x)
        affine = kernels.layer_norm_forward(x, ones, zeros)
        grads = kernels.layer_norm_backward(dy, x, None, *plain[1:])
        grads_affine = kernels.layer_norm_backward(dy, x, ones, *plain[1:])
        rms, rms_affine = kernels.rms_norm_forward(x), kernels.rms_norm_forward(x, ones)
        rms_grads = kernels.rms_norm_backward(dy, x, None, rms[1])
        rms_grads_affine = kernels.rms_norm_backward(dy, x, ones, rms[1])
    pairs = [*zip(plain, affine, strict=True), *zip(grads, grads_affine, strict=True),
             *zip(rms, rms_affine, strict=True), *zip(rms_grads, rms_grads_affine, strict=True)]
    for a, b in pairs:
        np.testing.assert_array_equal(a, b)


def test_empty_rows() -> None:
    for backend in ("numba", "numpy"):
        with kernels.backend(backend):
            x = np.zeros((0, 3, 5), np.float32)
            y, mean, rstd = kernels.layer_norm_forward(x)
            assert y.shape == x.shape and mean.shape == rstd.shape == (0, 3)
            dx, dw, db = kernels.layer_norm_backward(x, x, None, mean, rstd)
            assert dx.shape == x.shape
            np.testing.assert_array_equal(dw, np.zeros(5))
            np.testing.assert_array_equal(db, np.zeros(5))


def test_backward_sums_are_reproducible_whatever_the_thread_count() -> None:
    """The row blocks depend only on the number of rows, so dw, db are bit-for-bit equal."""
    x = random_array(0, (1000, 37), np.float32)
    dy = random_array(1, (1000, 37), np.float32)
    w = random_array(2, (37,), np.float32)
    _, mean, rstd = ln.layer_norm_forward_numba(x, w, None, 1e-5)
    first = ln.layer_norm_backward_numba(dy, x, w, mean, rstd)
    threads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        single = ln.layer_norm_backward_numba(dy, x, w, mean, rstd)
    finally:
        numba.set_num_threads(threads)
    again = ln.layer_norm_backward_numba(dy, x, w, mean, rstd)
    for a, b, c in zip(first, single, again, strict=True):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)


@pytest.mark.skipif(numba.config.DISABLE_JIT, reason="needs compiled kernels")
def test_float32_stays_float32() -> None:
    """The row function's float32 specialisation returns float32 (mean, rstd): no float64 crept
    into its accumulators (PERFORMANCE.md, lesson 3)."""
    r = np.arange(3, dtype=np.float32)
    ln._norm_forward_row(r, r, r, np.float32(1e-5), True, np.empty_like(r))
    types = {sig[0].dtype.name: res.signature.return_type
             for sig, res in ln._norm_forward_row.overloads.items()}
    assert str(types["float32"]) == "UniTuple(float32 x 2)"


def test_dispatcher_errors() -> None:
    x = np.zeros((2, 3), np.float32)
    with pytest.raises(TypeError, match=r"layer_norm_forward.*float32, float64"):
        kernels.layer_norm_forward(x, np.ones(3))
    with pytest.raises(TypeError, match=r"rms_norm_forward.*int64"):
        kernels.rms_norm_forward(np.zeros((2, 3), np.int64))
    with pytest.raises(ValueError, match=r"layer_norm_forward: weight of shape \(4,\).*\(2, 3\)"):
        kernels.layer_norm_forward(x, np.ones(4, np.float32))
    with pytest.raises(ValueError, match=r"layer_norm_forward: bias of shape \(2, 3\).*\(3,\)"):
        kernels.layer_norm_forward(x, None, x)
    with pytest.raises(ValueError, match=r"rms_norm_forward: .*non-empty last axis.*\(2, 0\)"):
        kernels.rms_norm_forward(np.zeros((2, 0)))
    with pytest.raises(ValueError, match=r"layer_norm_backward: gradient shape \(3, 2\).*\(2, 3\)"):
        kernels.layer_norm_backward(x.T, x, None, x[:, 0], x[:, 0])
    with pytest.raises(ValueError, match=r"rms_norm_backward: saved row statistics of shape "
                                         r"\(3,\) do not match input shape \(2, 3\)"):
        kernels.rms_norm_backward(x, x, None, x[0])


def test_kernels_run_without_jit() -> None:
    """With NUMBA_DISABLE_JIT=1 the numba kernels run as Python and must still agree."""
    script = """
import numba
import numpy as np
from nima.kernels import layernorm as ln
assert numba.config.DISABLE_JIT
rng = np.random.default_rng(0)
x, dy = rng.standard_normal((2, 5, 7)), rng.standard_normal((2, 5, 7))
w, b = rng.standard_normal(7), rng.standard_normal(7)
fwd = ln.layer_norm_forward_numba(x, w, b, 1e-5)
for got, want in zip(fwd, ln.layer_norm_forward_numpy(x, w, b, 1e-5)):
    np.testing.assert_allclose(got, want, rtol=1e-12)
for got, want in zip(ln.layer_norm_backward_numba(dy, x, w, *fwd[1:]),
                     ln.layer_norm_backward_numpy(dy, x, w, *fwd[1:])):
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)
y, rstd = ln.rms_norm_forward_numba(x, w, 1e-6)
np.testing.assert_allclose(y, ln.rms_norm_forward_numpy(x, w, 1e-6)[0], rtol=1e-12)
for got, want in zip(ln.rms_norm_backward_numba(dy, x, w, rstd),
                     ln.rms_norm_backward_numpy(dy, x, w, rstd)):
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)
print("ok")
"""
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "NUMBA_DISABLE_JIT": "1", "PYTHONPATH": str(root)}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            cwd=root, env=env, check=False, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
