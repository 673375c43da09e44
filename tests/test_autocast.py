"""`nima.autocast`: which ops lower to float16 or run in float32, gradients in each tensor's own
dtype, agreement with float32, loss scaling rescuing an underflowing gradient, and nothing
changed when it is off."""

import numpy as np
import pytest

import nima
import nima.functional as F
from nima.models import GPT, GPTConfig
from nima.nn import Parameter
from nima.optim import SGD, AdamW, GradScaler

F16, F32, F64 = np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64)
U16 = 2.0**-11  # float16's unit roundoff: 11 significant bits


def _rand(*shape, dtype=np.float32, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def _gpt(**overrides):
    nima.manual_seed(0)
    config = GPTConfig.preset("baby", vocab_size=65, n_layer=2, block_size=16, **overrides)
    return GPT(config)


def _tokens(seed=0, B=3, T=16):
    ids = np.random.default_rng(seed).integers(0, 65, size=(B, T + 1))
    return ids[:, :-1], ids[:, 1:]


# ----------------------------------------------------------------------------- the cast rules
def test_matmul_lowers_float32_operands_and_rounds_a_float32_product():
    a, b = _rand(5, 7), _rand(7, 3, seed=1)
    with nima.autocast():
        y = nima.tensor(a) @ nima.tensor(b)
    assert y.dtype == F16
    # oracle: NumPy, operands rounded to float16, product in float64, rounded to float16
    want = (a.astype(F16).astype(F64) @ b.astype(F16).astype(F64)).astype(F16)
    np.testing.assert_allclose(y.data.astype(F64), want.astype(F64), rtol=2 * U16, atol=1e-3)


def test_float64_is_left_alone():
    a = nima.tensor(_rand(4, 4, dtype=np.float64))
    with nima.autocast():
        assert (a @ a).dtype == F64
        assert F.softmax(a).dtype == F64


@pytest.mark.parametrize("op", [
    lambda x: F.softmax(x, dim=-1),
    lambda x: F.log_softmax(x, dim=-1),
    lambda x: F.layer_norm(x, 6),
    lambda x: F.rms_norm(x, 6),
    lambda x: F.gelu(x, approximate="tanh"),
    lambda x: x.sum(),
    lambda x: x.mean(dim=0),
    lambda x: nima.logsumexp(x, dim=-1),
], ids=["softmax", "log_softmax", "layer_norm", "rms_norm", "gelu", "sum", "mean", "lse"])
def test_precision_sensitive_ops_run_in_float32_and_send_float16_gradients(op):
    x16 = _rand(4, 6).astype(F16)
    x = nima.tensor(x16, requires_grad=True)
    with nima.autocast():
        y = op(x)
    assert y.dtype == F32
    # the float32 result is the op on the float16 values widened: exactly the float32 op
    np.testing.assert_array_equal(y.data, op(nima.tensor(x16.astype(F32))).data)
    y.sum().backward()
    assert x.grad.dtype == F16


def test_cross_entropy_of_float16_logits_is_a_float32_loss():
    z16 = _rand(5, 9).astype(F16)
    t = np.array([0, 3, 8, 2, 2])
    with nima.autocast():
        loss = F.cross_entropy(nima.tensor(z16), t)
    z = z16.astype(F64)
    lse = np.log(np.exp(z - z.max(1, keepdims=True)).sum(1)) + z.max(1)
    assert loss.dtype == F32
    np.testing.assert_allclose(loss.data, np.mean(lse - z[np.arange(5), t]), rtol=1e-6)


def test_float16_and_float32_promote_to_float32_with_gradients_in_their_own_dtype():
    a = nima.tensor(_rand(3, 4).astype(F16), requires_grad=True)
    b = nima.tensor(_rand(3, 4, seed=1), requires_grad=True)
    with nima.autocast():
        y = a * b + b
    assert y.dtype == F32
    np.testing.assert_array_equal(y.data, a.data.astype(F32) * b.data + b.data)
    y.sum().backward()
    assert a.grad.dtype == F16 and b.grad.dtype == F32
    np.testing.assert_array_equal(a.grad, b.data.astype(F16))
    np.testing.assert_array_equal(b.grad, a.data.astype(F32) + 1)


def test_mixing_dtypes_is_still_an_error_outside_autocast_and_for_float64():
    h, s, d = (nima.tensor(_rand(2, 2, dtype=t)) for t in (F16, F32, F64))
    with pytest.raises(TypeError, match=r"add: dtype mismatch float16 vs float32"):
        h + s
    with nima.autocast(), pytest.raises(TypeError, match=r"mul: dtype mismatch float32 vs float64"):
        s * d
    with nima.autocast(), pytest.raises(TypeError, match=r"dtype mismatch float16 vs float64"):
        h - d
    with pytest.raises(TypeError, match=r"layer_norm: needs a float32 or float64 tensor, got "
                       r"float16"):
        F.layer_norm(h, 2)
    with pytest.raises(TypeError, match=r"matmul: float16 operands .* only inside nima.autocast"):
        h @ h
    with nima.autocast():
        assert (h @ h).dtype == F16  # inside, the same product is fine


def test_enabled_false_nesting_decorator_and_dtype_check():
    x = nima.tensor(_rand(2, 2))
    with nima.autocast():
        with nima.autocast(enabled=False):
            assert (x @ x).dtype == F32
        assert (x @ x).dtype == F16
    assert (x @ x).dtype == F32

    @nima.autocast()
    def f():
        return x @ x

    assert f().dtype == F16 and (x @ x).dtype == F32
    with pytest.raises(ValueError, match="autocast: dtype must be float16"):
        nima.autocast(dtype=np.float32)


# ----------------------------------------------------------------------------- the whole model
def test_gpt_logits_under_autocast_are_close_to_float32():
    model = _gpt()
    x, y = _tokens()
    logits32, loss32 = model(x, y)
    with nima.autocast():
        logits16, loss16 = model(x, y)
    assert logits16.dtype == F16 and loss16.dtype == F32
    # Every float16 rounding is off by at most $2^{-11}$ relative; the logits go through about
    # a dozen of them in sequence (2 blocks x (qkv, scores, PV, proj, fc, proj) + the head), so
    # allow 16 roundings' worth relative to the logits' scale.
    scale = np.abs(logits32.data).max()
    np.testing.assert_allclose(logits16.data.astype(F32), logits32.data, rtol=0,
                               atol=16 * U16 * scale)
    np.testing.assert_allclose(loss16.data, loss32.data, rtol=16 * U16)
    assert not np.array_equal(logits16.data.astype(F32), logits32.data)  # it did use float16


def test_gpt_parameter_gradients_are_float32_and_intermediate_ones_float16():
    model = _gpt()
    x, y = _tokens()
    with nima.autocast():
        logits, loss = model(x, y)
    logits.retain_grad()
    loss.backward()
    assert logits.grad.dtype == F16
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.dtype == F32, name


def test_autocast_disabled_is_bit_identical():
    x, y = _tokens()
    runs = []
    for ctx in (None, nima.autocast(enabled=False)):
        model = _gpt()
        if ctx is None:
            logits, loss = model(x, y)
        else:
            with ctx:
                logits, loss = model(x, y)
        loss.backward()
        runs.append((logits.data, [p.grad for p in model.parameters()]))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    for g0, g1 in zip(runs[0][1], runs[1][1], strict=True):
        np.testing.assert_array_equal(g0, g1)


# ----------------------------------------------------------------------------- loss scaling
def _underflowing_loss(w, x):
    """$L = 10^{-8} \\sum (x W)$: $\\partial L / \\partial (xW) = 10^{-8}$, which float16
    rounds to 0 (its smallest subnormal is $2^{-24} \\approx 6 \\times 10^{-8}$)."""
    with nima.autocast():
        return (x @ w).sum() * 1e-8


def test_a_gradient_that_underflows_in_float16_survives_with_loss_scaling():
    x = nima.tensor(np.array([[1.0, 2.0], [3.0, -1.0]], dtype=np.float32))
    w = Parameter(np.ones((2, 1), dtype=np.float32))
    _underflowing_loss(w, x).backward()
    np.testing.assert_array_equal(w.grad, 0.0)  # lost: the float16 gradient of xW was 0

    w.grad = None
    scaler, opt = GradScaler(init_scale=2.0**16), SGD([w], lr=1.0)
    scaler.scale(_underflowing_loss(w, x)).backward()
    scaler.unscale_(opt)
    # by hand: $\partial L / \partial W = x^\top \mathbf{1} \cdot 10^{-8} = [4, 1]^\top 10^{-8}$
    np.testing.assert_allclose(w.grad, [[4e-8], [1e-8]], rtol=4 * U16)


def test_scaler_skips_and_backs_off_on_float16_overflow_then_steps():
    x = nima.tensor(np.array([[1.0, 0.5]], dtype=np.float32))
    w = Parameter(np.ones((2, 1), dtype=np.float32))
    scaler, opt = GradScaler(init_scale=2.0**16), SGD([w], lr=0.5)

    def iteration():
        opt.zero_grad()
        with nima.autocast():
            loss = (x @ w).sum()
        scaler.scale(loss).backward()
        stepped = scaler.step(opt)
        scaler.update()
        return stepped

    # $\partial (S L) / \partial (xW) = S = 2^{16}$, which is inf in float16 (max 65504)
    assert iteration() is False
    np.testing.assert_array_equal(w.data, 1.0)  # skipped: untouched
    assert scaler.get_scale() == 2.0**15  # backed off
    assert iteration() is True  # $2^{15}$ fits; the unscaled gradient is $x^\top = [1, 0.5]$
    np.testing.assert_allclose(w.data, [[1 - 0.5 * 1.0], [1 - 0.5 * 0.5]], rtol=1e-6)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the overflowed steps: inf - inf = NaN
def test_gpt_training_with_autocast_and_scaler_skips_backs_off_then_learns():
    model = _gpt()
    x, y = _tokens()
    opt = AdamW(model.parameters(), lr=3e-3)
    scaler = GradScaler(init_scale=2.0**24)  # far too big: the float16 gradients overflow
    losses, steps = [], []
    for _ in range(12):
        opt.zero_grad()
        with nima.autocast():  # the trainer's form
            _, loss = model(x, y)
        scaler.scale(loss).backward()
        steps.append(scaler.step(opt))
        scaler.update()
        losses.append(float(loss.data))
    skipped = steps.index(True)
    assert skipped >= 1 and all(steps[skipped:])  # skips first, then every step is taken
    assert scaler.get_scale() == 2.0**24 * 0.5**skipped  # halved once per skip
    assert losses[:skipped + 1] == [losses[0]] * (skipped + 1)  # skipped: weights untouched
    assert losses[-1] < losses[0] - 0.5  # then it learns (memorising one batch)
