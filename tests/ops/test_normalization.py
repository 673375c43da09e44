"""layer_norm and rms_norm: parity with hand-written formulas and with the unfused composition of
Nima ops, float64 gradchecks for x, weight and bias on both kernel backends, errors."""

import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from strategies import arrays, shapes

import nima
import nima.functional as F
from nima import gradcheck, kernels


def layer_norm_formula(x: np.ndarray, n_dims: int, w: np.ndarray | None, b: np.ndarray | None,
                       eps: float) -> np.ndarray:
    axes = tuple(range(x.ndim - n_dims, x.ndim))
    mu = x.mean(axis=axes, keepdims=True)
    y = (x - mu) / np.sqrt(((x - mu) ** 2).mean(axis=axes, keepdims=True) + eps)
    return y * (1 if w is None else w) + (0 if b is None else b)


def rms_norm_formula(x: np.ndarray, n_dims: int, w: np.ndarray | None, eps: float) -> np.ndarray:
    axes = tuple(range(x.ndim - n_dims, x.ndim))
    return x / np.sqrt((x**2).mean(axis=axes, keepdims=True) + eps) * (1 if w is None else w)


@st.composite
def norm_case(draw: st.DrawFn) -> tuple[nima.Tensor, tuple[int, ...], nima.Tensor, nima.Tensor]:
    """x of shape (..., *normalized) — possibly non-contiguous — and weight, bias of shape
    `normalized`. x gets a fixed ramp over the normalised dims, so no row is near-constant
    (the variance stays >= ~0.1 and rstd moderate, which central differences need)."""
    lead = draw(shapes(min_dims=0, max_dims=2, max_side=3))
    normalized = draw(shapes(min_dims=1, max_dims=2, max_side=4))
    shape = (*lead, *normalized)
    noise = draw(arrays(shape, st.floats(-0.3, 0.3)))
    ramp = np.arange(np.prod(normalized), dtype=np.float64).reshape(normalized)
    x = nima.Tensor(noise + ramp - 1.5, requires_grad=True)
    weight = nima.Tensor(draw(arrays(normalized, st.floats(0.5, 2.0))), requires_grad=True)
    bias = nima.Tensor(draw(arrays(normalized, st.floats(-1, 1))), requires_grad=True)
    return x, normalized, weight, bias


# ------------------------------------------------------------------------------ parity
@given(norm_case(), st.sampled_from(["numba", "numpy"]), st.booleans())
def test_layer_norm_matches_formula(case: tuple, backend: str, affine: bool) -> None:
    x, normalized, w, b = case
    args = (w, b) if affine else (None, None)
    with kernels.backend(backend):
        y = F.layer_norm(x, normalized, *args, eps=1e-5)
    arrays_ = [None if a is None else a.data for a in args]
    expected = layer_norm_formula(x.data, len(normalized), *arrays_, 1e-5)
    np.testing.assert_allclose(y.data, expected, rtol=1e-10, atol=1e-12)


@given(norm_case(), st.sampled_from(["numba", "numpy"]), st.booleans())
def test_rms_norm_matches_formula(case: tuple, backend: str, affine: bool) -> None:
    x, normalized, w, _ = case
    with kernels.backend(backend):
        y = F.rms_norm(x, normalized, w if affine else None, eps=1e-6)
    expected = rms_norm_formula(x.data, len(normalized), w.data if affine else None, 1e-6)
    np.testing.assert_allclose(y.data, expected, rtol=1e-10, atol=1e-12)


