"""Layers against NumPy formulas and central differences: Linear, Embedding, the activation
modules, LayerNorm / RMSNorm (modules cast with `.double()` for float64 gradchecks), Dropout in
train and eval mode."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import shapes, tensors

import nima
import nima.functional as F
from nima import gradcheck, kernels, nn

batch_shapes = shapes(min_dims=0, max_dims=3, max_side=3)


def f64(shape: tuple[int, ...], seed: int = 0, requires_grad: bool = True) -> nima.Tensor:
    data = np.random.default_rng(seed).standard_normal(shape)
    return nima.Tensor(data, requires_grad=requires_grad)


# ------------------------------------------------------------------------------ Linear
@settings(max_examples=20)
@given(batch_shapes, st.integers(1, 5), st.integers(1, 5), st.booleans())
def test_linear_matches_numpy(batch: tuple[int, ...], d_in: int, d_out: int,
                              bias: bool) -> None:
    lin = nn.Linear(d_in, d_out, bias=bias).double()
    x = f64((*batch, d_in), requires_grad=False)
    expected = x.data @ lin.weight.data.T + (lin.bias.data if bias else 0.0)
    y = lin(x)
    assert y.shape == (*batch, d_out) and y.dtype == np.float64
    np.testing.assert_allclose(y.data, expected, rtol=1e-12, atol=1e-12)


def test_linear_without_bias() -> None:
    lin = nn.Linear(3, 2, bias=False)
    assert lin.bias is None and [n for n, _ in lin.named_parameters()] == ["weight"]
    assert lin.num_parameters() == 6
    assert repr(lin) == "Linear(in_features=3, out_features=2, bias=False)"
    x = nima.randn(4, 3)
    np.testing.assert_allclose(lin(x).data, x.data @ lin.weight.data.T, rtol=1e-6)


def test_linear_float32_by_default_and_dtype_argument() -> None:
    assert nn.Linear(2, 2).weight.dtype == np.float32
    lin = nn.Linear(2, 2, dtype=np.float64)
    assert lin.weight.dtype == lin.bias.dtype == np.float64


@pytest.mark.parametrize("shape", [(2, 4), (4,), (3, 1), ()])
def test_linear_input_shape_error_names_layer_and_shapes(shape: tuple[int, ...]) -> None:
    lin = nn.Linear(3, 2)
    message = f"Linear: expected input (..., 3), got {shape}"
    with pytest.raises(ValueError, match=re.escape(message)):
        lin(nima.zeros(*shape))


@settings(max_examples=15)
@given(batch_shapes, st.integers(1, 3), st.integers(1, 3), st.booleans())
def test_linear_gradcheck(batch: tuple[int, ...], d_in: int, d_out: int, bias: bool) -> None:
    lin = nn.Linear(d_in, d_out, bias=bias).double()
    x = f64((*batch, d_in), seed=1)
    inputs = [x, *lin.parameters()]  # perturbing a parameter in place changes the layer
    assert gradcheck(lambda x, *_: lin(x), inputs)


@given(tensors(shapes(min_dims=1, max_dims=3, max_side=3).map(lambda s: (*s[:-1], 3))))
@settings(max_examples=10)
def test_linear_gradcheck_non_contiguous_input(x: nima.Tensor) -> None:
    lin = nn.Linear(3, 2).double()
    assert gradcheck(lambda x, w, b: lin(x), [x, lin.weight, lin.bias])


def test_linear_gradients_by_hand() -> None:
    r"""$\bar W = \bar Y^\top X$, $\bar b = \sum_n \bar y_n$, $\bar X = \bar Y W$."""
    lin = nn.Linear(3, 2).double()
    x = f64((2, 5, 3), seed=2)
    g = np.random.default_rng(3).standard_normal((2, 5, 2))
    lin(x).backward(g)
    flat_x, flat_g = x.data.reshape(-1, 3), g.reshape(-1, 2)
    np.testing.assert_allclose(lin.weight.grad, flat_g.T @ flat_x, rtol=1e-12)
    np.testing.assert_allclose(lin.bias.grad, flat_g.sum(0), rtol=1e-12)
    np.testing.assert_allclose(x.grad, g @ lin.weight.data, rtol=1e-12)


# ------------------------------------------------------------------------------ Embedding
def test_embedding_looks_up_rows() -> None:
    emb = nn.Embedding(6, 4)
    ids = np.array([[5, 0, 2], [2, 2, 1]])
    out = emb(ids)
    assert out.shape == (2, 3, 4) and out.dtype == np.float32
    np.testing.assert_array_equal(out.data, emb.weight.data[ids])
    np.testing.assert_array_equal(emb(nima.tensor(ids)).data, out.data)
    assert repr(emb) == "Embedding(6, 4)"


def test_embedding_gradient_scatter_adds_repeated_ids() -> None:
    emb = nn.Embedding(5, 3).double()
    ids = np.array([[1, 3, 1], [1, 0, 3]])  # id 1 three times, 3 twice, 2 and 4 never
    g = np.random.default_rng(0).standard_normal((2, 3, 3))
    emb(ids).backward(g)
    expected = np.zeros((5, 3))
    np.add.at(expected, ids, g)
    np.testing.assert_allclose(emb.weight.grad, expected, rtol=1e-12)
    np.testing.assert_allclose(emb.weight.grad[1], g[0, 0] + g[0, 2] + g[1, 0], rtol=1e-12)
    assert not emb.weight.grad[[2, 4]].any()
    assert gradcheck(lambda w: emb(ids), [emb.weight])


def test_embedding_rejects_bad_ids() -> None:
    emb = nn.Embedding(4, 2)
    with pytest.raises(IndexError, match=r"embedding: indices must be in \[0, 4\)"):
        emb(np.array([0, 4]))
    with pytest.raises(IndexError):
        emb(np.array([-1]))


# ------------------------------------------------------------------------------ activations
@pytest.mark.parametrize(("module", "fn"), [
    (nn.ReLU(), F.relu),
    (nn.GELU(), lambda x: F.gelu(x, "none")),
    (nn.GELU("tanh"), lambda x: F.gelu(x, "tanh")),
    (nn.SiLU(), F.silu),
    (nn.Tanh(), F.tanh),
    (nn.Sigmoid(), F.sigmoid),
])
def test_activation_modules_match_functions(module: nn.Module, fn: object) -> None:
    x = f64((3, 5), seed=4)
    np.testing.assert_array_equal(module(x).data, fn(x).data)
    assert list(module.parameters()) == []
    assert gradcheck(module, [x])


def test_activation_values() -> None:
    x = nima.tensor([-2.0, 0.0, 1.5], dtype=nima.float64)
    np.testing.assert_allclose(nn.ReLU()(x).data, [0.0, 0.0, 1.5])
    np.testing.assert_allclose(nn.Sigmoid()(x).data, 1 / (1 + np.exp([2.0, 0.0, -1.5])))
    np.testing.assert_allclose(nn.SiLU()(x).data, x.data / (1 + np.exp(-x.data)))
    # exact GELU(1.5) = 1.5 Phi(1.5); the tanh form differs from it by ~1e-4 here
    assert nn.GELU()(x).data[2] == pytest.approx(1.5 * 0.9331927987311419, rel=1e-12)
    assert abs(nn.GELU("tanh")(x).data[2] - nn.GELU()(x).data[2]) > 1e-5


def test_gelu_rejects_unknown_approximation() -> None:
    with pytest.raises(ValueError, match="GELU: approximate must be 'none' or 'tanh', got 'erf'"):
        nn.GELU("erf")


# ------------------------------------------------------------------------------ norms
def layer_norm_reference(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, n_dims: int,
                         eps: float) -> np.ndarray:
    axes = tuple(range(-n_dims, 0))
    mu = x.mean(axis=axes, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=axes, keepdims=True)  # biased, as PyTorch
    return (x - mu) / np.sqrt(var + eps) * w + (0.0 if b is None else b)


def rms_norm_reference(x: np.ndarray, w: np.ndarray, n_dims: int, eps: float) -> np.ndarray:
    axes = tuple(range(-n_dims, 0))
    return x / np.sqrt((x**2).mean(axis=axes, keepdims=True) + eps) * w


def randomise(module: nn.Module, seed: int = 5) -> nn.Module:
    """Scale and shift away from their ones/zeros init, so a swapped or ignored one shows."""
    rng = np.random.default_rng(seed)
    for p in module.parameters():
        p.data[...] = rng.standard_normal(p.shape) + (1.0 if p.ndim else 0.0)
    return module


@pytest.mark.parametrize("normalized_shape", [5, (5,), (2, 3)])
@pytest.mark.parametrize("bias", [True, False])
def test_layer_norm_matches_numpy(normalized_shape: int | tuple[int, ...], bias: bool) -> None:
    ln = randomise(nn.LayerNorm(normalized_shape, bias=bias).double())
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else normalized_shape
    x = f64((4, *shape), seed=6, requires_grad=False) * 3.0 + 1.0
    b = ln.bias.data if bias else None
    expected = layer_norm_reference(x.data, ln.weight.data, b, len(shape), 1e-5)
    np.testing.assert_allclose(ln(x).data, expected, rtol=1e-10, atol=1e-12)
    assert (ln.bias is None) is (not bias)
    assert ln.num_parameters() == (2 if bias else 1) * int(np.prod(shape))


def test_layer_norm_defaults_normalise_each_row() -> None:
    ln = nn.LayerNorm(8)
    x = nima.randn(3, 8) * 5.0 + 2.0
    y = ln(x).data
    np.testing.assert_allclose(y.mean(-1), 0.0, atol=1e-5)
    np.testing.assert_allclose(y.std(-1), 1.0, rtol=1e-3)
    assert y.dtype == np.float32
    assert repr(ln) == "LayerNorm((8,), eps=1e-05, bias=True)"


@pytest.mark.parametrize("normalized_shape", [5, (2, 3)])
def test_rms_norm_matches_numpy(normalized_shape: int | tuple[int, ...]) -> None:
    rms = randomise(nn.RMSNorm(normalized_shape, eps=1e-6).double())
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else normalized_shape
    x = f64((2, 3, *shape), seed=7, requires_grad=False) + 2.0  # nonzero mean: RMS != std
    expected = rms_norm_reference(x.data, rms.weight.data, len(shape), 1e-6)
    np.testing.assert_allclose(rms(x).data, expected, rtol=1e-10, atol=1e-12)
    assert [n for n, _ in rms.named_parameters()] == ["weight"]
    assert not np.allclose(rms(x).data, nn.LayerNorm(shape, bias=False).double()(x).data)


def test_rms_norm_known_value() -> None:
    rms = nn.RMSNorm(2, eps=0.0)
    np.testing.assert_allclose(rms(nima.tensor([3.0, 4.0])).data, np.array([3.0, 4.0])
                               / np.sqrt(12.5), rtol=1e-6)
    assert repr(rms) == "RMSNorm((2,), eps=0.0)"


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("make", [
    lambda: nn.LayerNorm(4),
    lambda: nn.LayerNorm((2, 3), bias=False),
    lambda: nn.RMSNorm(4),
    lambda: nn.RMSNorm((2, 3)),
])
def test_norm_gradcheck(make: object, backend: str) -> None:
    norm = randomise(make().double())
    x = f64((3, *norm.normalized_shape), seed=8)
    with kernels.backend(backend):
        assert gradcheck(lambda x, *_: norm(x), [x, *norm.parameters()])


@settings(max_examples=10)
@given(shapes(min_dims=0, max_dims=2, max_side=3), st.integers(1, 4),
       st.sampled_from(["layer", "rms"]))
def test_norm_gradcheck_batch_shapes(batch: tuple[int, ...], d: int, kind: str) -> None:
    norm = nn.LayerNorm(d) if kind == "layer" else nn.RMSNorm(d)
    norm = randomise(norm.double())
    x = f64((*batch, d), seed=9)
    with kernels.backend("numpy"):
        assert gradcheck(lambda x, *_: norm(x), [x, *norm.parameters()])


def test_norm_shape_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="layer_norm"):
        nn.LayerNorm(4)(nima.ones(2, 5))
    with pytest.raises(ValueError, match="rms_norm"):
        nn.RMSNorm(4)(nima.ones(2, 5))


# ------------------------------------------------------------------------------ Dropout
def test_dropout_train_zeroes_a_fraction_and_rescales() -> None:
    drop = nn.Dropout(0.3)
    x = nima.ones(200, 500)
    nima.manual_seed(0)
    y = drop(x).data
    kept = y != 0
    assert abs(1 - kept.mean() - 0.3) < 0.005  # 1e5 draws: std of the fraction ~0.0015
    np.testing.assert_allclose(y[kept], 1 / 0.7, rtol=1e-6)
    assert abs(y.mean() - 1.0) < 0.01  # the expectation is preserved


def test_dropout_is_seeded() -> None:
    drop, x = nn.Dropout(0.5), nima.ones(64)
    nima.manual_seed(1)
    a = drop(x).data
    nima.manual_seed(1)
    b = drop(x).data
    c = drop(x).data
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(b, c)


def test_dropout_gradient_follows_the_mask() -> None:
    drop = nn.Dropout(0.5)
    x = f64((50,), seed=10)
    y = drop(x)
    y.backward(np.ones(50))
    mask = y.data != 0
    np.testing.assert_allclose(x.grad, mask / 0.5)


def test_dropout_eval_is_identity_and_model_eval_reaches_it() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.9), nn.ReLU())
    x = nima.randn(8, 4)
    model.eval()
    assert not model[1].training
    assert model[1](x) is x  # no copy, no graph node
    np.testing.assert_array_equal(model(x).data, model[2](model[0](x)).data)
    model.train()
    nima.manual_seed(2)
    assert (model[1](nima.ones(100)).data == 0).sum() > 50


def test_dropout_p_edges_and_errors() -> None:
    x = nima.randn(10)
    assert nn.Dropout(0.0)(x) is x
    assert not nn.Dropout(1.0)(x).data.any()
    assert repr(nn.Dropout(0.1)) == "Dropout(p=0.1)"
    for p in (-0.1, 1.5):
        with pytest.raises(ValueError, match=rf"Dropout: p must be in \[0, 1\], got {p}"):
            nn.Dropout(p)
