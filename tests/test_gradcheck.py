"""gradcheck itself: it passes correct gradients, catches a wrong one and says where, and refuses
inputs it cannot check reliably."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from strategies import broadcastable_shapes, shapes, tensors, values

import nima
import nima.functional
from nima.autograd import Context, Function
from nima.gradcheck import central_differences, numerical_grad
from nima.ops import elementwise, linalg, normalization, reduce
from nima.ops import nn as nn_ops


@pytest.fixture(scope="module")
def monkeypatch_module():
    """A monkeypatch that hypothesis' repeated calls of one test may share (each use is a
    `context()`, undone when it exits)."""
    with pytest.MonkeyPatch.context() as patch:
        yield patch

BAD = (1, 2)  # the element whose gradient WrongSquare gets wrong


class WrongSquare(Function):
    r"""$y = x^2$ with a backward that is right ($2x\bar y$) everywhere except at `BAD`,
    where it is 1.5 times too large."""

    @staticmethod
    def forward(ctx: Context, x: np.ndarray) -> np.ndarray:
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray) -> np.ndarray:
        (x,) = ctx.saved_tensors
        out = 2 * x * grad
        out[BAD] *= 1.5
        return out


def f64(values: object) -> nima.Tensor:
    return nima.tensor(values, dtype=nima.float64, requires_grad=True)


def test_passes_correct_functions_with_scalar_and_non_scalar_outputs() -> None:
    x = f64([[0.5, -1.0, 2.0], [1.5, 0.3, -0.7]])
    y = f64([1.0, 2.0, 3.0])
    assert nima.gradcheck(lambda x: (x * x).sum(), [x]) is True
    assert nima.gradcheck(lambda x, y: x * y.exp(), [x, y]) is True  # (2, 3) output
    assert nima.gradcheck(lambda x: x.tanh(), [f64(0.4)]) is True  # 0-d


@given(x=tensors(shapes(max_side=3)))
def test_passes_on_random_non_contiguous_inputs(x: nima.Tensor) -> None:
    before = x.data.copy()
    assert nima.gradcheck(lambda x: x.sigmoid() * x, [x])
    np.testing.assert_array_equal(x.data, before)  # perturbations are undone


def test_names_input_element_and_both_values_for_a_wrong_backward() -> None:
    x = f64(np.ones((2, 3)))
    z = f64([[0.5, -1.0, 2.0], [1.5, 0.3, -0.7]])
    with pytest.raises(nima.GradcheckError) as caught:
        nima.gradcheck(lambda x, z: x + WrongSquare.apply(z).sum(), [x, z])
    message = str(caught.value)
    assert "input 1 (shape (2, 3)) element (1, 2)" in message
    assert "1 of 6 elements off" in message
    match = re.search(r"analytic (\S+) vs numeric (\S+) ", message)
    assert match is not None, message
    analytic, numeric = float(match[1]), float(match[2])
    # L = <f(x), v> with v drawn from seed 0, so dL/dz[BAD] = 2 z[BAD] * sum(v)
    v = np.random.default_rng(0).standard_normal((2, 3))
    assert numeric == pytest.approx(2 * z.data[BAD] * v.sum(), rel=1e-6)
    assert analytic == pytest.approx(1.5 * numeric, rel=1e-6)


def test_a_gradient_that_is_nan_is_reported() -> None:
    class NanGrad(Function):
        @staticmethod
        def forward(ctx: Context, x: np.ndarray) -> np.ndarray:
            return x * 2

        @staticmethod
        def backward(ctx: Context, grad: np.ndarray) -> np.ndarray:
            out = grad * 2
            out[0] = np.nan
            return out

    with pytest.raises(nima.GradcheckError, match=r"input 0 \(shape \(3,\)\) element \(0,\)"):
        nima.gradcheck(NanGrad.apply, [f64([1.0, 2.0, 3.0])])


def test_missing_gradient_counts_as_zero_and_fails() -> None:
    """x enters the output only through a detached path: analytic 0, numeric 3 v."""
    with pytest.raises(nima.GradcheckError, match=r"input 0 .*analytic 0\.0 vs") as caught:
        nima.gradcheck(lambda x, y: x.detach() * 3.0 + y, [f64([1.0]), f64([2.0])])
    numeric = float(re.search(r"numeric (\S+) ", str(caught.value))[1])
    assert numeric == pytest.approx(3 * np.random.default_rng(0).standard_normal(), rel=1e-6)


def test_refuses_float32_inputs() -> None:
    x32 = nima.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(TypeError, match="input 1 is float32; central differences need float64"):
        nima.gradcheck(lambda a, b: a * b, [f64([1.0, 2.0]), x32])


def test_refuses_inputs_without_grad_and_non_tensor_outputs() -> None:
    with pytest.raises(ValueError, match="no input requires grad"):
        nima.gradcheck(lambda x: x * 2, [nima.tensor([1.0], dtype=nima.float64)])
    with pytest.raises(TypeError, match="fn must return a Tensor, got float"):
        nima.gradcheck(lambda x: 1.0, [f64([1.0])])


def test_inputs_without_grad_are_left_alone() -> None:
    const = nima.tensor([2.0, 3.0], dtype=nima.float64)
    x = f64([1.0, -1.0])
    assert nima.gradcheck(lambda x, c: x * c, [x, const])
    assert const.grad is None


def test_tolerances_are_respected() -> None:
    """A 1e-4 relative error in the backward passes at PyTorch's rtol=1e-3 and fails at the
    default rtol=1e-6."""

    class Slightly(Function):
        @staticmethod
        def forward(ctx: Context, x: np.ndarray) -> np.ndarray:
            return 3 * x

        @staticmethod
        def backward(ctx: Context, grad: np.ndarray) -> np.ndarray:
            return 3 * (1 + 1e-4) * grad

    x = f64([1.0, 2.0])
    assert nima.gradcheck(Slightly.apply, [x], atol=1e-5, rtol=1e-3)
    with pytest.raises(nima.GradcheckError, match=r"atol=1e-08, rtol=1e-06; 2 of 2"):
        nima.gradcheck(Slightly.apply, [x])


def test_central_differences_known_derivatives() -> None:
    x = np.array([0.0, 0.5, 1.0])
    np.testing.assert_allclose(numerical_grad(lambda a: float(np.sin(a).sum()), x), np.cos(x),
                               rtol=1e-8)
    np.testing.assert_allclose(numerical_grad(lambda a: float((a**3).sum()), x), 3 * x**2,
                               atol=1e-8)
    y = np.array([[1.0, 2.0]])
    grad = central_differences(lambda: float(np.exp(y).sum()), y)
    np.testing.assert_allclose(grad, [[math.e, math.e**2]], rtol=1e-8)
    np.testing.assert_array_equal(y, [[1.0, 2.0]])


# ----------------------------------------------------------------------------- mutations
# --8<-- [start:mutate]
def mutate(monkeypatch: pytest.MonkeyPatch, function: type[Function], index: int,
           factor: float = 1.001) -> None:
    """Make `function`'s backward return input `index`'s gradient times `factor`: a backward
    that is wrong by 0.1%, as a plausible bug (a stray constant, a float32 round trip) is."""
    original = function.backward

    def backward(ctx: Context, grad: np.ndarray):
        grads = original(ctx, grad)
        if not isinstance(grads, tuple):
            return grads * factor
        return tuple(g * factor if i == index and g is not None else g
                     for i, g in enumerate(grads))

    monkeypatch.setattr(function, "backward", staticmethod(backward))
# --8<-- [end:mutate]


def _binary(op):
    @st.composite
    def case(draw: st.DrawFn):
        a_shape, b_shape = draw(broadcastable_shapes(2, max_side=3))
        avoid_zero = values(avoid=[0], margin=0.5)
        return op, [draw(tensors(a_shape)), draw(tensors(b_shape, avoid_zero))]
    return case()


@st.composite
def _matmul(draw: st.DrawFn):
    m, k, n = (draw(st.integers(1, 4)) for _ in range(3))
    return nima.ops.matmul, [draw(tensors((m, k))), draw(tensors((k, n)))]


@st.composite
def _rows(draw: st.DrawFn, fn):
    shape = draw(shapes(min_dims=1, max_dims=3, max_side=4))
    return fn, [draw(tensors(shape))]


@st.composite
def _layer_norm(draw: st.DrawFn):
    shape = draw(shapes(min_dims=1, max_dims=3, min_side=2, max_side=4))
    c = shape[-1]
    w, b = draw(tensors((c,), values(0.5, 2))), draw(tensors((c,)))
    x = draw(tensors(shape, values(-0.3, 0.3)))
    x.data += np.arange(c)  # entries >= 0.4 apart: no row is near constant, where rstd explodes
    return (lambda x, w, b: nima.functional.layer_norm(x, c, w, b)), [x, w, b]


MUTATIONS = {  # name: (Function, input index, strategy of (fn, inputs))
    "mul b": (elementwise.Mul, 1, _binary(lambda a, b: a * b)),
    "div a": (elementwise.Div, 0, _binary(lambda a, b: a / b)),
    "matmul b": (linalg.Matmul, 1, _matmul()),
    "exp": (elementwise.Exp, 0, _rows(lambda x: x.exp())),
    "sum": (reduce.Sum, 0, _rows(lambda x: x.sum(-1) * 2)),
    "softmax": (nn_ops.Softmax, 0, _rows(lambda x: x.softmax(-1))),
    "layer_norm weight": (normalization.LayerNorm, 1, _layer_norm()),
}


# --8<-- [start:mutation_test]
@pytest.mark.parametrize("name", MUTATIONS)
@settings(max_examples=20)
@given(data=st.data())
def test_a_backward_wrong_by_a_tenth_of_a_percent_is_caught(
        name: str, data: st.DataObject, monkeypatch_module) -> None:
    """Each mutation: the correct backward passes; the 0.1%-wrong one fails at the defaults,
    wherever its gradient is not negligible, and passes at PyTorch's rtol=1e-3, atol=1e-5."""
    function, index, case = MUTATIONS[name]
    fn, inputs = data.draw(case)
    assert nima.gradcheck(fn, inputs)
    grad = inputs[index].grad
    assume(grad is not None and np.abs(grad).max() > 1e-3)  # else there is nothing to get wrong
    with monkeypatch_module.context() as patch:
        mutate(patch, function, index)
        assert nima.gradcheck(fn, inputs, rtol=1e-3, atol=1e-5)  # the old tolerance: passes
        with pytest.raises(nima.GradcheckError, match=rf"input {index} "):
            nima.gradcheck(fn, inputs)
# --8<-- [end:mutation_test]