def test_layer_norm_gradients_match_the_unfused_composition() -> None:
    """The fused op and mean / var / sub / div / mul / add through autograd agree."""
    rng = np.random.default_rng(0)
    g = rng.standard_normal((3, 5, 8))

    def leaves() -> list[nima.Tensor]:
        r = np.random.default_rng(1)
        return [nima.Tensor(r.standard_normal(s) * 2 + 1, requires_grad=True)
                for s in [(3, 5, 8), (8,), (8,)]]

    fused, unfused = leaves(), leaves()
    F.layer_norm(fused[0], 8, fused[1], fused[2]).backward(g)
    x, w, b = unfused
    mu = x.mean(-1, keepdim=True)
    ((x - mu) / (x.var(-1, keepdim=True, correction=0) + 1e-5).sqrt() * w + b).backward(g)
    for a, e in zip(fused, unfused, strict=True):
        np.testing.assert_allclose(a.grad, e.grad, rtol=1e-10, atol=1e-12)


def test_known_answers() -> None:
    y = F.layer_norm(nima.tensor([1.0, 2.0, 3.0], dtype=np.float64), 3, eps=0)
    np.testing.assert_allclose(y.data, [-np.sqrt(1.5), 0, np.sqrt(1.5)], rtol=1e-12)
    y = F.rms_norm(nima.tensor([3.0, 4.0], dtype=np.float64), 2, eps=0)
    np.testing.assert_allclose(y.data, np.array([3.0, 4.0]) / np.sqrt(12.5), rtol=1e-12)


# ------------------------------------------------------------------------------ gradients
# Hypothesis gradchecks run the NumPy kernels: on these tiny arrays one parallel numba launch
# costs more than the work, and gradcheck makes two per element. `test_gradcheck_numba` and
# the kernel tests (numba vs NumPy) tie the numba kernels to the same results.
@given(norm_case())
def test_layer_norm_gradcheck(case: tuple) -> None:
    x, normalized, w, b = case
    with kernels.backend("numpy"):
        assert gradcheck(lambda *t: F.layer_norm(t[0], normalized, t[1], t[2]), [x, w, b])


@given(norm_case())
def test_rms_norm_gradcheck(case: tuple) -> None:
    x, normalized, w, _ = case
    with kernels.backend("numpy"):
        assert gradcheck(lambda *t: F.rms_norm(t[0], normalized, t[1]), [x, w])


@given(norm_case())
def test_gradcheck_without_parameters(case: tuple) -> None:
    x, normalized, _, _ = case
    with kernels.backend("numpy"):
        assert gradcheck(lambda t: F.layer_norm(t, normalized), [x])
        assert gradcheck(lambda t: F.rms_norm(t, normalized), [x])


def test_gradcheck_numba() -> None:
    rng = np.random.default_rng(0)
    x = nima.Tensor(rng.standard_normal((3, 4, 6)).transpose(1, 0, 2), requires_grad=True)
    w = nima.Tensor(rng.uniform(0.5, 2, (3, 6)), requires_grad=True)
    b = nima.Tensor(rng.standard_normal((3, 6)), requires_grad=True)
    with kernels.backend("numba"):
        assert gradcheck(lambda *t: F.layer_norm(t[0], (3, 6), t[1], t[2]), [x, w, b])
        assert gradcheck(lambda *t: F.rms_norm(t[0], (3, 6), t[1]), [x, w])
        assert gradcheck(lambda t: F.layer_norm(t, 6), [x])


@pytest.mark.parametrize("fn", ["layer_norm", "rms_norm"])
def test_float32_in_float32_out_and_backends_agree(fn: str) -> None:
    rng = np.random.default_rng(0)
    x0 = (rng.standard_normal((12, 64, 128)) + 3).astype(np.float32)
    g = rng.standard_normal(x0.shape).astype(np.float32)
    results = []
    for backend in ("numba", "numpy"):
        x = nima.tensor(x0, requires_grad=True)
        w = nima.tensor(np.linspace(0.5, 1.5, 128, dtype=np.float32), requires_grad=True)
        with kernels.backend(backend):
            y = getattr(F, fn)(x, 128, w)
            y.backward(g)
        assert y.dtype == x.grad.dtype == w.grad.dtype == np.float32
        results.append([y.data, x.grad, w.grad])
    for got, want in zip(*results, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=2e-4)


