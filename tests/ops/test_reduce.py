"""Reductions: sum, mean, var, max, min, logsumexp over dim=None / int / tuple / negative, with
and without keepdim — forward parity with NumPy, float64 gradient checks, ties, stability."""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from strategies import arrays, shapes, tensors

import nima
from nima.ops.reduce import normalize_dims

SMALL = shapes(max_side=3)
Dim = int | tuple[int, ...] | None


@st.composite
def dims(draw: st.DrawFn, ndim: int) -> Dim:
    """None, one axis, or a tuple of distinct axes; negative numbering drawn as often as not."""
    if ndim == 0:
        return draw(st.sampled_from([None, 0, -1, ()]))
    axes = st.integers(0, ndim - 1).flatmap(lambda d: st.sampled_from([d, d - ndim]))
    kind = draw(st.sampled_from(["none", "int", "tuple"]))
    if kind == "none":
        return None
    if kind == "int":
        return draw(axes)
    chosen = draw(st.lists(st.integers(0, ndim - 1), min_size=1, max_size=ndim, unique=True))
    return tuple(d - ndim if draw(st.booleans()) else d for d in chosen)


def numpy_axis(dim: Dim, ndim: int) -> tuple[int, ...]:
    """The axes NumPy should reduce over, computed independently of `normalize_dims`."""
    if dim is None:
        return tuple(range(ndim))
    if ndim == 0:
        return ()
    return tuple(d % ndim for d in ((dim,) if isinstance(dim, int) else dim))


def _logsumexp(x: np.ndarray, axis: tuple[int, ...], keepdims: bool) -> np.ndarray:
    return np.log(np.sum(np.exp(x), axis=axis, keepdims=keepdims))


# name: (nima call, NumPy reference)
REDUCTIONS: dict[str, tuple[Callable, Callable]] = {
    "sum": (lambda x, d, k: x.sum(d, keepdim=k), np.sum),
    "mean": (lambda x, d, k: nima.mean(x, d, keepdim=k), np.mean),
    "var0": (lambda x, d, k: x.var(d, keepdim=k, correction=0),
             lambda a, axis, keepdims: np.var(a, axis=axis, keepdims=keepdims, ddof=0)),
    "var1": (lambda x, d, k: nima.var(x, d, keepdim=k),
             lambda a, axis, keepdims: np.var(a, axis=axis, keepdims=keepdims, ddof=1)),
    "max": (lambda x, d, k: x.max(d, keepdim=k), np.max),
    "min": (lambda x, d, k: nima.min(x, d, keepdim=k), np.min),
    "logsumexp": (lambda x, d, k: x.logsumexp(d, keepdim=k), _logsumexp),
}


def _reduced_count(shape: tuple[int, ...], axis: tuple[int, ...]) -> int:
    return int(np.prod([shape[a] for a in axis]))


@st.composite
def distinct(draw: st.DrawFn, shape: tuple[int, ...]) -> np.ndarray:
    """A possibly non-contiguous array whose values are all different (at least 0.05 apart), so
    max and min have no ties for the central difference to straddle."""
    out = draw(arrays(shape))
    perm = np.array(draw(st.permutations(range(out.size))), dtype=np.float64)
    out[...] = (perm.reshape(shape) - out.size / 2) * 0.05
    return out


def _input(data: st.DataObject, name: str) -> np.ndarray:
    shape = data.draw(SMALL)
    return data.draw(distinct(shape) if name in ("max", "min") else arrays(shape))


@pytest.mark.parametrize("name", REDUCTIONS)
@given(data=st.data(), keepdim=st.booleans())
def test_reduction_gradcheck(name: str, data: st.DataObject, keepdim: bool) -> None:
    fn = REDUCTIONS[name][0]
    x = nima.Tensor(_input(data, name), requires_grad=True)
    dim = data.draw(dims(x.ndim))
    if name == "var1":
        assume(_reduced_count(x.shape, numpy_axis(dim, x.ndim)) > 1)
    assert nima.gradcheck(lambda x: fn(x, dim, keepdim), [x])


