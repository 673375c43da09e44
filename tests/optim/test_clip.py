"""clip_grad_norm_: the norm before, the norm after, and no change when under the limit."""

import numpy as np
import pytest

from nima.nn import Parameter
from nima.optim import clip_grad_norm_


def _params():
    a, b, c = Parameter(np.zeros(2)), Parameter(np.zeros((2, 2))), Parameter(np.zeros(3))
    a.grad = np.array([3.0, 0.0], dtype=np.float32)
    b.grad = np.array([[0.0, 4.0], [0.0, 12.0]], dtype=np.float32)
    return a, b, c  # c has no grad: ignored; global norm sqrt(9 + 16 + 144) = 13


def test_clips_to_max_norm_and_returns_norm_before():
    a, b, c = _params()
    total = clip_grad_norm_([a, b, c], max_norm=1.0)
    assert total == pytest.approx(13.0)
    after = np.sqrt((a.grad.astype(np.float64) ** 2).sum() + (b.grad.astype(np.float64) ** 2).sum())
    assert after <= 1.0 + 1e-6
    assert after == pytest.approx(1.0, rel=1e-5)
    np.testing.assert_allclose(a.grad, [3 / 13, 0], rtol=1e-5)  # direction kept
    assert a.grad.dtype == np.float32 and c.grad is None


def test_no_change_when_under():
    a, b, _ = _params()
    before = a.grad.copy(), b.grad.copy()
    assert clip_grad_norm_([a, b], max_norm=20.0) == pytest.approx(13.0)
    np.testing.assert_array_equal(a.grad, before[0])
    np.testing.assert_array_equal(b.grad, before[1])


def test_single_tensor_and_no_grads():
    a, _, c = _params()
    assert clip_grad_norm_(a, 1.0) == pytest.approx(3.0)
    assert clip_grad_norm_([c], 1.0) == 0.0
