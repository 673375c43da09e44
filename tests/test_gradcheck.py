"""gradcheck itself: it passes correct gradients, catches a wrong one and says where, and refuses
inputs it cannot check reliably."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from hypothesis import given
from strategies import shapes, tensors

import nima
from nima.autograd import Context, Function
from nima.gradcheck import central_differences, numerical_grad

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
    """A 1e-4 relative error in the backward passes at rtol=1e-3 and fails at rtol=1e-6."""

    class Slightly(Function):
        @staticmethod
        def forward(ctx: Context, x: np.ndarray) -> np.ndarray:
            return 3 * x

        @staticmethod
        def backward(ctx: Context, grad: np.ndarray) -> np.ndarray:
            return 3 * (1 + 1e-4) * grad

    x = f64([1.0, 2.0])
    assert nima.gradcheck(Slightly.apply, [x])
    with pytest.raises(nima.GradcheckError):
        nima.gradcheck(Slightly.apply, [x], atol=0.0, rtol=1e-6)


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