@pytest.mark.parametrize("name", REDUCTIONS)
@given(data=st.data(), keepdim=st.booleans())
def test_reduction_forward_matches_numpy(name: str, data: st.DataObject, keepdim: bool) -> None:
    fn, reference = REDUCTIONS[name]
    x64 = data.draw(arrays(data.draw(shapes())))
    dim = data.draw(dims(x64.ndim))
    axis = numpy_axis(dim, x64.ndim)
    if name == "var1":
        assume(_reduced_count(x64.shape, axis) > 1)
    for dtype, rtol in [(np.float32, 1e-5), (np.float64, 1e-12)]:
        x = x64.astype(dtype)
        out = fn(nima.Tensor(x), dim, keepdim)
        expected = reference(x.astype(np.float64), axis=axis, keepdims=keepdim)
        assert out.dtype == dtype
        assert out.shape == np.shape(expected)
        np.testing.assert_allclose(out.data, expected, rtol=rtol, atol=rtol)


@pytest.mark.parametrize("name", REDUCTIONS)
def test_float32_reduction_gradient_stays_float32(name: str) -> None:
    x = nima.tensor([[0.5, 1.5, -2.0], [3.0, 0.25, 1.0]], requires_grad=True)
    REDUCTIONS[name][0](x, 1, False).sum().backward()
    assert x.grad.dtype == np.float32 and x.grad.shape == (2, 3)


def test_reduction_shapes_by_hand() -> None:
    x = nima.ones(2, 3, 4)
    assert x.sum().shape == ()
    assert x.sum(1).shape == (2, 4)
    assert x.sum(-1, keepdim=True).shape == (2, 3, 1)
    assert x.mean((0, -1)).shape == (3,)
    assert x.max((0, 2), keepdim=True).shape == (1, 3, 1)
    assert nima.logsumexp(x, (-3, -2, -1)).shape == ()


def test_sum_and_mean_gradients_by_hand() -> None:
    x = nima.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], requires_grad=True)
    y = x.sum(0)  # (3,)
    y.backward(np.array([1.0, 10.0, 100.0]))
    np.testing.assert_array_equal(x.grad, [[1.0, 10.0, 100.0], [1.0, 10.0, 100.0]])
    x.grad = None
    x.mean(1, keepdim=True).backward(np.array([[3.0], [6.0]]))
    np.testing.assert_array_equal(x.grad, [[1.0, 1.0, 1.0], [2.0, 2.0, 2.0]])


def test_var_by_hand() -> None:
    r"""x = [1, 2, 3, 6]: $\mu = 3$, squared deviations 4, 1, 0, 9 sum to 14;
    $\partial/\partial x_i = 2 (x_i - \mu) / (n - c)$."""
    x = nima.tensor([1.0, 2.0, 3.0, 6.0], dtype=nima.float64, requires_grad=True)
    v = x.var()
    np.testing.assert_allclose(v.item(), 14 / 3)
    v.backward()
    np.testing.assert_allclose(x.grad, [-4 / 3, -2 / 3, 0.0, 2.0])
    x.grad = None
    v = x.var(correction=0)
    np.testing.assert_allclose(v.item(), 14 / 4)
    v.backward()
    np.testing.assert_allclose(x.grad, [-1.0, -0.5, 0.0, 1.5])


def test_max_min_split_gradient_evenly_among_ties() -> None:
    x = nima.tensor([[1.0, 3.0, 3.0], [2.0, 2.0, 0.0]], requires_grad=True)
    values = x.max(1)
    np.testing.assert_array_equal(values.data, [3.0, 2.0])
    values.backward(np.array([1.0, 4.0]))
    np.testing.assert_array_equal(x.grad, [[0.0, 0.5, 0.5], [2.0, 2.0, 0.0]])
    x.grad = None
    x.max().backward()  # the two 3s share the one gradient
    np.testing.assert_array_equal(x.grad, [[0.0, 0.5, 0.5], [0.0, 0.0, 0.0]])
    x = nima.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 5.0]], requires_grad=True)
    x.min(0, keepdim=True).backward(np.array([[3.0, 6.0]]))
    np.testing.assert_array_equal(x.grad, [[0.0, 3.0], [1.5, 3.0], [1.5, 0.0]])


