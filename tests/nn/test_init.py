r"""Init schemes against their formulas: empirical mean and std of large samples, bounds of the
uniform ones, fan computation (including a receptive field) and its errors, reproducibility.

With $N = 2^{19}$ draws the sample std is within about $1/\sqrt{2N} \approx 0.1\%$ of the true
one and the sample mean within $\sigma/\sqrt N \approx 0.14\%\,\sigma$, so 1% and $6\sigma/\sqrt N$
tolerances are loose enough never to flake and tight enough to catch a wrong fan (a factor
$\sqrt 2$ on these non-square shapes) or a wrong constant.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable

import numpy as np
import pytest

import nima
from nima import nn
from nima.nn import init

SHAPE = (512, 1024)  # (out, in): fan_in 1024, fan_out 512 — swapping them costs a factor sqrt 2
FAN_IN, FAN_OUT = 1024, 512
N = SHAPE[0] * SHAPE[1]


def filled(fn: Callable[..., nima.Tensor], *args: float, shape: tuple[int, ...] = SHAPE,
           seed: int = 0, **kwargs: float) -> np.ndarray:
    nima.manual_seed(seed)
    t = nn.Parameter(np.empty(shape, dtype=np.float32))
    assert fn(t, *args, **kwargs) is t  # in place, returns its argument
    assert t.dtype == np.float32 and t.shape == shape
    return t.data.astype(np.float64)


def check_moments(x: np.ndarray, std: float, mean: float = 0.0) -> None:
    assert abs(x.mean() - mean) < 6 * std / math.sqrt(x.size)
    assert x.std() == pytest.approx(std, rel=0.01)


def check_uniform(x: np.ndarray, bound: float) -> None:
    assert np.abs(x).max() <= bound * (1 + 1e-6)  # float32 rounding may touch the bound
    assert np.abs(x).max() > 0.999 * bound  # the bound is reached, not just respected
    check_moments(x, bound / math.sqrt(3))  # Var U(-b, b) = b^2 / 3


# ------------------------------------------------------------------------------ schemes
def test_xavier_uniform() -> None:
    bound = math.sqrt(6 / (FAN_IN + FAN_OUT))
    check_uniform(filled(init.xavier_uniform_), bound)
    check_uniform(filled(init.xavier_uniform_, gain=2.0), 2 * bound)


def test_xavier_normal() -> None:
    std = math.sqrt(2 / (FAN_IN + FAN_OUT))
    check_moments(filled(init.xavier_normal_), std)
    check_moments(filled(init.xavier_normal_, gain=0.5), 0.5 * std)


def test_kaiming_uniform() -> None:
    check_uniform(filled(init.kaiming_uniform_), math.sqrt(6 / FAN_IN))
    # PyTorch's Linear default, a = sqrt(5), is U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    check_uniform(filled(init.kaiming_uniform_, a=math.sqrt(5)), 1 / math.sqrt(FAN_IN))


def test_kaiming_normal() -> None:
    check_moments(filled(init.kaiming_normal_), math.sqrt(2 / FAN_IN))
    check_moments(filled(init.kaiming_normal_, a=1.0), math.sqrt(1 / FAN_IN))


def test_normal_and_gpt2_std() -> None:
    check_moments(filled(init.normal_), 1.0)
    check_moments(filled(init.normal_, 0.0, 0.02), 0.02)
    check_moments(filled(init.normal_, mean=3.0, std=0.5), 0.5, mean=3.0)


@pytest.mark.parametrize("n_layer", [1, 12, 48])
def test_scaled_residual_normal(n_layer: int) -> None:
    """GPT-2: $0.02/\\sqrt{2 n_\\text{layer}}$ — 0.00408 for the 12-layer model."""
    check_moments(filled(init.scaled_residual_normal_, n_layer), 0.02 / math.sqrt(2 * n_layer))
    check_moments(filled(init.scaled_residual_normal_, n_layer, std=0.1),
                  0.1 / math.sqrt(2 * n_layer))


def test_uniform_zeros_ones() -> None:
    x = filled(init.uniform_, -0.5, 2.0)
    assert x.min() >= -0.5 and x.max() <= 2.0
    check_moments(x, 2.5 / math.sqrt(12), mean=0.75)
    assert not filled(init.zeros_).any()
    assert (filled(init.ones_) == 1).all()


def test_fans_include_the_receptive_field() -> None:
    """A (out, in, k) weight, as a 1-D convolution's: fan_in = in * k, fan_out = out * k."""
    shape = (128, 64, 9)
    fan_in, fan_out = 64 * 9, 128 * 9
    check_moments(filled(init.kaiming_normal_, shape=shape), math.sqrt(2 / fan_in))
    check_uniform(filled(init.xavier_uniform_, shape=shape), math.sqrt(6 / (fan_in + fan_out)))


