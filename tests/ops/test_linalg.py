"""`matmul`: NumPy parity for every rank combination (1-D, batched, broadcast batch dims),
gradients by central differences, the folded (B·M, K) @ (K, N) path, both kernel backends, and
the errors."""

import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from strategies import broadcastable_shapes, tensors

import nima
from nima import gradcheck, kernels


@st.composite
def operand_shapes(draw: st.DrawFn) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Shapes `(a, b)` valid for `a @ b`: broadcasting batch dims, and sometimes 1-D operands."""
    batch_a, batch_b = draw(broadcastable_shapes(2, min_dims=0, max_dims=2, max_side=3))
    m, k, n = (draw(st.integers(1, 4)) for _ in range(3))
    a = (k,) if not batch_a and draw(st.booleans()) else (*batch_a, m, k)
    b = (k,) if not batch_b and draw(st.booleans()) else (*batch_b, k, n)
    return a, b


@st.composite
def operands(draw: st.DrawFn) -> tuple[nima.Tensor, nima.Tensor]:
    shape_a, shape_b = draw(operand_shapes())
    return draw(tensors(shape_a)), draw(tensors(shape_b))


@given(operands())
def test_matches_numpy(ab: tuple[nima.Tensor, nima.Tensor]) -> None:
    a, b = ab
    out = a @ b
    expected = np.matmul(a.data, b.data)
    assert out.shape == expected.shape
    np.testing.assert_allclose(out.data, expected, rtol=1e-12, atol=1e-12)


# Hypothesis gradchecks run the NumPy kernels: on these tiny arrays one parallel numba launch
# costs more than the work, and gradcheck makes two per element. `test_backends_agree` and
# `test_gradcheck_numba` tie the numba kernels to the same results.
@given(operands())
def test_gradcheck(ab: tuple[nima.Tensor, nima.Tensor]) -> None:
    with kernels.backend("numpy"):
        assert gradcheck(nima.ops.matmul, list(ab))


@given(operands(), st.booleans())
def test_gradcheck_one_input(ab: tuple[nima.Tensor, nima.Tensor], first: bool) -> None:
    a, b = ab
    (b if first else a).requires_grad_(False)
    with kernels.backend("numpy"):
        assert gradcheck(nima.ops.matmul, [a, b])
    assert (b if first else a).grad is None


@pytest.mark.parametrize(("sa", "sb"), [((2, 3, 4), (4, 2)), ((3,), (2, 3, 2)),
                                        ((2, 1, 2, 3), (3, 3, 2))])
def test_gradcheck_numba(sa: tuple[int, ...], sb: tuple[int, ...]) -> None:
    rng = np.random.default_rng(0)
    a = nima.tensor(rng.standard_normal(sa), requires_grad=True)
    b = nima.Tensor(rng.standard_normal(sb[::-1]).T, requires_grad=True)  # a transposed view
    with kernels.backend("numba"):
        assert gradcheck(nima.ops.matmul, [a, b])


def test_dot_of_vectors_is_0d() -> None:
    a = nima.tensor([1.0, 2.0, 3.0], requires_grad=True)
    b = nima.tensor([4.0, 5.0, 6.0], requires_grad=True)
    y = a @ b
    assert y.shape == () and y.item() == 32.0
    y.backward()
    np.testing.assert_array_equal(a.grad, b.data)
    np.testing.assert_array_equal(b.grad, a.data)


def test_vector_matrix_shapes() -> None:
    v, m = nima.ones(3), nima.ones(2, 3, 4)
    assert (v @ m).shape == (2, 4)
    assert (m.transpose(-1, -2) @ v).shape == (2, 4)


# ------------------------------------------------------------------------------ folded batch
def _recording(monkeypatch: pytest.MonkeyPatch) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    calls: list[tuple[tuple[int, ...], tuple[int, ...]]] = []
    inner = kernels.matmul

    def record(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        calls.append((a.shape, b.shape))
        return inner(a, b)

    monkeypatch.setattr(kernels, "matmul", record)
    return calls


def test_shared_weight_folds_batch_into_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    x = nima.tensor(rng.standard_normal((2, 5, 3)), requires_grad=True)  # (B, T, C)
    w = nima.tensor(rng.standard_normal((3, 4)), requires_grad=True)  # (C, N)
    calls = _recording(monkeypatch)
    y = x @ w  # (B, T, N)
    assert calls == [((1, 10, 3), (1, 3, 4))]
    g = rng.standard_normal((2, 5, 4))
    y.backward(g)
    # one call for each gradient; the weight's sums over the batch inside the product
    assert calls[1:] == [((1, 10, 4), (1, 4, 3)), ((3, 10), (10, 4))]
    np.testing.assert_allclose(w.grad, x.data.reshape(10, 3).T @ g.reshape(10, 4))
    np.testing.assert_allclose(x.grad, g @ w.data.T)


def test_size_one_batch_dims_of_b_fold_too(monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = nima.ones(2, 3, 4, 5), nima.ones(1, 1, 5, 6)
    calls = _recording(monkeypatch)
    assert (a @ b).shape == (2, 3, 4, 6)
    assert calls == [((1, 24, 5), (1, 5, 6))]


def test_broadcast_batch_is_one_batched_call(monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = nima.ones(4, 5), nima.ones(3, 5, 6)
    calls = _recording(monkeypatch)
    assert (a @ b).shape == (3, 4, 6)
    assert calls == [((3, 4, 5), (3, 5, 6))]


# ------------------------------------------------------------------------------ backends, dtypes
@given(operand_shapes())
def test_backends_agree(shapes: tuple[tuple[int, ...], tuple[int, ...]]) -> None:
    rng = np.random.default_rng(1)
    a0, b0 = (rng.standard_normal(s).astype(np.float32) for s in shapes)

    def run(backend: str) -> tuple[np.ndarray, ...]:
        with kernels.backend(backend):
            a, b = nima.tensor(a0, requires_grad=True), nima.tensor(b0, requires_grad=True)
            y = a @ b
            y.backward(np.ones(y.shape, dtype=np.float32))
            return y.data, a.grad, b.grad

    for got, want in zip(run("numba"), run("numpy"), strict=True):
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_float32_stays_float32() -> None:
    a = nima.randn(3, 4)
    assert (a @ nima.randn(4, 2)).dtype == np.float32


def test_ndarray_operand_on_the_left() -> None:
    w = nima.tensor(np.eye(3) * 2.0, requires_grad=True)
    y = np.ones((2, 3)) @ w
    np.testing.assert_array_equal(y.data, np.full((2, 3), 2.0))


def test_empty_dimensions() -> None:
    assert (nima.ones(0, 3) @ nima.ones(3, 2)).shape == (0, 2)
    np.testing.assert_array_equal((nima.ones(2, 0) @ nima.ones(0, 3)).data, np.zeros((2, 3)))


# ------------------------------------------------------------------------------ errors
@pytest.mark.parametrize(("sa", "sb"), [((2, 3), (4, 5)), ((3,), (4,)), ((2, 3), (2,)),
                                        ((5, 2, 3), (3, 3, 4))])
def test_shape_mismatch_names_op_and_shapes(sa: tuple[int, ...], sb: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=rf"matmul: .*{re.escape(str(sa))}.*{re.escape(str(sb))}"):
        nima.ones(*sa) @ nima.ones(*sb)


@pytest.mark.parametrize("scalar", [2.0, nima.tensor(2.0)])
def test_0d_operand(scalar: object) -> None:
    with pytest.raises(ValueError, match=r"matmul: both operands need at least 1 dim.*\(3,\)"):
        nima.ones(3) @ scalar


def test_integer_operands_are_refused() -> None:
    with pytest.raises(TypeError, match=r"matmul: .*int64 and int64 \(shapes \(2, 2\) and \(2,\)"):
        nima.tensor([[1, 2], [3, 4]]) @ nima.tensor([1, 2])


def test_float16_is_refused_by_the_kernel() -> None:
    with pytest.raises(TypeError, match=r"matmul: .*float32 or float64.*float16"):
        nima.ones(2, 2, dtype=np.float16) @ nima.ones(2, 2, dtype=np.float16)


def test_mixed_float_dtypes_are_refused() -> None:
    with pytest.raises(TypeError, match=r"matmul: dtype mismatch float32 vs float64"):
        nima.ones(2, 2) @ nima.ones(2, 2, dtype=np.float64)


@st.composite
def linear_operands(draw: st.DrawFn) -> tuple[nima.Tensor, ...]:
    """`x (..., in)`, `weight (out, in)` (sometimes a transposed view) and a bias or None."""
    lead = draw(st.lists(st.integers(1, 3), min_size=0, max_size=2))
    n_in, n_out = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    x = draw(tensors((*lead, n_in)))
    w = draw(tensors((n_out, n_in)))
    if draw(st.booleans()):  # a leaf whose array is a transposed view
        w = nima.Tensor(np.ascontiguousarray(w.data.T).T, requires_grad=True)
    bias = draw(st.one_of(st.none(), tensors((n_out,))))
    return (x, w) if bias is None else (x, w, bias)


@given(linear_operands())
def test_linear_matches_numpy_and_gradcheck(operands: tuple[nima.Tensor, ...]) -> None:
    x, w, *bias = operands
    expected = x.data @ w.data.T + (bias[0].data if bias else 0.0)
    np.testing.assert_allclose(nima.functional.linear(*operands).data, expected, rtol=1e-12,
                               atol=1e-12)
    with kernels.backend("numpy"):
        assert gradcheck(nima.functional.linear, list(operands))


def test_linear_numba_and_errors() -> None:
    rng = np.random.default_rng(0)
    x = nima.tensor(rng.standard_normal((2, 3, 5)), requires_grad=True)
    w = nima.tensor(rng.standard_normal((4, 5)), requires_grad=True)
    b = nima.tensor(rng.standard_normal(4), requires_grad=True)
    with kernels.backend("numba"):
        assert gradcheck(nima.functional.linear, [x, w, b])
    with pytest.raises(ValueError, match=re.escape("linear: expected x (..., in) and weight "
                                                   "(out, in), got (2, 3, 5) and (5, 4)")):
        nima.functional.linear(x, w.T)
    with pytest.raises(ValueError, match=re.escape("bias must have shape (4,), got (5,)")):
        nima.functional.linear(x, w, nima.zeros(5, dtype=nima.float64))
    with pytest.raises(TypeError, match="share one float dtype, got float32, float64"):
        nima.functional.linear(x.float(), w)
