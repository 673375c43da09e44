"""Elementwise ops: forward parity with NumPy (float32 and float64), float64 gradient checks on
random broadcast and non-contiguous inputs kept away from kinks, tie behaviour, dtype rules."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from strategies import arrays, broadcastable_shapes, shapes, tensors, values

import nima
from nima import ops

SMALL = shapes(max_side=3)


def _gelu_exact(x: np.ndarray) -> np.ndarray:
    r"""$x\,\Phi(x)$ with `math.erf` applied element by element."""
    erf = np.vectorize(math.erf, otypes=[np.float64])
    return x * 0.5 * (1 + erf(x / math.sqrt(2)))


def _gelu_tanh(x: np.ndarray) -> np.ndarray:
    r"""$\tfrac12 x (1 + \tanh(\sqrt{2/\pi}(x + 0.044715 x^3)))$."""
    return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))


# name: (nima function, float64 NumPy reference, values the input is drawn from)
UNARY: dict[str, tuple[Callable, Callable, st.SearchStrategy[float]]] = {
    "neg": (ops.neg, np.negative, values()),
    "exp": (nima.exp, np.exp, values()),
    "log": (nima.log, np.log, values(0.1, 3)),
    "sqrt": (nima.sqrt, np.sqrt, values(0.1, 3)),
    "abs": (nima.abs, np.abs, values(avoid=[0])),
    "tanh": (nima.tanh, np.tanh, values()),
    "sigmoid": (nima.sigmoid, lambda x: 1 / (1 + np.exp(-x)), values()),
    "relu": (nima.relu, lambda x: np.maximum(x, 0), values(avoid=[0])),
    "gelu": (nima.gelu, _gelu_exact, values()),
    "gelu_tanh": (lambda x: nima.gelu(x, approximate="tanh"), _gelu_tanh, values()),
    "silu": (nima.silu, lambda x: x / (1 + np.exp(-x)), values()),
    "softplus": (nima.softplus, lambda x: np.log1p(np.exp(x)), values()),
    "clamp": (lambda x: nima.clamp(x, -1.0, 1.5), lambda x: np.clip(x, -1.0, 1.5),
              values(avoid=[-1.0, 1.5])),
    "clamp_min": (lambda x: x.clamp(min=0.5), lambda x: np.maximum(x, 0.5), values(avoid=[0.5])),
    "clamp_max": (lambda x: x.clamp(max=-0.5), lambda x: np.minimum(x, -0.5),
                  values(avoid=[-0.5])),
    "pow_square": (lambda x: x**2, np.square, values()),
    "pow_cube": (lambda x: ops.pow(x, 3), lambda x: x**3, values()),
    "pow_half": (lambda x: x**0.5, np.sqrt, values(0.1, 3)),
    "pow_negative": (lambda x: x**-1.5, lambda x: x**-1.5, values(0.2, 3)),
    "rpow": (lambda x: 2.0**x, np.exp2, values()),
    "rpow_fraction": (lambda x: ops.pow(0.5, x), lambda x: 0.5**x, values()),
    "add_scalar": (lambda x: x + 1.5, lambda x: x + 1.5, values()),
    "rsub_scalar": (lambda x: 2.0 - x, lambda x: 2.0 - x, values()),
    "mul_scalar": (lambda x: 3 * x, lambda x: 3 * x, values()),
    "div_scalar": (lambda x: x / 4.0, lambda x: x / 4.0, values()),
    "rdiv_scalar": (lambda x: 2.0 / x, lambda x: 2.0 / x, values(avoid=[0], margin=0.5)),
    "maximum_scalar": (lambda x: nima.maximum(x, 0.5), lambda x: np.maximum(x, 0.5),
                       values(avoid=[0.5])),
    "minimum_scalar": (lambda x: x.minimum(0.5), lambda x: np.minimum(x, 0.5),
                       values(avoid=[0.5])),
}


@st.composite
def _offset(draw: st.DrawFn) -> float:
    """k + u with k an integer and u in [0.2, 0.8]: never within 0.2 of an integer."""
    return draw(st.integers(-3, 2)) + draw(st.floats(0.2, 0.8))


OFF_GRID = _offset()
ON_GRID = st.integers(-3, 3).map(float)

# name: (nima function, NumPy reference, values of a, values of b)
BINARY: dict[str, tuple[Callable, Callable, st.SearchStrategy, st.SearchStrategy]] = {
    "add": (ops.add, np.add, values(), values()),
    "sub": (ops.sub, np.subtract, values(), values()),
    "mul": (ops.mul, np.multiply, values(), values()),
    "div": (ops.div, np.divide, values(), values(avoid=[0], margin=0.5)),
    "pow": (ops.pow, np.power, values(0.5, 2), values(-2, 2)),
    # a is off the integer grid and b on it, so the two never tie
    "maximum": (nima.maximum, np.maximum, OFF_GRID, ON_GRID),
    "minimum": (nima.minimum, np.minimum, OFF_GRID, ON_GRID),
}


# ------------------------------------------------------------------------------ unary ops
@pytest.mark.parametrize("name", UNARY)
@given(data=st.data())
def test_unary_gradcheck(name: str, data: st.DataObject) -> None:
    fn, _, elements = UNARY[name]
    x = data.draw(tensors(SMALL, elements))
    assert nima.gradcheck(fn, [x])


@pytest.mark.parametrize("name", UNARY)
@given(data=st.data())
def test_unary_forward_matches_numpy(name: str, data: st.DataObject) -> None:
    fn, reference, elements = UNARY[name]
    x64 = data.draw(arrays(data.draw(SMALL), elements))
    for dtype, tol in [(np.float32, 1e-5), (np.float64, 1e-12)]:
        x = x64.astype(dtype)
        out = fn(nima.Tensor(x))
        assert out.dtype == dtype
        assert out.shape == x.shape
        np.testing.assert_allclose(out.data, reference(x.astype(np.float64)), rtol=tol, atol=tol)


@pytest.mark.parametrize("name", UNARY)
def test_unary_float32_gradient_stays_float32(name: str) -> None:
    fn, _, _ = UNARY[name]
    x = nima.tensor([[0.7, 1.3], [2.1, 0.4]], requires_grad=True)
    fn(x).sum().backward()
    assert x.grad.dtype == np.float32
    assert x.grad.shape == (2, 2)


def test_unary_known_values() -> None:
    x = nima.tensor([-1.0, 0.0, 2.0], dtype=nima.float64)
    np.testing.assert_allclose(nima.relu(x).numpy(), [0.0, 0.0, 2.0])
    np.testing.assert_allclose(nima.sigmoid(x).numpy()[1], 0.5)
    gelu_known = [-0.15865525393145707, 0.0, 1.9544997361036416]  # x * Phi(x), from tables
    np.testing.assert_allclose(nima.gelu(x).numpy(), gelu_known)
    np.testing.assert_allclose(nima.softplus(x).numpy()[1], math.log(2))
    np.testing.assert_allclose(nima.silu(x).numpy()[2], 2 / (1 + math.exp(-2)))


def test_sigmoid_and_softplus_do_not_overflow() -> None:
    x = nima.tensor([-1000.0, 1000.0])
    with np.errstate(over="raise", invalid="raise"):
        np.testing.assert_array_equal(nima.sigmoid(x).numpy(), [0.0, 1.0])
        np.testing.assert_array_equal(nima.softplus(x).numpy(), [0.0, 1000.0])


def test_gradient_at_kinks() -> None:
    """relu and abs send 0 at x = 0; clamp lets the gradient through at its bounds (PyTorch)."""
    x = nima.tensor([0.0, 1.0, -1.0], requires_grad=True)
    nima.relu(x).sum().backward()
    np.testing.assert_array_equal(x.grad, [0.0, 1.0, 0.0])
    x.grad = None
    nima.abs(x).sum().backward()
    np.testing.assert_array_equal(x.grad, [0.0, 1.0, -1.0])
    x = nima.tensor([-1.0, 0.0, 1.0, 2.0, -2.0], requires_grad=True)
    nima.clamp(x, -1.0, 1.0).sum().backward()
    np.testing.assert_array_equal(x.grad, [1.0, 1.0, 1.0, 0.0, 0.0])


def test_gelu_rejects_unknown_approximation() -> None:
    with pytest.raises(ValueError, match="approximate"):
        nima.gelu(nima.ones(2), approximate="erf")


def test_clamp_needs_a_bound() -> None:
    with pytest.raises(ValueError, match="clamp"):
        nima.clamp(nima.ones(2))


# ------------------------------------------------------------------------------ binary ops
@pytest.mark.parametrize("name", BINARY)
@given(data=st.data())
def test_binary_gradcheck_broadcast(name: str, data: st.DataObject) -> None:
    fn, _, a_values, b_values = BINARY[name]
    a_shape, b_shape = data.draw(broadcastable_shapes(2, max_side=3))
    a = data.draw(tensors(a_shape, a_values))
    b = data.draw(tensors(b_shape, b_values))
    out = fn(a, b)
    assert out.shape == np.broadcast_shapes(a_shape, b_shape)
    assert nima.gradcheck(fn, [a, b])


@pytest.mark.parametrize("name", BINARY)
@given(data=st.data())
def test_binary_forward_matches_numpy(name: str, data: st.DataObject) -> None:
    fn, reference, a_values, b_values = BINARY[name]
    a_shape, b_shape = data.draw(broadcastable_shapes(2, max_side=3))
    a64 = data.draw(arrays(a_shape, a_values))
    b64 = data.draw(arrays(b_shape, b_values))
    for dtype, rtol in [(np.float32, 1e-6), (np.float64, 1e-14)]:
        a, b = a64.astype(dtype), b64.astype(dtype)
        out = fn(nima.Tensor(a), nima.Tensor(b))
        assert out.dtype == dtype
        np.testing.assert_allclose(out.data, reference(a, b), rtol=rtol)


@pytest.mark.parametrize("name", BINARY)
def test_binary_gradient_dtype_and_shape_after_broadcast(name: str) -> None:
    fn = BINARY[name][0]
    a = nima.tensor([[0.6], [1.7]], requires_grad=True)  # (2, 1)
    b = nima.tensor([0.3, 1.2, 1.9], requires_grad=True)  # (3,)
    fn(a, b).sum().backward()
    assert (a.grad.shape, a.grad.dtype) == ((2, 1), np.float32)
    assert (b.grad.shape, b.grad.dtype) == ((3,), np.float32)


def test_binary_gradients_by_hand() -> None:
    a = nima.tensor([2.0, 3.0], dtype=nima.float64, requires_grad=True)
    b = nima.tensor([4.0, 0.5], dtype=nima.float64, requires_grad=True)
    (a / b).sum().backward()
    np.testing.assert_allclose(a.grad, [1 / 4.0, 1 / 0.5])
    np.testing.assert_allclose(b.grad, [-2.0 / 16.0, -3.0 / 0.25])
    a.grad = b.grad = None
    (a**b).sum().backward()
    np.testing.assert_allclose(a.grad, [4.0 * 2.0**3, 0.5 * 3.0**-0.5])
    np.testing.assert_allclose(b.grad, [2.0**4 * math.log(2), 3.0**0.5 * math.log(3)])


def test_maximum_minimum_split_ties_evenly() -> None:
    """Where a == b the gradient is shared half and half, so the two shares still add up to 1."""
    a = nima.tensor([1.0, 2.0, 3.0], requires_grad=True)
    b = nima.tensor([3.0, 2.0, 1.0], requires_grad=True)
    nima.maximum(a, b).sum().backward()
    np.testing.assert_array_equal(a.grad, [0.0, 0.5, 1.0])
    np.testing.assert_array_equal(b.grad, [1.0, 0.5, 0.0])
    a.grad = b.grad = None
    nima.minimum(a, b).sum().backward()
    np.testing.assert_array_equal(a.grad, [1.0, 0.5, 0.0])
    np.testing.assert_array_equal(b.grad, [0.0, 0.5, 1.0])


def test_maximum_of_a_tensor_with_itself_and_with_a_tied_scalar() -> None:
    x = nima.tensor([-1.0, 2.0], requires_grad=True)
    nima.maximum(x, x).sum().backward()  # both halves land on x
    np.testing.assert_array_equal(x.grad, [1.0, 1.0])
    x.grad = None
    nima.maximum(x, 2.0).sum().backward()  # tie at 2.0: the scalar keeps its half
    np.testing.assert_array_equal(x.grad, [0.0, 0.5])
    x.grad = None
    nima.minimum(x, -1.0).sum().backward()
    np.testing.assert_array_equal(x.grad, [0.5, 0.0])


# ------------------------------------------------------------------------------ where / masked_fill
@given(data=st.data())
def test_where_gradcheck_broadcast(data: st.DataObject) -> None:
    cond_shape, a_shape, b_shape = data.draw(broadcastable_shapes(3, max_side=3))
    cond = data.draw(hnp.arrays(np.bool_, cond_shape))
    a = data.draw(tensors(a_shape))
    b = data.draw(tensors(b_shape))
    out = nima.where(cond, a, b)
    np.testing.assert_array_equal(out.data, np.where(cond, a.data, b.data))
    assert nima.gradcheck(lambda a, b: nima.where(cond, a, b), [a, b])


def test_where_gradient_by_hand() -> None:
    cond = nima.tensor([[True, False, True]])
    a = nima.tensor([[1.0], [2.0]], requires_grad=True)  # (2, 1)
    b = nima.tensor([5.0, 6.0, 7.0], requires_grad=True)  # (3,)
    out = nima.where(cond, a, b)
    np.testing.assert_array_equal(out.data, [[1.0, 6.0, 1.0], [2.0, 6.0, 2.0]])
    out.sum().backward()
    np.testing.assert_array_equal(a.grad, [[2.0], [2.0]])
    np.testing.assert_array_equal(b.grad, [0.0, 2.0, 0.0])


def test_where_with_scalar_branch_keeps_dtype() -> None:
    x = nima.tensor([1.0, -2.0], requires_grad=True)
    out = nima.where(x > 0, x, 0.0)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out.data, [1.0, 0.0])


def test_where_needs_a_bool_condition() -> None:
    with pytest.raises(TypeError, match="where"):
        nima.where(nima.tensor([1, 0]), nima.ones(2), nima.zeros(2))


@st.composite
def _shape_and_mask_shape(draw: st.DrawFn) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """A shape and a mask shape that broadcasts to it (some dims 1, some leading dims gone)."""
    shape = draw(shapes(max_side=3))
    mask = tuple(n if draw(st.booleans()) else 1 for n in shape)
    return shape, mask[draw(st.integers(0, len(shape))):]


@given(data=st.data(), value=st.sampled_from([0.0, -5.0, 2.5]))
def test_masked_fill_gradcheck(data: st.DataObject, value: float) -> None:
    """(A huge fill such as -1e9 would swamp the central difference of the projected loss in
    rounding error; -inf fills are checked by hand below.)"""
    shape, mask_shape = data.draw(_shape_and_mask_shape())
    x = data.draw(tensors(shape))
    mask = data.draw(hnp.arrays(np.bool_, mask_shape))
    out = nima.masked_fill(x, mask, value)
    assert out.shape == shape
    np.testing.assert_array_equal(out.data, np.where(mask, value, x.data))
    assert nima.gradcheck(lambda x: x.masked_fill(mask, value), [x])


def test_masked_fill_gradient_is_zero_where_filled() -> None:
    x = nima.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    out = x.masked_fill(nima.tensor([True, False]), float("-inf"))
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out.data, [[-np.inf, 2.0], [-np.inf, 4.0]])
    out.backward(np.ones((2, 2)))
    np.testing.assert_array_equal(x.grad, [[0.0, 1.0], [0.0, 1.0]])


def test_masked_fill_rejects_bad_masks() -> None:
    x = nima.ones(2, 3)
    with pytest.raises(TypeError, match="masked_fill"):
        x.masked_fill(nima.tensor([1, 0, 1]), 0.0)
    with pytest.raises(ValueError, match=r"masked_fill.*\(2,\).*\(2, 3\)"):
        x.masked_fill(nima.tensor([True, False]), 0.0)
    with pytest.raises(ValueError, match="masked_fill"):  # the mask may not grow x
        x.masked_fill(np.ones((4, 2, 3), dtype=bool), 0.0)


# ------------------------------------------------------------------------------ cast
@given(x=tensors(SMALL))
def test_cast_round_trip_gradcheck(x: nima.Tensor) -> None:
    """float64 -> float32 -> float64 is the identity up to float32 rounding (~2e-7), so the
    central difference needs a wide step: the rounding error over 2 eps stays ~1e-5."""
    assert nima.gradcheck(lambda x: x.float().double() * 3.0, [x], eps=1e-2, atol=1e-4)


@pytest.mark.parametrize(("source", "target"), [(np.float64, np.float32), (np.float32, np.float64),
                                                (np.float32, np.float16)])
def test_cast_forward_and_gradient_dtypes(source: type, target: type) -> None:
    x = nima.tensor([0.5, -1.25, 3.0], dtype=source, requires_grad=True)
    y = x.to(target)
    assert y.dtype == target and y.requires_grad
    np.testing.assert_array_equal(y.data, x.data.astype(target))
    y.backward(np.array([1.0, 2.0, 3.0]))
    assert x.grad.dtype == source
    np.testing.assert_array_equal(x.grad, [1.0, 2.0, 3.0])


def test_cast_to_same_dtype_is_identity_and_to_int_drops_grad() -> None:
    x = nima.tensor([1.7, -2.2], requires_grad=True)
    assert x.float() is x
    n = x.long()
    assert n.dtype == np.int64 and not n.requires_grad
    np.testing.assert_array_equal(n.data, [1, -2])


# ------------------------------------------------------------------------------ dtype rules
DTYPE_OPS = {
    "add": ops.add, "sub": ops.sub, "mul": ops.mul, "div": ops.div, "pow": ops.pow,
    "maximum": nima.maximum, "minimum": nima.minimum,
    "where": lambda a, b: nima.where(np.array([True, False, True]), a, b),
}


@pytest.mark.parametrize("name", DTYPE_OPS)
def test_mixing_float32_and_float64_tensors_raises(name: str) -> None:
    a = nima.ones(2, 3)
    b = nima.ones(3, dtype=nima.float64)
    with pytest.raises(TypeError, match=rf"{name}: dtype mismatch.*\(2, 3\).*\(3,\)"):
        DTYPE_OPS[name](a, b)
    with pytest.raises(TypeError, match=rf"{name}: dtype mismatch.*\(3,\).*\(2, 3\)"):
        DTYPE_OPS[name](b, a)


@pytest.mark.parametrize("name", ["add", "sub", "mul", "div", "pow", "maximum", "minimum"])
def test_mismatched_broadcast_names_op_and_shapes(name: str) -> None:
    with pytest.raises(ValueError, match=rf"^{name}:.*\(2, 3\), \(4,\)"):
        DTYPE_OPS[name](nima.ones(2, 3), nima.ones(4))


SCALAR_EXPRESSIONS = {
    "x + 1.5": lambda x: x + 1.5,
    "1.5 - x": lambda x: 1.5 - x,
    "x * 2": lambda x: x * 2,
    "2.0 / x": lambda x: 2.0 / x,
    "x ** 2.0": lambda x: x**2.0,
    "3.0 ** x": lambda x: 3.0**x,
    "np.float64(2) * x": lambda x: np.float64(2.0) * x,
    "x * np.float64(2)": lambda x: x * np.float64(2.0),
    "maximum(x, 1.0)": lambda x: nima.maximum(x, 1.0),
    "x + float64 array": lambda x: x + np.array([1.0, 2.0]),
    "x * int64 tensor": lambda x: x * nima.arange(2),
    "int64 tensor + x": lambda x: nima.arange(2) + x,
}


@pytest.mark.parametrize("name", SCALAR_EXPRESSIONS)
def test_python_numbers_keep_float32(name: str) -> None:
    """No float64 creep: numbers, NumPy scalars, arrays and int tensors adopt the float dtype,
    forward and backward."""
    x = nima.tensor([0.5, 1.5], requires_grad=True)
    out = SCALAR_EXPRESSIONS[name](x)
    assert out.dtype == np.float32
    out.sum().backward()
    assert x.grad.dtype == np.float32


def test_int_tensor_mixed_with_float_gives_the_float_values() -> None:
    x = nima.tensor([0.5, 1.5])
    np.testing.assert_array_equal((nima.arange(2) * x).numpy(), [0.0, 1.5])
    np.testing.assert_array_equal((x - nima.arange(2)).numpy(), [0.5, 0.5])
    assert (nima.arange(3) + nima.arange(3)).dtype == np.int64


# ------------------------------------------------------------------------------ comparisons
COMPARISONS = {
    "==": (lambda a, b: a == b, np.equal), "!=": (lambda a, b: a != b, np.not_equal),
    "<": (lambda a, b: a < b, np.less), "<=": (lambda a, b: a <= b, np.less_equal),
    ">": (lambda a, b: a > b, np.greater), ">=": (lambda a, b: a >= b, np.greater_equal),
}


@pytest.mark.parametrize("name", COMPARISONS)
@given(data=st.data())
def test_comparisons_give_bool_tensors_without_grad(name: str, data: st.DataObject) -> None:
    compare, reference = COMPARISONS[name]
    a_shape, b_shape = data.draw(broadcastable_shapes(2))
    a = data.draw(tensors(a_shape, ON_GRID))  # integer values, so ties happen
    b = data.draw(tensors(b_shape, ON_GRID))
    for other, other_values in [(b, b.data), (1.0, 1.0)]:
        out = compare(a, other)
        assert out.dtype == np.bool_
        assert not out.requires_grad and out.is_leaf
        np.testing.assert_array_equal(out.data, reference(a.data, other_values))