@pytest.mark.parametrize("fn", [init.xavier_uniform_, init.xavier_normal_, init.kaiming_uniform_,
                                init.kaiming_normal_])
@pytest.mark.parametrize("shape", [(5,), ()])
def test_fans_need_two_dims(fn: Callable[[nima.Tensor], nima.Tensor],
                            shape: tuple[int, ...]) -> None:
    t = nn.Parameter(np.zeros(shape))
    with pytest.raises(ValueError, match=re.escape(f"at least 2 dims, got shape {shape}")):
        fn(t)
    assert not t.data.any()  # untouched


def test_float64_tensors_stay_float64() -> None:
    t = nn.Parameter(np.zeros((3, 4)))
    t.data = t.data.astype(np.float64)
    init.xavier_normal_(t)
    assert t.dtype == np.float64 and t.data.std() > 0


# ------------------------------------------------------------------------------ reproducibility
@pytest.mark.parametrize("fn", [init.xavier_uniform_, init.xavier_normal_, init.kaiming_uniform_,
                                init.kaiming_normal_, init.normal_])
def test_manual_seed_reproduces(fn: Callable[[nima.Tensor], nima.Tensor]) -> None:
    a = filled(fn, shape=(8, 16), seed=7)
    b = filled(fn, shape=(8, 16), seed=7)
    c = filled(fn, shape=(8, 16), seed=8)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_layers_are_reproducible_and_use_their_documented_init() -> None:
    nima.manual_seed(3)
    a = nn.Linear(300, 200)
    nima.manual_seed(3)
    b = nn.Linear(300, 200)
    np.testing.assert_array_equal(a.weight.data, b.weight.data)
    np.testing.assert_array_equal(a.bias.data, b.bias.data)
    check_uniform(a.weight.data.astype(np.float64), 1 / math.sqrt(300))
    assert np.abs(a.bias.data).max() <= 1 / math.sqrt(300)
    emb = nn.Embedding(1000, 256)
    check_moments(emb.weight.data.astype(np.float64), 1.0)


# ------------------------------------------------------------------------------ why it matters
def relu_stack_rms(scheme: Callable[[nima.Tensor], nima.Tensor], depth: int = 20,
                   width: int = 256) -> list[float]:
    """RMS of the activations after each layer of a bias-free ReLU MLP fed N(0, 1) inputs."""
    nima.manual_seed(0)
    h = nima.randn(512, width)
    rms = []
    for _ in range(depth):
        layer = nn.Linear(width, width, bias=False)
        scheme(layer.weight)
        h = layer(h).relu()
        rms.append(float(np.sqrt(np.mean(h.data.astype(np.float64) ** 2))))
    return rms


def test_kaiming_keeps_relu_activations_at_scale_where_one_over_fan_in_halves_them() -> None:
    r"""With $\operatorname{Var}(W) = 1/n$ ReLU halves the second moment every layer, so the RMS
    after $l$ layers is $2^{-l/2}$; Kaiming's $2/n$ undoes exactly that (the docs' table)."""
    plain = relu_stack_rms(lambda w: init.normal_(w, 0.0, math.sqrt(1 / 256)))
    for depth in (1, 5, 10, 20):
        assert plain[depth - 1] == pytest.approx(2 ** (-depth / 2), rel=0.15)
    he = relu_stack_rms(init.kaiming_normal_)
    assert all(0.7 < r < 1.4 for r in he)