def test_logsumexp_is_stable_and_handles_all_minus_inf_rows() -> None:
    x = nima.tensor([[1000.0, 1000.0], [-np.inf, -np.inf], [-1000.0, 0.0]],
                    dtype=nima.float64, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a fully masked row is expected input, not a warning
        out = x.logsumexp(1)
    np.testing.assert_allclose(out.data, [1000.0 + np.log(2.0), -np.inf, np.log1p(np.exp(-1000.0))])
    out.backward(np.ones(3))
    assert np.isfinite(x.grad).all()  # the -inf row gets 0, not nan
    np.testing.assert_allclose(x.grad, [[0.5, 0.5], [0.0, 0.0], [0.0, 1.0]])


def test_logsumexp_gradient_is_softmax() -> None:
    x = nima.tensor([0.0, np.log(3.0)], dtype=nima.float64, requires_grad=True)
    x.logsumexp().backward()
    np.testing.assert_allclose(x.grad, [0.25, 0.75])


def test_zero_dim_tensor_reductions() -> None:
    x = nima.tensor(2.5, requires_grad=True)
    for dim in (None, 0, -1):
        assert x.sum(dim).shape == () and x.max(dim).item() == 2.5
    x.mean(0).backward()
    np.testing.assert_array_equal(x.grad, 1.0)


@pytest.mark.parametrize("op", ["sum", "mean", "max", "logsumexp"])
def test_bad_dims_raise(op: str) -> None:
    x = nima.ones(2, 3)
    fn = getattr(nima, op)
    with pytest.raises(IndexError, match=rf"{op}: dim 2 is out of range.*2 dims"):
        fn(x, 2)
    with pytest.raises(IndexError, match=rf"{op}: dim -3"):
        fn(x, (0, -3))
    with pytest.raises(ValueError, match=rf"{op}: dim \(1, -1\) repeats"):
        fn(x, (1, -1))


@pytest.mark.parametrize("op", ["sum", "mean", "var", "max", "logsumexp", "softmax", "squeeze"])
@pytest.mark.parametrize("dim", [1.5, "1", True, (0, 1.0)])
def test_dims_that_are_not_ints_are_refused_naming_the_dim(op: str, dim: object) -> None:
    x = nima.ones(2, 3)
    with pytest.raises(TypeError, match=rf"^{op}: dim must be an int, a tuple of ints or None, "
                                        rf"got {re.escape(repr(dim))}$"):
        getattr(x, op)(dim)


@pytest.mark.parametrize("op", ["max", "min", "argmax", "argmin"])
def test_extremum_of_empty_tensor_raises(op: str) -> None:
    with pytest.raises(ValueError, match=rf"{op}: cannot reduce an empty tensor of shape \(0, 2\)"):
        getattr(nima, op)(nima.zeros(0, 2))


def test_normalize_dims() -> None:
    assert normalize_dims("sum", None, 3) == (0, 1, 2)
    assert normalize_dims("sum", -1, 3) == (2,)
    assert normalize_dims("sum", (2, -3), 3) == (0, 2)
    assert normalize_dims("sum", np.int64(1), 2) == (1,)
    assert normalize_dims("sum", -1, 0) == ()


@given(data=st.data(), keepdim=st.booleans())
def test_argmax_argmin_match_numpy_and_have_no_grad(data: st.DataObject, keepdim: bool) -> None:
    x = data.draw(tensors(shapes(min_dims=1)))
    dim = data.draw(st.none() | st.integers(-x.ndim, x.ndim - 1))
    for fn, reference in [(nima.argmax, np.argmax), (nima.argmin, np.argmin)]:
        out = fn(x, dim, keepdim)
        assert not out.requires_grad and out.dtype == np.int64
        np.testing.assert_array_equal(out.data, reference(x.data, axis=dim, keepdims=keepdim))
