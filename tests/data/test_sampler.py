"""LossGuidedSampler: its draws follow the priorities (a seeded chi-square test, with a check
that the test would catch wrong weights), the update rule, windows, checkpoints, errors."""

import math

import numpy as np
import pytest

from nima.data.sampler import LossGuidedSampler


def chi_square(counts: np.ndarray, probabilities: np.ndarray) -> float:
    expected = counts.sum() * probabilities
    return float(((counts - expected) ** 2 / expected).sum())


def critical_value(df: int, z: float = 3.0902) -> float:
    """The chi-square quantile at 1 - 0.001 (z of the normal), by Wilson and Hilferty's cube
    approximation: within 1% from 5 degrees of freedom on."""
    return df * (1 - 2 / (9 * df) + z * math.sqrt(2 / (9 * df))) ** 3


def test_the_critical_value_approximation() -> None:
    assert critical_value(11) == pytest.approx(31.26, rel=0.01)  # tables: 31.264
    assert critical_value(30) == pytest.approx(59.70, rel=0.01)  # tables: 59.703


@pytest.mark.parametrize(("alpha", "seed"), [(1.0, 0), (1.0, 1), (0.5, 2), (2.0, 3)])
def test_draws_follow_the_weights(alpha: float, seed: int) -> None:
    sampler = LossGuidedSampler(12 * 8 + 1, 8, alpha=alpha, seed=seed)
    assert len(sampler) == 12
    losses = np.random.default_rng(seed).uniform(0.1, 4.0, 12)
    sampler.update(np.arange(12), losses)
    p = sampler.probabilities()
    np.testing.assert_allclose(p, (losses + 0.01) ** alpha / ((losses + 0.01) ** alpha).sum())
    counts = np.bincount(np.concatenate([sampler.sample(100) for _ in range(120)]), minlength=12)
    assert chi_square(counts, p) < critical_value(11)
    assert chi_square(counts, np.full(12, 1 / 12)) > critical_value(11)  # the test has teeth


def test_alpha_zero_is_uniform_and_unseen_windows_get_the_top_priority() -> None:
    uniform = LossGuidedSampler(101, 10, alpha=0.0)
    uniform.update(np.array([0, 1]), np.array([5.0, 0.0]))
    np.testing.assert_allclose(uniform.probabilities(), np.full(10, 0.1))
    s = LossGuidedSampler(101, 10)
    np.testing.assert_allclose(s.probabilities(), np.full(10, 0.1))  # nothing known yet
    s.update(np.array([0, 1]), np.array([3.0, 1.0]))
    w = np.array([3.0, 1.0] + [3.0] * 8) + 0.01  # the 8 unseen count as the top loss, 3.0
    np.testing.assert_allclose(s.probabilities(), w / w.sum())


def test_update_keeps_a_moving_average() -> None:
    s = LossGuidedSampler(101, 10, momentum=0.75)
    s.update(np.array([2]), np.array([4.0]))  # first loss: taken as it is
    s.update(np.array([2, 2]), np.array([0.0, 0.0]))
    assert s.priorities[2] == pytest.approx(4.0 * 0.75 ** 2)


def test_get_batch_cuts_windows_and_targets() -> None:
    data = np.arange(1000, 1000 + 41, dtype=np.uint16)
    s = LossGuidedSampler(len(data), 8, stride=4, seed=5)
    assert s.starts.tolist() == [0, 4, 8, 12, 16, 20, 24, 28, 32]
    x, y, idx = s.get_batch(data, 6)
    assert x.shape == y.shape == (6, 8) and x.dtype == np.int64
    np.testing.assert_array_equal(x[:, 0], 1000 + s.starts[idx])
    np.testing.assert_array_equal(y, x + 1)


def test_seeded_and_checkpointed() -> None:
    a, b = LossGuidedSampler(201, 10, seed=3), LossGuidedSampler(201, 10, seed=3)
    a.update(np.arange(5), np.arange(5.0))
    b.load_state_dict(a.state_dict())
    np.testing.assert_array_equal(a.sample(50), b.sample(50))


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"block_size": 0}, "block_size and stride must be >= 1, got block_size=0"),
    ({"stride": 0}, "stride=0"),
    ({"n_tokens": 8}, "n_tokens=8 is fewer than block_size \\+ 1 = 9"),
    ({"alpha": -1.0}, "alpha=-1.0"),
    ({"momentum": 1.0}, "momentum=1.0"),
    ({"eps": 0.0}, "eps=0.0"),
])
def test_bad_settings_name_the_key_and_value(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        LossGuidedSampler(**{"n_tokens": 100, "block_size": 8, **kwargs})


def test_bad_calls() -> None:
    s = LossGuidedSampler(100, 8)
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        s.sample(0)
    with pytest.raises(ValueError, match="losses must be finite and >= 0"):
        s.update(np.array([0]), np.array([np.nan]))
    with pytest.raises(ValueError, match=r"1-D of one length, got \(2,\) and \(1,\)"):
        s.update(np.array([0, 1]), np.array([1.0]))
    with pytest.raises(ValueError, match="data has 50 tokens, the windows need 97"):
        s.get_batch(np.zeros(50), 2)
    with pytest.raises(ValueError, match=r"priorities has shape \(3,\), this sampler has 12"):
        s.load_state_dict({"priorities": np.zeros(3), "seen": np.zeros(3)})