def test_only_requested_gradients() -> None:
    x = nima.Tensor(np.random.default_rng(0).standard_normal((2, 4)))
    w = nima.Tensor(np.ones(4), requires_grad=True)
    b = nima.Tensor(np.zeros(4))
    F.layer_norm(x, 4, w, b).sum().backward()
    assert x.grad is None and b.grad is None and w.grad.shape == (4,)
    y = F.layer_norm(x, 4)
    assert not y.requires_grad


# ------------------------------------------------------------------------------ errors
def test_errors_name_the_op_and_shapes() -> None:
    x = nima.zeros(2, 3, 4)
    with pytest.raises(ValueError, match=r"layer_norm: normalized_shape \(3,\) must .*\(2, 3, 4\)"):
        F.layer_norm(x, 3)
    with pytest.raises(ValueError, match=r"rms_norm: normalized_shape \(1, 2, 3, 4\) .*\(2, 3,"):
        F.rms_norm(x, (1, 2, 3, 4))
    with pytest.raises(ValueError, match=r"layer_norm: normalized_shape \(\) must be non-empty"):
        F.layer_norm(x, ())
    with pytest.raises(ValueError, match=r"layer_norm: weight of shape \(4,\) does not match "
                                         r"normalized_shape \(3, 4\) \(x of shape \(2, 3, 4\)\)"):
        F.layer_norm(x, (3, 4), nima.ones(4))
    with pytest.raises(ValueError, match=r"layer_norm: bias of shape \(3,\) .*\(4,\)"):
        F.layer_norm(x, 4, None, nima.ones(3))
    with pytest.raises(ValueError, match=r"rms_norm: weight of shape \(3, 4\) .*\(4,\)"):
        F.rms_norm(x, 4, nima.ones(3, 4))
    with pytest.raises(TypeError, match=r"layer_norm: weight is float64 but x is float32"):
        F.layer_norm(x, 4, nima.ones(4).double())
    with pytest.raises(TypeError, match=r"rms_norm: needs a float32 or float64 tensor, got int64"):
        F.rms_norm(nima.tensor([[1, 2]]), 2)
    with pytest.raises(TypeError, match=r"layer_norm: expected a Tensor, got ndarray"):
        F.layer_norm(np.zeros(4), 4)


@pytest.mark.parametrize("eps", [-1e-5, -1, float("nan"), float("inf"), "1e-5", True, None])
def test_bad_eps_is_refused_naming_the_value(eps: object) -> None:
    x = nima.zeros(2, 4)
    shown = re.escape(repr(eps))
    with pytest.raises(ValueError, match=rf"layer_norm: eps must be a finite number >= 0, "
                                         rf"got {shown}$"):
        F.layer_norm(x, 4, eps=eps)
    with pytest.raises(ValueError, match=rf"rms_norm: eps .* got {shown}$"):
        F.rms_norm(x, 4, eps=eps)
    with pytest.raises(ValueError, match=rf"rms_norm_forward: eps .* got {shown}$"):
        kernels.rms_norm_forward(x.data, eps=eps)
    with pytest.raises(ValueError, match=rf"LayerNorm: eps .* got {shown}$"):
        nima.nn.LayerNorm(4, eps=eps)
    with pytest.raises(ValueError, match=rf"RMSNorm: eps .* got {shown}$"):
        nima.nn.RMSNorm(4, eps=eps)


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_eps_zero_is_allowed_and_a_constant_row_gives_nan(backend: str) -> None:
    x = nima.tensor([[1.0, 2.0, 3.0], [5.0, 5.0, 5.0]])
    with kernels.backend(backend), np.errstate(all="ignore"):
        y = F.layer_norm(x, 3, eps=0).data
    np.testing.assert_allclose(y[0], [-1.5**0.5, 0, 1.5**0.5], rtol=1e-6)
    assert np.isnan(y[1]).all()
