"""NaN and ±inf through every kernel: the numba kernels give what their NumPy references give.

Each array is drawn row by row, each row of one kind: finite, finite with a few NaN/±inf entries,
all NaN, all -inf (fully masked), or NaN beside -inf (which must not pass for a masked row).
Both backends run on the same arrays; NaN positions and infinities must match exactly, finite
values within the kernel tolerance.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kernel_arrays import dtypes

from nima import kernels

nan, inf = np.nan, np.inf
ROW_KINDS = ("finite", "finite", "sprinkled", "all nan", "all -inf", "nan and -inf", "+inf")
widths = st.sampled_from([1, 2, 3, 8, 9, 17, 33])


@st.composite
def special_rows(draw: st.DrawFn, dtype: type, n_rows: int, width: int) -> np.ndarray:
    """(n_rows, width) values of `dtype`, each row of one of `ROW_KINDS`."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = rng.standard_normal((n_rows, width)) * 3
    for row in x:
        kind = draw(st.sampled_from(ROW_KINDS))
        if kind == "sprinkled":
            hit = rng.random(width) < 0.3
            row[hit] = rng.choice([nan, inf, -inf], int(hit.sum()))
        elif kind == "all nan":
            row[:] = nan
        elif kind == "all -inf":
            row[:] = -inf
        elif kind == "nan and -inf":
            row[:] = -inf
            row[rng.integers(width)] = nan
        elif kind == "+inf":
            row[rng.integers(width)] = inf
    return x.astype(dtype)


def on_both_backends(fn, *args, **kwargs):
    """`fn(*args, **kwargs)` on the numpy backend, then the numba one (fresh copies each)."""
    results = []
    for name in ("numpy", "numba"):
        copies = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
        with kernels.backend(name), np.errstate(all="ignore"):
            results.append(fn(*copies, **kwargs))
    return results


def assert_same(reference, kernel, dtype: type, scale: float = 1.0) -> None:
    """Same NaN positions, same infinities, finite values within the kernel tolerance (its
    absolute part times `scale`)."""
    if isinstance(reference, tuple):
        for r, k in zip(reference, kernel, strict=True):
            assert_same(r, k, dtype, scale)
        return
    tol = {"rtol": 1e-4, "atol": 1e-5} if dtype == np.float32 else {"rtol": 1e-11, "atol": 1e-12}
    tol["atol"] *= scale
    np.testing.assert_array_equal(np.isnan(kernel), np.isnan(reference), "NaN positions differ")
    np.testing.assert_allclose(kernel, reference, equal_nan=True, **tol)


def rstd_scale(rstd: np.ndarray) -> float:
    r"""The largest finite $	ext{rstd}$ (at least 1). A norm's $ar x$ is
    $	ext{rstd}\,(g - \dots)$: the kernel fuses $g - \operatorname{mean} g$ into one FMA, so
    where they cancel (a constant row) the rounding of $g = ar y w$ comes out times rstd, up
    to $1/\sqrt{\epsilon} pprox 316$, where the reference's plain subtraction gives 0."""
    finite = rstd[np.isfinite(rstd)]
    return max(1.0, float(finite.max())) if finite.size else 1.0


@settings(deadline=None)
@given(data=st.data(), dtype=dtypes, n_rows=st.integers(1, 6), width=widths)
def test_softmax_and_log_softmax(data: st.DataObject, dtype: type, n_rows: int,
                                 width: int) -> None:
    x = data.draw(special_rows(dtype, n_rows, width))
    dy = data.draw(special_rows(dtype, n_rows, width))
    for forward, backward in ((kernels.softmax_forward, kernels.softmax_backward),
                              (kernels.log_softmax_forward, kernels.log_softmax_backward)):
        y, y_numba = on_both_backends(forward, x)
        assert_same(y, y_numba, dtype)
        assert_same(*on_both_backends(backward, y, dy), dtype)


@settings(deadline=None)
@given(data=st.data(), dtype=dtypes, t_q=st.integers(1, 5), width=widths)
def test_causal_softmax(data: st.DataObject, dtype: type, t_q: int, width: int) -> None:
    x = data.draw(special_rows(dtype, 2 * t_q, width)).reshape(2, t_q, width)
    assert_same(*on_both_backends(kernels.causal_softmax_forward, x), dtype)


@settings(deadline=None)
@given(data=st.data(), dtype=dtypes, n_rows=st.integers(1, 6), width=widths,
       smoothing=st.sampled_from([0.0, 0.1]))
def test_cross_entropy(data: st.DataObject, dtype: type, n_rows: int, width: int,
                       smoothing: float) -> None:
    logits = data.draw(special_rows(dtype, n_rows, width))
    targets = np.array(data.draw(st.lists(st.sampled_from([-100, *range(width)]),
                                          min_size=n_rows, max_size=n_rows)))
    grad = data.draw(special_rows(dtype, 1, n_rows))[0]
    (losses, lse), numba_out = on_both_backends(kernels.cross_entropy_forward, logits, targets,
                                                label_smoothing=smoothing)
    assert_same((losses, lse), numba_out, dtype)
    assert_same(*on_both_backends(kernels.cross_entropy_backward, logits, targets, lse, grad,
                                  label_smoothing=smoothing), dtype)


@settings(deadline=None)
@given(data=st.data(), dtype=dtypes, n_rows=st.integers(1, 6), width=widths,
       eps=st.sampled_from([0.0, 1e-5]), affine=st.booleans())
