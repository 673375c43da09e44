"""Schedule values at the boundaries against their formulas."""

import math

import numpy as np
import pytest

from nima.nn import Parameter
from nima.optim import SGD, Constant, Linear, Noam, WarmupCosine


def _opt(lr=1e-3, groups=1):
    return SGD([{"params": [Parameter(np.zeros(1))], "lr": lr * (i + 1)} for i in range(groups)])


def nanogpt_get_lr(it, lr, warmup, total, min_lr):
    """nanoGPT train.py's get_lr, verbatim in structure."""
    if it < warmup:
        return lr * (it + 1) / (warmup + 1)
    if it > total:
        return min_lr
    decay_ratio = (it - warmup) / (total - warmup)
    coeff = 0.5 * (1.0 + math.cos(math.pi * decay_ratio))
    return min_lr + coeff * (lr - min_lr)


def test_warmup_cosine_boundaries():
    opt = _opt(1e-3)
    s = WarmupCosine(opt, warmup=100, total=2000, min_lr=1e-4)
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-3 / 101)  # step 0 applied on creation
    assert s.lr_at(0) == pytest.approx(1e-3 * 1 / 101)
    assert s.lr_at(99) == pytest.approx(1e-3 * 100 / 101)
    assert s.lr_at(100) == pytest.approx(1e-3)  # warmup end: the peak
    assert s.lr_at(1050) == pytest.approx(0.5 * (1e-3 + 1e-4))  # halfway down
    assert s.lr_at(2000) == pytest.approx(1e-4)  # total
    assert s.lr_at(2001) == s.lr_at(10**6) == 1e-4  # beyond
    for t in [0, 1, 50, 99, 100, 101, 777, 1999, 2000, 2001, 5000]:
        assert s.lr_at(t) == pytest.approx(nanogpt_get_lr(t, 1e-3, 100, 2000, 1e-4), rel=1e-12)


def test_stepping_sets_the_groups_lr():
    opt = _opt(1e-3, groups=2)
    s = WarmupCosine(opt, warmup=10, total=50, min_lr=0.0)
    for _ in range(10):
        s.step()
    assert s.last_step == 10
    assert s.get_last_lr() == pytest.approx([1e-3, 2e-3])
    assert s.lr_at(10, group=1) == pytest.approx(2e-3)


def test_linear_and_constant():
    opt = _opt(0.1)
    s = Linear(opt, total=10, start_factor=1.0, end_factor=0.1)
    assert s.lr_at(0) == pytest.approx(0.1)
    assert s.lr_at(5) == pytest.approx(0.1 * 0.55)
    assert s.lr_at(10) == pytest.approx(0.01)
    assert s.lr_at(100) == pytest.approx(0.01)
    c = Constant(_opt(0.3))
    assert c.lr_at(0) == c.lr_at(12345) == 0.3


def test_noam():
    s = Noam(_opt(2.0), d_model=512, warmup=4000)
    assert s.lr_at(0) == pytest.approx(2.0 * 512**-0.5 * 4000**-1.5)
    peak = 2.0 / math.sqrt(512 * 4000)
    assert s.lr_at(3999) == pytest.approx(peak)  # s = t + 1 = warmup
    assert s.lr_at(3998) < peak and s.lr_at(4000) < peak
    assert s.lr_at(15999) == pytest.approx(2.0 * 512**-0.5 * 16000**-0.5)


def test_scheduler_state_dict_resumes():
    s = WarmupCosine(_opt(), warmup=5, total=20, min_lr=1e-5)
    for _ in range(7):
        s.step()
    opt2 = _opt()
    s2 = WarmupCosine(opt2, warmup=5, total=20, min_lr=1e-5)
    s2.load_state_dict(s.state_dict())
    assert opt2.param_groups[0]["lr"] == s.get_last_lr()[0]
    s.step()
    s2.step()
    assert s2.get_last_lr() == s.get_last_lr()


def test_bad_arguments_name_the_schedule():
    with pytest.raises(ValueError, match="WarmupCosine"):
        WarmupCosine(_opt(), warmup=10, total=10, min_lr=0.0)
    with pytest.raises(ValueError, match="Noam"):
        Noam(_opt(), d_model=0, warmup=1)
