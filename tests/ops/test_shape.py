"""Shape ops: forward parity with NumPy, float64 gradient checks on random (non-contiguous)
inputs, views that share memory, and errors that name the op and the shapes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from strategies import shapes, tensors

import nima
from nima import ops

SMALL = shapes(max_side=3)


def _weights(shape: tuple[int, ...]) -> np.ndarray:
    """Distinct weights in [1, 2), so that a gradient sent to the wrong element shows; bounded,
    so the loss stays small and central differences stay accurate to ~1e-9 (weights up to the
    element count, ~100, left their rounding error near the tolerance)."""
    n = int(np.prod(shape))
    return (1.0 + np.arange(n) / max(n, 1)).reshape(shape)


# ------------------------------------------------------------------------------ reshape / view
@st.composite
def reshape_targets(draw: st.DrawFn, shape: tuple[int, ...]) -> tuple[int, ...]:
    """A shape with the same number of elements, sometimes with one -1 to be inferred."""
    size = int(np.prod(shape))
    candidates = [(size,), shape[::-1], (1, *shape, 1), (size, 1)]
    candidates += [(d, size // d) for d in range(1, size + 1) if size % d == 0]
    target = draw(st.sampled_from(candidates))
    if target and draw(st.booleans()):
        i = draw(st.integers(0, len(target) - 1))
        target = (*target[:i], -1, *target[i + 1:])
    return target


@given(data=st.data())
def test_reshape_and_view(data: st.DataObject) -> None:
    x = data.draw(tensors(SMALL))
    target = data.draw(reshape_targets(x.shape))
    out = x.reshape(target)
    np.testing.assert_array_equal(out.data, x.data.reshape(target))
    np.testing.assert_array_equal(x.view(*target).data, out.data)
    assert nima.gradcheck(lambda x: x.view(target) * _weights(out.shape), [x])


def test_reshape_is_a_view_when_possible() -> None:
    x = nima.zeros(2, 3)
    assert np.shares_memory(x.reshape(3, 2).data, x.data)
    assert np.shares_memory(x.permute(1, 0).data, x.data)
    assert np.shares_memory(x.expand(4, 2, 3).data, x.data)


def test_reshape_rejects_wrong_sizes() -> None:
    x = nima.ones(2, 3)
    for bad in [(4, 2), (-1, 4), (-1, -1), (0, -1)]:
        with pytest.raises(ValueError, match=r"reshape: cannot view a tensor of shape \(2, 3\)"):
            x.reshape(bad)


# ------------------------------------------------------------------------------ permute / transpose
@given(data=st.data())
def test_permute(data: st.DataObject) -> None:
    x = data.draw(tensors(SMALL))
    perm = data.draw(st.permutations(range(x.ndim)))
    signed = tuple(d - x.ndim if data.draw(st.booleans()) else d for d in perm)
    out = x.permute(*signed)
    np.testing.assert_array_equal(out.data, np.transpose(x.data, perm))
    assert nima.gradcheck(lambda x: ops.permute(x, signed) * _weights(out.shape), [x])


@given(data=st.data())
def test_transpose(data: st.DataObject) -> None:
    x = data.draw(tensors(shapes(min_dims=1, max_side=3)))
    a, b = data.draw(st.tuples(st.integers(-x.ndim, x.ndim - 1), st.integers(-x.ndim, x.ndim - 1)))
    out = x.transpose(a, b)
    np.testing.assert_array_equal(out.data, np.swapaxes(x.data, a, b))
    assert nima.gradcheck(lambda x: nima.transpose(x, a, b) * _weights(out.shape), [x])


@given(x=tensors(SMALL))
def test_T_reverses_all_axes(x: nima.Tensor) -> None:
    out = x.T
    np.testing.assert_array_equal(out.data, x.data.T)
    assert nima.gradcheck(lambda x: x.T * _weights(out.shape), [x])


def test_permute_rejects_non_permutations() -> None:
    x = nima.ones(2, 3, 4)
    for bad in [(0, 1), (0, 0, 1), (0, 1, 3), (0, 1, -4)]:
        with pytest.raises(ValueError, match=r"permute: .* not a permutation .*\(2, 3, 4\)"):
            x.permute(bad)


# ------------------------------------------------------------------------------ expand
@st.composite
def expand_targets(draw: st.DrawFn, shape: tuple[int, ...]) -> tuple[int, ...]:
    """Grow size-1 dims, keep others (sometimes written -1), and maybe add leading dims."""
    grown = tuple(draw(st.integers(1, 3)) if n == 1 else (n if draw(st.booleans()) else -1)
                  for n in shape)
    lead = tuple(draw(st.lists(st.integers(1, 3), max_size=4 - len(shape))))
    return lead + grown


@given(data=st.data())
def test_expand(data: st.DataObject) -> None:
    x = data.draw(tensors(SMALL))
    target = data.draw(expand_targets(x.shape))
    out = x.expand(target)
    full = tuple(n if n != -1 else x.shape[i - (len(target) - x.ndim)] for i, n in
                 enumerate(target))
    assert out.shape == full
    np.testing.assert_array_equal(out.data, np.broadcast_to(x.data, full))
    assert nima.gradcheck(lambda x: nima.expand(x, target) * _weights(full), [x])


def test_expand_gradient_sums_copies() -> None:
    x = nima.tensor([[1.0], [2.0]], requires_grad=True)  # (2, 1)
    x.expand(3, 2, 4).backward(np.ones((3, 2, 4)))
    np.testing.assert_array_equal(x.grad, [[12.0], [12.0]])


def test_expand_rejects_bad_targets() -> None:
    x = nima.ones(2, 1)
    for bad in [(3, 1), (1,), (-1, 2, 2)]:
        with pytest.raises(ValueError, match=r"expand: cannot expand shape \(2, 1\)"):
            x.expand(bad)


# ------------------------------------------------------------------ squeeze / unsqueeze / flatten
@given(data=st.data())
def test_squeeze(data: st.DataObject) -> None:
    x = data.draw(tensors(shapes(max_side=2)))  # sides of 1 and 2: plenty of size-1 dims
    dim = data.draw(st.none() | st.integers(-x.ndim, x.ndim - 1) if x.ndim else st.none())
    out = x.squeeze(dim)
    if dim is None:
        expected = np.squeeze(x.data)
    else:
        expected = np.squeeze(x.data, dim) if x.shape[dim] == 1 else x.data  # as PyTorch
    assert out.shape == expected.shape
    np.testing.assert_array_equal(out.data, expected)
    assert nima.gradcheck(lambda x: nima.squeeze(x, dim) * _weights(out.shape), [x])


def test_squeeze_tuple_of_dims() -> None:
    x = nima.zeros(1, 2, 1, 1)
    assert x.squeeze((0, -1)).shape == (2, 1)
    assert x.squeeze((1,)).shape == (1, 2, 1, 1)


@given(data=st.data())
def test_unsqueeze(data: st.DataObject) -> None:
    x = data.draw(tensors(SMALL))
    dim = data.draw(st.integers(-x.ndim - 1, x.ndim))
    out = x.unsqueeze(dim)
    np.testing.assert_array_equal(out.data, np.expand_dims(x.data, dim))
    assert nima.gradcheck(lambda x: nima.unsqueeze(x, dim) * _weights(out.shape), [x])


@given(data=st.data())
def test_flatten(data: st.DataObject) -> None:
    x = data.draw(tensors(shapes(min_dims=1, max_side=3)))
    start = data.draw(st.integers(0, x.ndim - 1))
    end = data.draw(st.integers(start, x.ndim - 1))
    start -= x.ndim * data.draw(st.booleans())
    out = x.flatten(start, end)
    s = start % x.ndim
    expected_shape = (*x.shape[:s], int(np.prod(x.shape[s:end + 1])), *x.shape[end + 1:])
    np.testing.assert_array_equal(out.data, x.data.reshape(expected_shape))
    assert nima.gradcheck(lambda x: nima.flatten(x, start, end) * _weights(out.shape), [x])


def test_flatten_edge_cases() -> None:
    assert nima.ones(2, 3, 4).flatten().shape == (24,)
    assert nima.ones(2, 3, 4).flatten(1).shape == (2, 12)
    assert nima.tensor(3.0).flatten().shape == (1,)
    with pytest.raises(ValueError, match="flatten: start_dim 2 comes after end_dim 1"):
        nima.ones(2, 3, 4).flatten(2, 1)


# ------------------------------------------------------------------------------ cat / stack
@st.composite
def cat_inputs(draw: st.DrawFn) -> tuple[list[nima.Tensor], int]:
    """2-3 tensors that agree on every dim except `dim`."""
    shape = draw(shapes(min_dims=1, max_side=3))
    dim = draw(st.integers(-len(shape), len(shape) - 1))
    parts = []
    for _ in range(draw(st.integers(2, 3))):
        part = list(shape)
        part[dim] = draw(st.integers(1, 3))
        parts.append(draw(tensors(tuple(part))))
    return parts, dim


@given(inputs=cat_inputs())
def test_cat(inputs: tuple[list[nima.Tensor], int]) -> None:
    parts, dim = inputs
    out = nima.cat(parts, dim)
    np.testing.assert_array_equal(out.data, np.concatenate([p.data for p in parts], axis=dim))
    assert nima.gradcheck(lambda *ps: nima.cat(ps, dim) * _weights(out.shape), parts)


@given(data=st.data())
def test_stack(data: st.DataObject) -> None:
    shape = data.draw(SMALL)
    parts = [data.draw(tensors(shape)) for _ in range(data.draw(st.integers(1, 3)))]
    dim = data.draw(st.integers(-len(shape) - 1, len(shape)))
    out = nima.stack(parts, dim)
    np.testing.assert_array_equal(out.data, np.stack([p.data for p in parts], axis=dim))
    assert nima.gradcheck(lambda *ps: nima.stack(ps, dim) * _weights(out.shape), parts)


def test_cat_with_an_input_that_needs_no_grad() -> None:
    a = nima.tensor([1.0, 2.0], requires_grad=True)
    b = nima.tensor([3.0])
    nima.cat([b, a]).backward(np.array([10.0, 20.0, 30.0]))
    np.testing.assert_array_equal(a.grad, [20.0, 30.0])
    assert b.grad is None


def test_cat_and_stack_errors_name_the_shapes() -> None:
    with pytest.raises(ValueError, match=r"cat: shapes \[\(2, 3\), \(2, 4\)\] do not match "
                                         r"outside dim 0"):
        nima.cat([nima.ones(2, 3), nima.ones(2, 4)])
    with pytest.raises(ValueError, match=r"stack: shapes \[\(2,\), \(3,\)\] do not match"):
        nima.stack([nima.ones(2), nima.ones(3)])
    with pytest.raises(TypeError, match="cat: dtypes"):
        nima.cat([nima.ones(2), nima.ones(2, dtype=nima.float64)])
    with pytest.raises(ValueError, match="cat: expected a non-empty"):
        nima.cat([])


# ------------------------------------------------------------------------- split / chunk / narrow
@st.composite
def split_inputs(draw: st.DrawFn) -> tuple[nima.Tensor, int]:
    x = draw(tensors(shapes(min_dims=1, max_side=4)))
    return x, draw(st.integers(-x.ndim, x.ndim - 1))


def _weighted_pieces(pieces: tuple[nima.Tensor, ...], dim: int) -> nima.Tensor:
    """Put the pieces back together, each scaled differently, so a misplaced gradient shows."""
    return nima.cat([p * (k + 1.0) for k, p in enumerate(pieces)], dim)


@given(inputs=split_inputs(), size=st.integers(1, 4))
def test_split_by_size(inputs: tuple[nima.Tensor, int], size: int) -> None:
    x, dim = inputs
    pieces = x.split(size, dim)
    n = x.shape[dim]
    expected = np.split(x.data, range(size, n, size), axis=dim)
    assert len(pieces) == len(expected) == -(-n // size)
    for piece, e in zip(pieces, expected, strict=True):
        np.testing.assert_array_equal(piece.data, e)
    assert nima.gradcheck(lambda x: _weighted_pieces(nima.split(x, size, dim), dim), [x])


@given(inputs=split_inputs(), data=st.data())
def test_split_by_sizes(inputs: tuple[nima.Tensor, int], data: st.DataObject) -> None:
    x, dim = inputs
    n = x.shape[dim]
    cuts = sorted(data.draw(st.lists(st.integers(0, n), max_size=3)))
    sizes = list(np.diff([0, *cuts, n]))
    pieces = x.split(sizes, dim)
    assert [p.shape[dim] for p in pieces] == sizes
    np.testing.assert_array_equal(nima.cat(pieces, dim).data, x.data)
    assert nima.gradcheck(lambda x: _weighted_pieces(nima.split(x, sizes, dim), dim), [x])


@given(inputs=split_inputs(), chunks=st.integers(1, 5))
def test_chunk(inputs: tuple[nima.Tensor, int], chunks: int) -> None:
    x, dim = inputs
    pieces = x.chunk(chunks, dim)
    n = x.shape[dim]
    size = -(-n // chunks)
    assert [p.shape[dim] for p in pieces] == [min(size, n - s) for s in range(0, n, size)]
    assert len(pieces) <= chunks
    np.testing.assert_array_equal(nima.cat(pieces, dim).data, x.data)
    assert nima.gradcheck(lambda x: _weighted_pieces(nima.chunk(x, chunks, dim), dim), [x])


def test_chunk_sizes_as_pytorch() -> None:
    assert [p.shape[0] for p in nima.ones(5).chunk(3)] == [2, 2, 1]
    assert [p.shape[0] for p in nima.ones(6).chunk(4)] == [2, 2, 2]  # fewer than 4 chunks
    assert [p.shape[1] for p in nima.ones(2, 3).chunk(5, dim=-1)] == [1, 1, 1]


def test_split_errors() -> None:
    x = nima.ones(4, 2)
    with pytest.raises(ValueError, match=r"split: sizes \[1, 2\] do not add up to 4"):
        x.split([1, 2])
    with pytest.raises(ValueError, match="split_size must be positive"):
        x.split(0)
    with pytest.raises(ValueError, match="chunks must be positive"):
        x.chunk(0)


@given(inputs=split_inputs(), data=st.data())
def test_narrow(inputs: tuple[nima.Tensor, int], data: st.DataObject) -> None:
    x, dim = inputs
    n = x.shape[dim]
    start = data.draw(st.integers(0, n - 1))
    length = data.draw(st.integers(1, n - start))
    out = ops.narrow(x, dim, start, length)
    np.testing.assert_array_equal(out.data, np.take(x.data, range(start, start + length), dim))
    assert nima.gradcheck(lambda x: ops.narrow(x, dim, start, length) * _weights(out.shape), [x])


def test_narrow_gradient_is_zero_outside_the_slice() -> None:
    x = nima.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], requires_grad=True)
    ops.narrow(x, 1, 1, 2).backward(np.array([[1.0, 2.0], [3.0, 4.0]]))
    np.testing.assert_array_equal(x.grad, [[0.0, 1.0, 2.0], [0.0, 3.0, 4.0]])
    with pytest.raises(IndexError, match=r"narrow: \[2, 4\) is outside dim 1 of \(2, 3\)"):
        ops.narrow(x, 1, 2, 2)


# ------------------------------------------------------------------------------ tril / triu
@pytest.mark.parametrize("lower", [True, False])
@given(x=tensors(shapes(min_dims=2, max_side=3)), diagonal=st.integers(-2, 2))
def test_tril_triu(lower: bool, x: nima.Tensor, diagonal: int) -> None:
    fn, reference = (nima.tril, np.tril) if lower else (nima.triu, np.triu)
    out = fn(x, diagonal)
    np.testing.assert_array_equal(out.data, reference(x.data, diagonal))
    assert nima.gradcheck(lambda x: fn(x, diagonal) * _weights(out.shape), [x])


def test_tril_gradient_by_hand() -> None:
    x = nima.ones(2, 2, requires_grad=True)
    x.tril().backward(np.array([[1.0, 2.0], [3.0, 4.0]]))
    np.testing.assert_array_equal(x.grad, [[1.0, 0.0], [3.0, 4.0]])
    x.grad = None
    x.triu(1).backward(np.array([[1.0, 2.0], [3.0, 4.0]]))
    np.testing.assert_array_equal(x.grad, [[0.0, 2.0], [0.0, 0.0]])
    with pytest.raises(ValueError, match=r"tril: needs at least 2 dims, got shape \(3,\)"):
        nima.tril(nima.ones(3))


def test_dim_out_of_range_names_the_op() -> None:
    x = nima.ones(2, 3)
    with pytest.raises(IndexError, match="transpose: dim 2 is out of range"):
        x.transpose(0, 2)
    with pytest.raises(IndexError, match="unsqueeze: dim 3 is out of range"):
        x.unsqueeze(3)
    with pytest.raises(IndexError, match="cat: dim -3"):
        nima.cat([x, x], -3)


def test_transpose_of_a_0d_tensor_is_itself_and_bad_dims_are_named() -> None:
    x = nima.tensor(2.5, requires_grad=True)
    y = x.transpose(0, -1)
    assert y.shape == () and y.item() == 2.5
    y.backward()
    assert x.grad == 1.0
    with pytest.raises(IndexError, match="transpose: dim 1 is out of range"):
        x.transpose(0, 1)
