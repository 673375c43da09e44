"""FeedForward (ReLU, GELU, GLU, SwiGLU): NumPy parity, float64 gradchecks, LLaMA's hidden-size
rounding, parameter counts, output dropout, errors."""

import math

import numpy as np
import pytest

import nima
from nima import gradcheck, kernels
from nima.nn import FeedForward, swiglu_hidden

KINDS = ["relu", "gelu", "glu", "swiglu"]


def sigmoid(u: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-u))


def ffn_reference(m: FeedForward, x: np.ndarray) -> np.ndarray:
    """The module's equations written out in NumPy from its own weights."""
    def linear(layer: nima.nn.Linear, v: np.ndarray) -> np.ndarray:
        out = v @ layer.weight.data.T
        return out + layer.bias.data if layer.bias is not None else out

    u = linear(m.fc, x)
    if m.kind == "relu":
        a = np.maximum(u, 0)
    elif m.kind == "gelu" and m.approximate == "tanh":
        a = 0.5 * u * (1 + np.tanh(math.sqrt(2 / math.pi) * (u + 0.044715 * u**3)))
    elif m.kind == "gelu":
        a = u * 0.5 * (1 + np.vectorize(math.erf)(u / math.sqrt(2)))
    else:
        gate, value = u[..., :m.hidden], u[..., m.hidden:]
        a = (sigmoid(gate) if m.kind == "glu" else gate * sigmoid(gate)) * value
    return linear(m.proj, a)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("bias", [True, False])
def test_matches_numpy_formula(kind: str, bias: bool) -> None:
    nima.manual_seed(0)
    m = FeedForward(6, 10, kind=kind, bias=bias).double()
    x = nima.randn(2, 5, 6).double()
    np.testing.assert_allclose(m(x).data, ffn_reference(m, x.data), rtol=1e-12, atol=1e-12)


def test_exact_gelu_is_selectable() -> None:
    nima.manual_seed(1)
    exact = FeedForward(4, 8, kind="gelu", approximate="none").double()
    x = nima.randn(3, 4).double()
    np.testing.assert_allclose(exact(x).data, ffn_reference(exact, x.data), rtol=1e-12, atol=1e-12)
    tanh = FeedForward(4, 8, kind="gelu").double()
    tanh.load_state_dict(exact.state_dict())
    assert tanh.approximate == "tanh"  # GPT-2's flavour is the default
    np.testing.assert_allclose(tanh(x).data, exact(x).data, atol=1e-3)  # close, not equal
    assert not np.array_equal(tanh(x).data, exact(x).data)


@pytest.mark.parametrize("kind", KINDS)
def test_gradcheck(kind: str) -> None:
    nima.manual_seed(2)
    m = FeedForward(4, 6, kind=kind).double()
    x = nima.randn(2, 3, 4).double().requires_grad_()
    with kernels.backend("numpy"):  # tiny arrays: a numba launch costs more than the work
        assert gradcheck(lambda x, *params: m(x), [x, *m.parameters()])


def test_gradcheck_without_bias_and_exact_gelu() -> None:
    nima.manual_seed(3)
    m = FeedForward(4, 5, kind="gelu", bias=False, approximate="none").double()
    x = nima.randn(3, 4).double().requires_grad_()
    with kernels.backend("numpy"):
        assert gradcheck(lambda x, *params: m(x), [x, *m.parameters()])


@pytest.mark.parametrize(("d_model", "hidden"), [
    (4096, 11008),  # LLaMA-7B
    (5120, 13824),  # LLaMA-13B
    (6656, 17920),  # LLaMA-33B
    (8192, 22016),  # LLaMA-65B
    (384, 1024),    # 2/3 * 4 * 384 = 1024 exactly: no rounding
    (128, 512),     # 341 rounds up to 512 = 4d: the multiple dominates at small widths
])
def test_swiglu_hidden_llama_values(d_model: int, hidden: int) -> None:
    assert swiglu_hidden(d_model) == hidden


def test_swiglu_hidden_multiple_of() -> None:
    assert swiglu_hidden(128, multiple_of=32) == 352  # floor(341.33) = 341 -> 352
    assert swiglu_hidden(96, multiple_of=1) == 256
    with pytest.raises(ValueError, match="multiple_of"):
        swiglu_hidden(128, multiple_of=0)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("bias", [True, False])
def test_parameter_counts(kind: str, bias: bool) -> None:
    d, h = 12, 20
    gated = kind in ("glu", "swiglu")
    weights = (3 if gated else 2) * d * h
    biases = ((2 * h if gated else h) + d) if bias else 0
    assert FeedForward(d, h, kind=kind, bias=bias).num_parameters() == weights + biases


def test_default_hidden_sizes_and_equal_budget() -> None:
    assert FeedForward(16, kind="gelu").hidden == 64
    assert FeedForward(16, kind="relu").hidden == 64
    assert FeedForward(16, kind="glu").hidden == swiglu_hidden(16)
    assert FeedForward(16, kind="swiglu").hidden == swiglu_hidden(16)
    # where 2/3 * 4d needs no rounding, SwiGLU has exactly the 4d FFN's weights: 3dh = 8d^2
    d = 384
    assert (FeedForward(d, kind="swiglu", bias=False).num_parameters()
            == FeedForward(d, kind="gelu", bias=False).num_parameters() == 8 * d * d)


def test_dropout_on_output_only_in_training() -> None:
    nima.manual_seed(4)
    m = FeedForward(8, 16, kind="swiglu", dropout=0.5)
    x = nima.randn(4, 8)
    m.eval()
    clean = m(x).data
    m.train()
    dropped = m(x).data
    zeros = dropped == 0
    assert 0 < zeros.mean() < 1
    np.testing.assert_allclose(dropped[~zeros], 2 * clean[~zeros], rtol=1e-5)


def test_errors_name_the_choices_and_shapes() -> None:
    with pytest.raises(ValueError, match=r"kind must be one of 'relu', 'gelu', 'glu', 'swiglu'"):
        FeedForward(8, kind="geglu")
    with pytest.raises(ValueError, match="approximate must be 'none' or 'tanh'"):
        FeedForward(8, approximate="erf")
    with pytest.raises(ValueError, match=r"FeedForward: expected input \(\.\.\., 8\), got \(2, 4"):
        FeedForward(8)(nima.randn(2, 4))


def test_repr_names_kind_and_sizes() -> None:
    assert "d_model=8, hidden=32, kind='gelu', approximate='tanh'" in repr(FeedForward(8))
    assert "kind='swiglu'" in repr(FeedForward(8, 24, kind="swiglu"))
