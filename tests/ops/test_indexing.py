"""`x[index]`: forward parity with NumPy and gradients for basic, integer-array and bool-mask
indexing, including repeated indices (which must accumulate)."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from strategies import arrays, shapes, tensors

import nima
from nima import gradcheck


def check(x: nima.Tensor, index: object) -> None:
    """Forward equals NumPy's `x[index]`; the gradient passes the numerical check."""
    np.testing.assert_array_equal(x[index].data, x.data[index])
    assert gradcheck(lambda t: t[index], [x])


# ------------------------------------------------------------------------------ hypothesis
@st.composite
def basic_case(draw: st.DrawFn) -> tuple[nima.Tensor, object]:
    shape = draw(shapes(min_dims=2))
    index = draw(hnp.basic_indices(shape, allow_newaxis=True))
    return draw(tensors(shape)), index


@given(basic_case())
def test_basic_indexing(case: tuple[nima.Tensor, object]) -> None:
    check(*case)


@given(st.data())
def test_slices_of_a_vector(data: st.DataObject) -> None:
    x = data.draw(tensors(shapes(min_dims=1, max_dims=1, max_side=6)))
    check(x, data.draw(st.slices(x.shape[0])))


@st.composite
def integer_array_case(draw: st.DrawFn) -> tuple[nima.Tensor, tuple[np.ndarray, ...]]:
    shape = draw(shapes(min_dims=1, max_dims=3))
    index = draw(hnp.integer_array_indices(shape, result_shape=shapes(min_dims=1, max_dims=2)))
    return draw(tensors(shape)), index


@given(integer_array_case())
def test_integer_array_indexing(case: tuple[nima.Tensor, tuple[np.ndarray, ...]]) -> None:
    check(*case)  # small index ranges make repeated indices common


@given(st.data())
def test_integer_array_mixed_with_slices(data: st.DataObject) -> None:
    shape = data.draw(shapes(min_dims=2, max_dims=4))
    x = data.draw(tensors(shape))
    axis = data.draw(st.integers(0, len(shape) - 1))
    ids = data.draw(st.lists(st.integers(-shape[axis], shape[axis] - 1), min_size=1, max_size=5))
    check(x, (slice(None),) * axis + (ids,))
    check(x, (slice(None, None, -1),) * axis + (np.array(ids), Ellipsis))


@given(st.data())
def test_bool_mask_indexing(data: st.DataObject) -> None:
    shape = data.draw(shapes(min_dims=1, max_dims=3))
    x = data.draw(tensors(shape))
    lead = data.draw(st.integers(1, len(shape)))
    mask = data.draw(hnp.arrays(np.bool_, shape[:lead]))
    check(x, mask)
    check(x, nima.Tensor(mask))


@given(tensors(shapes(min_dims=2, max_dims=2)))
def test_two_integer_arrays_broadcast_together(x: nima.Tensor) -> None:
    rows = np.array([[0], [x.shape[0] - 1]])  # (2, 1)
    cols = np.array([0, x.shape[1] - 1, 0])  # (3,), repeats column 0
    check(x, (rows, cols))


# ------------------------------------------------------------------------------ known answers
def test_repeated_rows_accumulate() -> None:
    x = nima.tensor(np.arange(12.0).reshape(3, 4), requires_grad=True)
    x[[0, 0, 2]].sum().backward()
    np.testing.assert_array_equal(x.grad, np.array([[2.0] * 4, [0.0] * 4, [1.0] * 4]))


def test_repeated_index_tensor_accumulates() -> None:
    x = nima.tensor([1.0, 2.0, 3.0], requires_grad=True)
    y = x[nima.tensor([2, 2, 2, 0])]
    np.testing.assert_array_equal(y.data, [3.0, 3.0, 3.0, 1.0])
    y.backward(np.array([1.0, 10.0, 100.0, 5.0]))
    np.testing.assert_array_equal(x.grad, [5.0, 0.0, 111.0])


def test_bool_mask_gradient_is_the_mask() -> None:
    x = nima.tensor([[1.0, -2.0], [-3.0, 4.0]], requires_grad=True)
    y = x[x.data > 0]
    np.testing.assert_array_equal(y.data, [1.0, 4.0])
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, [[1.0, 0.0], [0.0, 1.0]])


def test_int_index_gives_0d_and_scatters_back() -> None:
    x = nima.tensor([1.0, 2.0, 3.0], requires_grad=True)
    y = x[-1]
    assert y.shape == ()
    y.backward()
    np.testing.assert_array_equal(x.grad, [0.0, 0.0, 1.0])


def test_basic_index_is_a_view() -> None:
    x = nima.tensor(np.arange(6.0).reshape(2, 3))
    assert np.shares_memory(x[:, ::2].data, x.data)
    assert not np.shares_memory(x[[0, 1]].data, x.data)


def test_new_axis_and_ellipsis() -> None:
    x = nima.tensor(np.arange(24.0).reshape(2, 3, 4))
    assert x[None, ..., 1].shape == (1, 2, 3)
    assert x[..., None, ::2].shape == (2, 3, 1, 2)


def test_empty_list_selects_nothing() -> None:
    x = nima.tensor(np.ones((3, 2)), requires_grad=True)
    y = x[[]]
    assert y.shape == (0, 2)
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, np.zeros((3, 2)))


@given(arrays((3, 4)))
def test_gradient_of_strided_input(data: np.ndarray) -> None:
    x = nima.Tensor(data, requires_grad=True)
    check(x, (slice(None), [3, 0, 3]))


# ------------------------------------------------------------------------------ errors
@pytest.mark.parametrize("index", [5, (0, 4), [0, 3], (slice(None), np.array([-5]))])
def test_out_of_range_names_op_index_and_shape(index: object) -> None:
    x = nima.zeros(3, 4)
    with pytest.raises(IndexError, match=r"getitem: .*shape \(3, 4\)"):
        x[index]


def test_out_of_range_message_shows_the_index() -> None:
    with pytest.raises(IndexError, match=r"getitem: .*\(3, 4\) with \[:, \[0, 7\]\]"):
        nima.zeros(3, 4)[:, [0, 7]]


def test_mask_of_wrong_shape() -> None:
    with pytest.raises(IndexError, match=r"getitem: .*shape \(3,\)"):
        nima.zeros(3)[np.array([True, False])]


@pytest.mark.parametrize("index", [nima.tensor([0.0, 1.0]), np.array([1.5]), [0.0], 1.0, "a"])
def test_float_or_other_indices_are_type_errors(index: object) -> None:
    with pytest.raises(TypeError, match="getitem: indices must be integers"):
        nima.zeros(3)[index]