def test_layer_norm_and_rms_norm(data: st.DataObject, dtype: type, n_rows: int, width: int,
                                 eps: float, affine: bool) -> None:
    x = data.draw(special_rows(dtype, n_rows, width))
    dy = data.draw(special_rows(dtype, n_rows, width))
    w, b = (data.draw(special_rows(dtype, 2, width)) if affine else (None, None))
    y, mean, rstd = (out := on_both_backends(kernels.layer_norm_forward, x, w, b, eps))[0]
    assert_same(*out, dtype)
    assert_same(*on_both_backends(kernels.layer_norm_backward, dy, x, w, mean, rstd), dtype,
                rstd_scale(rstd))
    (y, rstd), numba_out = on_both_backends(kernels.rms_norm_forward, x, w, eps)
    assert_same((y, rstd), numba_out, dtype)
    assert_same(*on_both_backends(kernels.rms_norm_backward, dy, x, w, rstd), dtype,
                rstd_scale(rstd))


@settings(deadline=None)
@given(data=st.data(), dtype=dtypes, n_rows=st.integers(1, 6), width=widths)
def test_gelu_backward(data: st.DataObject, dtype: type, n_rows: int, width: int) -> None:
    grad, x = (data.draw(special_rows(dtype, n_rows, width)) for _ in range(2))
    assert_same(*on_both_backends(kernels.gelu_tanh_forward, x), dtype)
    assert_same(*on_both_backends(kernels.gelu_tanh_backward, grad, x), dtype)


@settings(deadline=None)
@given(data=st.data(), dtype=dtypes, n_rows=st.integers(1, 4), width=widths,
       decoupled=st.booleans(), weight_decay=st.sampled_from([0.0, 0.1]))
def test_adam_update(data: st.DataObject, dtype: type, n_rows: int, width: int,
                     decoupled: bool, weight_decay: float) -> None:
    param, grad, exp_avg = (data.draw(special_rows(dtype, n_rows, width)) for _ in range(3))
    exp_avg_sq = np.abs(data.draw(special_rows(dtype, n_rows, width)))

    def step(p, g, m, v):
        kernels.adam_update(p, g, m, v, 1e-3, 0.9, 0.999, 1e-8, weight_decay, 3, decoupled)
        return p, m, v

    assert_same(*on_both_backends(step, param, grad, exp_avg, exp_avg_sq), dtype)


@settings(deadline=None)
@given(data=st.data(), dtype=dtypes, m=st.integers(1, 6), k=widths, n=st.integers(1, 9),
       batched=st.booleans())
def test_matmul(data: st.DataObject, dtype: type, m: int, k: int, n: int, batched: bool) -> None:
    a = data.draw(special_rows(dtype, m, k))
    b = data.draw(special_rows(dtype, n, k)).T
    if batched:
        a, b = np.stack([a, a[::-1]]), np.stack([b, b[:, ::-1]])
    assert_same(*on_both_backends(kernels.matmul, a, b), dtype)


# ----------------------------------------------------------------------------- known answers
@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_documented_special_rows(backend: str) -> None:
    """The rows docs/kernels.md lists: NaN rows give NaN, fully masked rows zeros / -inf."""
    x = np.array([[nan, nan, nan], [nan, -inf, -inf], [-inf, -inf, -inf], [inf, 0, 1],
                  [0, nan, 1]], np.float32)
    with kernels.backend(backend), np.errstate(all="ignore"):
        y = kernels.softmax_forward(x)
        log_y = kernels.log_softmax_forward(x)
        losses, lse = kernels.cross_entropy_forward(x, np.array([0, 0, 0, 1, 2]))
        attention = kernels.causal_softmax_forward(np.array([[nan, 1.0], [2.0, 3.0]], np.float32))
    nan_rows = [0, 1, 3, 4]
    assert np.isnan(y[nan_rows]).all() and np.isnan(log_y[nan_rows]).all()
    assert (y[2] == 0).all() and (log_y[2] == -inf).all()
    assert np.isnan(losses[nan_rows]).all() and np.isnan(lse[nan_rows]).all()
    assert losses[2] == inf and lse[2] == -inf
    assert np.isnan(attention[0]).all() and np.isfinite(attention[1]).all()


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_ignored_rows_have_zero_gradient_whatever_their_logits(backend: str) -> None:
    logits = np.array([[nan, 0.0], [inf, 0.0], [1.0, 2.0]], np.float32)
    targets = np.array([-100, -100, 1])
    with kernels.backend(backend), np.errstate(all="ignore"):
        losses, lse = kernels.cross_entropy_forward(logits, targets)
        grad = kernels.cross_entropy_backward(logits, targets, lse, np.ones(3, np.float32))
    np.testing.assert_array_equal(losses[:2], 0)
    np.testing.assert_array_equal(grad[:2], 0)
    assert np.isfinite(grad[2]).all()


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_layer_norm_eps_zero_on_a_constant_row_is_nan_not_an_error(backend: str) -> None:
    x = np.array([[2.0, 2.0, 2.0], [1.0, 2.0, 3.0]], np.float32)
    with kernels.backend(backend), np.errstate(all="ignore"):
        y, _, rstd = kernels.layer_norm_forward(x, eps=0.0)
        y_rms, _ = kernels.rms_norm_forward(np.zeros((1, 3), np.float32), eps=0.0)
    assert np.isnan(y[0]).all() and rstd[0] == inf
    np.testing.assert_allclose(y[1], [-math.sqrt(1.5), 0, math.sqrt(1.5)], rtol=1e-6)
    assert np.isnan(y_rms).all()
