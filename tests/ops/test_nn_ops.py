"""softmax, log_softmax, cross_entropy, one_hot, embedding: parity with direct NumPy formulas,
gradients by central differences, masked and huge logits, both kernel backends, errors."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from strategies import arrays, shapes, tensors

import nima
import nima.functional as F
from nima import gradcheck, kernels


def softmax_reference(x: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def cross_entropy_reference(z: np.ndarray, t: np.ndarray, reduction: str, ignore_index: int,
                            eps: float) -> np.ndarray:
    """$(1 - \\epsilon)(-\\log p_t) + \\epsilon \\cdot \\text{mean}_c(-\\log p_c)$ per row."""
    n_classes = z.shape[-1]
    z2, t2 = z.reshape(-1, n_classes), t.reshape(-1)
    logp = np.log(softmax_reference(z2, -1))
    keep = t2 != ignore_index
    nll = -logp[np.arange(len(t2)), np.where(keep, t2, 0)]
    losses = np.where(keep, (1 - eps) * nll - eps * logp.mean(axis=-1), 0.0)
    if reduction == "none":
        return losses.reshape(t.shape)
    if reduction == "sum":
        return losses.sum()
    return losses.sum() / max(keep.sum(), 1)


@st.composite
def with_dim(draw: st.DrawFn) -> tuple[nima.Tensor, int]:
    x = draw(tensors(shapes(min_dims=0, max_dims=4), elements=st.floats(-5, 5)))
    span = max(x.ndim, 1)
    return x, draw(st.integers(-span, span - 1))


# ------------------------------------------------------------------------------ softmax
@given(with_dim())
def test_softmax_matches_numpy(case: tuple[nima.Tensor, int]) -> None:
    x, dim = case
    expected = softmax_reference(x.data, dim if x.ndim else None)
    np.testing.assert_allclose(nima.ops.softmax(x, dim).data, expected, rtol=1e-12, atol=1e-15)


@given(with_dim())
def test_log_softmax_matches_numpy(case: tuple[nima.Tensor, int]) -> None:
    x, dim = case
    expected = np.log(softmax_reference(x.data, dim if x.ndim else None))
    np.testing.assert_allclose(x.log_softmax(dim).data, expected, rtol=1e-12, atol=1e-12)


# Hypothesis gradchecks run the NumPy kernels: on these tiny arrays one parallel numba launch
# costs more than the work, and gradcheck makes two per element. `test_backends_agree` and
# `test_gradcheck_numba` tie the numba kernels to the same results.
@given(with_dim())
def test_softmax_gradcheck(case: tuple[nima.Tensor, int]) -> None:
    x, dim = case
    with kernels.backend("numpy"):
        assert gradcheck(lambda t: t.softmax(dim), [x])


@given(with_dim())
def test_log_softmax_gradcheck(case: tuple[nima.Tensor, int]) -> None:
    x, dim = case
    with kernels.backend("numpy"):
        assert gradcheck(lambda t: nima.ops.log_softmax(t, dim), [x])


@pytest.mark.parametrize("fn", [
    lambda x: F.softmax(x, dim=1),
    lambda x: F.log_softmax(x, dim=-1),
    lambda x: F.cross_entropy(x, np.array([[0, 3, -100], [2, 1, 1]]), label_smoothing=0.2),
])
def test_gradcheck_numba(fn: object) -> None:
    x = nima.Tensor(np.random.default_rng(0).standard_normal((4, 3, 2)).T, requires_grad=True)
    with kernels.backend("numba"):
        assert gradcheck(fn, [x])


@pytest.mark.parametrize("fn", [F.softmax, F.log_softmax])
def test_huge_and_masked_logits_stay_finite(fn: object) -> None:
    x = nima.tensor(np.array([[1e4, -1e4, 0.0, -np.inf],
                              [-1e4, -1e4, -np.inf, -1e4],
                              [1e4, 1e4 - 1.0, -np.inf, -np.inf]]), requires_grad=True)
    y = fn(x, dim=-1)
    p = np.exp(y.data) if fn is F.log_softmax else y.data
    expected = np.array([[1.0, 0.0, 0.0, 0.0],
                         [1 / 3, 1 / 3, 0.0, 1 / 3],
                         [1 / (1 + np.exp(-1.0)), 1 / (1 + np.exp(1.0)), 0.0, 0.0]])
    np.testing.assert_allclose(p, expected, rtol=1e-9, atol=1e-300)
    finite = np.isfinite(x.data)
    assert np.isfinite(y.data[finite]).all()
    y.backward(np.where(finite, np.arange(12.0).reshape(3, 4), 0.0))
    assert np.isfinite(x.grad).all()
    assert (x.grad[~finite] == 0).all()


def test_fully_masked_row_gives_zeros() -> None:
    x = nima.tensor([[-np.inf, -np.inf], [0.0, 0.0]], requires_grad=True)
    y = x.softmax(-1)
    np.testing.assert_array_equal(y.data, [[0.0, 0.0], [0.5, 0.5]])
    y.backward(np.ones((2, 2)))
    np.testing.assert_array_equal(x.grad, np.zeros((2, 2)))


def test_softmax_known_answer_and_jvp() -> None:
    x = nima.tensor([0.0, np.log(3.0)], requires_grad=True)
    y = x.softmax()
    np.testing.assert_allclose(y.data, [0.25, 0.75])
    y.backward(np.array([1.0, 0.0]))  # $y_0 (1 - y_0) = 3/16$, $-y_0 y_1 = -3/16$
    np.testing.assert_allclose(x.grad, [3 / 16, -3 / 16])


# ------------------------------------------------------------------------------ cross-entropy
@st.composite
def ce_case(draw: st.DrawFn) -> tuple[nima.Tensor, np.ndarray, str, float]:
    lead = draw(shapes(min_dims=1, max_dims=3))
    n_classes = draw(st.integers(1, 5))
    logits = draw(tensors((*lead, n_classes), elements=st.floats(-5, 5)))
    target = draw(arrays(lead, elements=st.sampled_from([-100, *range(n_classes)]),
                         dtype=np.int64))
    return logits, target, draw(st.sampled_from(["mean", "sum", "none"])), draw(
        st.sampled_from([0.0, 0.1, 0.5]))


@given(ce_case())
def test_cross_entropy_matches_formula(case: tuple[nima.Tensor, np.ndarray, str, float]) -> None:
    logits, target, reduction, eps = case
    loss = F.cross_entropy(logits, target, reduction=reduction, label_smoothing=eps)
    expected = cross_entropy_reference(logits.data, target, reduction, -100, eps)
    assert loss.shape == np.shape(expected)
    np.testing.assert_allclose(loss.data, expected, rtol=1e-10, atol=1e-12)


@given(ce_case())
def test_cross_entropy_gradcheck(case: tuple[nima.Tensor, np.ndarray, str, float]) -> None:
    logits, target, reduction, eps = case
    with kernels.backend("numpy"):
        assert gradcheck(lambda z: F.cross_entropy(z, nima.tensor(target), reduction=reduction,
                                                   label_smoothing=eps), [logits])


def test_cross_entropy_gradient_formula() -> None:
    z = nima.tensor(np.array([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]]), requires_grad=True)
    eps = 0.3
    F.cross_entropy(z, [2, 0], reduction="sum", label_smoothing=eps).backward()
    onehot = np.eye(3)[[2, 0]]
    expected = softmax_reference(z.data, -1) - (1 - eps) * onehot - eps / 3
    np.testing.assert_allclose(z.grad, expected, rtol=1e-12)


def test_cross_entropy_known_answer() -> None:
    assert F.cross_entropy(nima.tensor([[0.0, 0.0]]), [1]).item() == pytest.approx(np.log(2))


def test_mean_divides_by_non_ignored_targets() -> None:
    z = nima.tensor(np.zeros((4, 2)), requires_grad=True)
    loss = F.cross_entropy(z, [0, -100, 1, -100])
    assert loss.item() == pytest.approx(np.log(2))  # (2 log 2) / 2, not / 4
    loss.backward()
    np.testing.assert_allclose(z.grad, [[-0.25, 0.25], [0, 0], [0.25, -0.25], [0, 0]])


def test_custom_ignore_index() -> None:
    z = nima.tensor([[0.0, 5.0], [1.0, 0.0]])
    loss = F.cross_entropy(z, [1, 0], ignore_index=1, reduction="none")
    assert loss.data[0] == 0.0 and loss.data[1] == pytest.approx(np.log1p(np.exp(-1.0)))


def test_all_ignored_gives_zero_loss_and_zero_grad() -> None:
    z = nima.tensor(np.ones((2, 3, 4)), requires_grad=True)
    loss = F.cross_entropy(z, np.full((2, 3), -100))
    assert loss.item() == 0.0
    loss.backward()
    np.testing.assert_array_equal(z.grad, np.zeros((2, 3, 4)))


def test_class_dim_is_last() -> None:
    rng = np.random.default_rng(0)
    z = rng.standard_normal((2, 3, 5))  # (B, T, C)
    t = rng.integers(0, 5, (2, 3))
    loss = F.cross_entropy(nima.tensor(z), t, reduction="none")
    np.testing.assert_allclose(loss.data, cross_entropy_reference(z, t, "none", -100, 0.0))


def test_cross_entropy_float32() -> None:
    z = nima.randn(4, 7, requires_grad=True)
    loss = F.cross_entropy(z, [0, 1, 6, 3])
    loss.backward()
    assert loss.dtype == np.float32 and z.grad.dtype == np.float32
    np.testing.assert_allclose(loss.item(), cross_entropy_reference(
        z.data.astype(np.float64), np.array([0, 1, 6, 3]), "mean", -100, 0.0), rtol=1e-5)


def test_cross_entropy_errors() -> None:
    z = nima.zeros(4, 3)
    with pytest.raises(TypeError, match=r"cross_entropy: target must be integers, got float64"):
        F.cross_entropy(z, np.zeros(4))
    with pytest.raises(ValueError, match=r"cross_entropy: logits of shape \(4, 3\).*got \(3,\)"):
        F.cross_entropy(z, [0, 1, 2])
    with pytest.raises(ValueError, match=r"cross_entropy: target 3 is out of range for 3 classes"):
        F.cross_entropy(z, [0, 1, 2, 3])
    with pytest.raises(ValueError, match=r"cross_entropy: target -1 is out of range"):
        F.cross_entropy(z, [0, -1, 2, 0])
    with pytest.raises(ValueError, match="cross_entropy: reduction"):
        F.cross_entropy(z, [0, 1, 2, 0], reduction="avg")
    with pytest.raises(ValueError, match="cross_entropy: label_smoothing"):
        F.cross_entropy(z, [0, 1, 2, 0], label_smoothing=1.5)
    with pytest.raises(TypeError, match="cross_entropy: needs a floating-point tensor"):
        F.cross_entropy(nima.tensor([[1, 2]]), [0])


# ------------------------------------------------------------------------------ backends
@given(st.data())
def test_backends_agree(data: st.DataObject) -> None:
    shape = data.draw(shapes(min_dims=1, max_dims=3, max_side=5))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    x0 = (rng.standard_normal(shape) * 3).astype(np.float32)
    x0[rng.random(shape) < 0.2] = -np.inf
    g0 = rng.standard_normal(shape).astype(np.float32)
    t0 = rng.integers(-1, shape[-1], shape[:-1])  # -1 is ignored below
    z0 = np.where(np.isinf(x0), 0, x0)

    def run(backend: str) -> list[np.ndarray]:
        out = []
        with kernels.backend(backend):
            for fn in (F.softmax, F.log_softmax):
                x = nima.tensor(x0, requires_grad=True)
                y = fn(x, dim=0)
                y.backward(g0)
                out += [y.data, x.grad]
            z = nima.tensor(z0, requires_grad=True)
            loss = F.cross_entropy(z, t0, ignore_index=-1, label_smoothing=0.1)
            loss.backward()
            out += [loss.data, z.grad]
        return out

    for got, want in zip(run("numba"), run("numpy"), strict=True):
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------ one_hot
@given(st.data())
def test_one_hot_matches_eye(data: st.DataObject) -> None:
    n_classes = data.draw(st.integers(1, 6))
    ids = data.draw(arrays(data.draw(shapes(max_dims=3)),
                           elements=st.integers(0, n_classes - 1), dtype=np.int64))
    out = F.one_hot(nima.tensor(ids), n_classes)
    assert out.dtype == np.float32 and not out.requires_grad
    np.testing.assert_array_equal(out.data, np.eye(n_classes)[ids])


def test_one_hot_options_and_errors() -> None:
    np.testing.assert_array_equal(F.one_hot([0, 2]).data, [[1, 0, 0], [0, 0, 1]])
    assert F.one_hot([1], 3, dtype=np.int64).dtype == np.int64
    with pytest.raises(ValueError, match=r"one_hot: indices must be in \[0, 3\)"):
        F.one_hot([0, 3], 3)
    with pytest.raises(TypeError, match="one_hot: indices must be integers, got float64"):
        F.one_hot(np.array([0.0]), 3)


# ------------------------------------------------------------------------------ embedding
@given(st.data())
def test_embedding_matches_fancy_indexing_and_gradcheck(data: st.DataObject) -> None:
    weight = data.draw(tensors(data.draw(shapes(min_dims=2, max_dims=2, max_side=5))))
    ids = data.draw(arrays(data.draw(shapes(max_dims=3)),
                           elements=st.integers(0, weight.shape[0] - 1), dtype=np.int64))
    np.testing.assert_array_equal(F.embedding(ids, weight).data, weight.data[ids])
    assert gradcheck(lambda w: F.embedding(nima.tensor(ids), w), [weight])


def test_embedding_repeated_ids_accumulate() -> None:
    weight = nima.tensor(np.zeros((4, 2)), requires_grad=True)
    out = F.embedding(nima.tensor([[3, 1], [3, 3]]), weight)
    out.backward(np.arange(8.0).reshape(2, 2, 2))
    # id 3 at positions (0,0), (1,0), (1,1): rows [0, 1] + [4, 5] + [6, 7]
    np.testing.assert_array_equal(weight.grad, [[0, 0], [2, 3], [0, 0], [10, 13]])


def test_embedding_errors() -> None:
    weight = nima.zeros(5, 3)
    with pytest.raises(IndexError, match=r"embedding: indices must be in \[0, 5\).*\(5, 3\)"):
        F.embedding([0, 5], weight)
    with pytest.raises(IndexError, match="embedding: indices must be in"):
        F.embedding([-1], weight)
    with pytest.raises(TypeError, match="embedding: indices must be integers, got float32"):
        F.embedding(nima.zeros(2), weight)
    with pytest.raises(ValueError, match=r"embedding: weight must be 2-D.*\(5,\)"):
        F.embedding([0], nima.zeros(5))


# ------------------------------------------------------------------------------ namespace
def test_functional_namespace_reexports_the_ops() -> None:
    assert F.softmax is nima.ops.softmax and F.cross_entropy is nima.ops.cross_entropy
    assert F.relu is nima.ops.relu and F.gelu is nima.ops.gelu
    assert sorted(F.__all__) == F.__all__ and all(hasattr(F, name) for name in F.__all__)


def test_softmax_rejects_integer_input() -> None:
    with pytest.raises(TypeError, match=r"softmax: needs a floating-point tensor, got int64"):
        nima.tensor([1, 2]).softmax()
