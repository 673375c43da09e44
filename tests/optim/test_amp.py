"""GradScaler: skip and back off on inf/NaN, grow after growth_interval good steps."""

import numpy as np
import pytest

import nima
from nima.nn import Parameter
from nima.optim import SGD, GradScaler


def _setup(**kw):
    p = Parameter(np.ones(2, dtype=np.float32))
    return p, SGD([p], lr=0.1), GradScaler(**kw)


def test_scale_multiplies_the_gradients_and_step_unscales():
    p, opt, scaler = _setup(init_scale=8.0)
    loss = (nima.tensor(np.array([2.0, 3.0], dtype=np.float32)) * p).sum()
    scaler.scale(loss).backward()
    np.testing.assert_allclose(p.grad, [16.0, 24.0])
    assert scaler.step(opt) is True
    np.testing.assert_allclose(p.data, [1 - 0.2, 1 - 0.3], rtol=1e-6)
    scaler.update()
    assert scaler.get_scale() == 8.0


@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
def test_skips_step_and_halves_scale_on_overflow(bad):
    p, opt, scaler = _setup(init_scale=2.0**16)
    p.grad = np.array([1.0, bad], dtype=np.float32)
    assert scaler.step(opt) is False
    np.testing.assert_array_equal(p.data, [1.0, 1.0])  # weights untouched
    scaler.update()
    assert scaler.get_scale() == 2.0**15


def test_grows_after_growth_interval_good_steps():
    p, opt, scaler = _setup(init_scale=4.0, growth_interval=3)
    for i in range(3):
        assert scaler.get_scale() == 4.0, i
        p.grad = np.ones(2, dtype=np.float32)
        scaler.step(opt)
        scaler.update()
    assert scaler.get_scale() == 8.0
    # an overflow resets the count of good steps
    for grad in ([1.0, 1.0], [1.0, 1.0], [np.inf, 1.0], [1.0, 1.0], [1.0, 1.0]):
        p.grad = np.array(grad, dtype=np.float32)
        scaler.step(opt)
        scaler.update()
    assert scaler.get_scale() == 4.0


def test_unscale_then_step_does_not_unscale_twice_and_state_dict():
    p, opt, scaler = _setup(init_scale=4.0, growth_interval=5)
    p.grad = np.array([4.0, 8.0], dtype=np.float32)
    scaler.unscale_(opt)
    np.testing.assert_allclose(p.grad, [1.0, 2.0])
    with pytest.raises(RuntimeError, match="already"):
        scaler.unscale_(opt)
    scaler.step(opt)
    np.testing.assert_allclose(p.data, [0.9, 0.8], rtol=1e-6)
    scaler.update()
    other = GradScaler()
    other.load_state_dict(scaler.state_dict())
    assert other.state_dict() == scaler.state_dict()
    assert other.state_dict()["growth_tracker"] == 1


def test_float16_gradients():
    p = Parameter(np.ones(2, dtype=np.float16))
    opt, scaler = SGD([p], lr=0.5), GradScaler(init_scale=2.0**16)
    p.grad = np.array([1.0, np.inf], dtype=np.float16)  # 70000 overflows float16
    assert not scaler.step(opt)
    scaler.update()
    p.grad = np.array([2.0**15, 2.0**14], dtype=np.float16)  # 1, 0.5 after unscaling by 2^15
    assert scaler.step(opt)
    assert p.data.dtype == np.float16
    np.testing.assert_allclose(p.data, [0.5, 0.75])


def test_disabled_is_a_pass_through():
    p, opt, scaler = _setup(enabled=False)
    p.grad = np.ones(2, dtype=np.float32)
    assert scaler.step(opt) and scaler.get_scale() == 1.0


def test_large_scale_does_not_flush_float16_gradients():
    # 1/S = 2**-30 is zero in float16; unscaling must not compute it there
    p = Parameter(np.ones(1, dtype=np.float16))
    opt, scaler = SGD([p], lr=1.0), GradScaler(init_scale=2.0**30)
    p.grad = np.array([2.0**14], dtype=np.float16)  # 2**-16 once unscaled
    scaler.unscale_(opt)
    assert p.grad[0] == np.float16(2.0**-16)
