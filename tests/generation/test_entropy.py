"""Entropy-aware temperature and generation statistics, against NumPy."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from nima.generation import GenerationStats, entropy_bits, entropy_temperature, softmax

logit_rows = arrays(np.float64, st.tuples(st.integers(1, 4), st.integers(2, 40)),
                    elements=st.floats(-10, 10, allow_nan=False, width=32))


def tempered_entropy(row: np.ndarray, T: float) -> float:
    p = np.exp((row - row.max()) / T)
    p /= p.sum()
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum())


def test_entropy_bits_known_values() -> None:
    probs = np.array([[0.25, 0.25, 0.25, 0.25], [1.0, 0.0, 0.0, 0.0], [0.5, 0.5, 0.0, 0.0]])
    np.testing.assert_allclose(entropy_bits(probs), [2.0, 0.0, 1.0])
    assert not np.signbit(entropy_bits(probs)[1])  # 0.0, not -0.0 (the table printed "-0.00")


@given(logit_rows, st.floats(0.0, 6.0), st.floats(0.05, 1.0), st.floats(1.0, 5.0))
def test_temperature_hits_the_target_or_clamps(logits, target, min_temp, max_temp) -> None:
    T = entropy_temperature(logits, target, min_temp, max_temp)
    assert T.shape == (logits.shape[0],)
    for row, t in zip(logits, T, strict=True):
        assert min_temp * (1 - 1e-12) <= t <= max_temp * (1 + 1e-12)
        lo, hi = tempered_entropy(row, min_temp), tempered_entropy(row, max_temp)
        if lo - 1e-9 <= target <= hi + 1e-9:  # in reach (flat logits: any T is right)
            assert abs(tempered_entropy(row, t) - target) < 1e-3
        elif target < lo:
            assert t == pytest.approx(min_temp)  # even the coldest is too uncertain
        else:
            assert t == pytest.approx(max_temp)  # even the hottest is too sure


def test_worked_example() -> None:
    # two tokens with logits 0 and log 3: at T = 1, p = (1/4, 3/4), H = 0.811 bits
    logits = np.array([[0.0, np.log(3.0)]])
    h = -(0.25 * np.log2(0.25) + 0.75 * np.log2(0.75))
    np.testing.assert_allclose(entropy_temperature(logits, h, 0.1, 10.0), [1.0], rtol=1e-4)
    np.testing.assert_allclose(entropy_temperature(logits, 1.0, 0.1, 10.0), [10.0])  # clamps
    np.testing.assert_allclose(entropy_temperature(logits, 0.0, 0.5, 10.0), [0.5])


@pytest.mark.parametrize(("args", "match"), [
    ((-1.0, 0.1, 2.0), "target entropy must be >= 0 bits, got -1.0"),
    ((1.0, 0.0, 2.0), "need 0 < min_temp <= max_temp, got min_temp=0.0"),
    ((1.0, 3.0, 2.0), "min_temp=3.0, max_temp=2.0"),
])
def test_solver_errors(args, match) -> None:
    with pytest.raises(ValueError, match=f"entropy_temperature: .*{match}"):
        entropy_temperature(np.zeros((1, 3)), *args)


def test_stats_against_numpy() -> None:
    rng = np.random.default_rng(0)
    stats = GenerationStats()
    steps = [softmax(rng.normal(size=(3, 7)) * 2) for _ in range(5)]
    temps = [rng.uniform(0.5, 1.5, size=3) for _ in range(5)]
    alive = [np.array([True, True, True])] * 3 + [np.array([True, False, True])] * 2
    for p, t, a in zip(steps, temps, alive, strict=True):
        stats.record(p, t, a)
    mask = np.stack(alive)
    H = np.stack([-(p * np.log2(p)).sum(-1) for p in steps])[mask]
    conf = np.stack([p.max(-1) for p in steps])[mask]
    assert stats.num_tokens == 13
    assert stats.mean_entropy == pytest.approx(H.mean())
    assert stats.min_entropy == pytest.approx(H.min())
    assert stats.max_entropy == pytest.approx(H.max())
    assert stats.std_entropy == pytest.approx(H.std())
    assert stats.mean_confidence == pytest.approx(conf.mean())
    assert stats.mean_temperature == pytest.approx(np.stack(temps)[mask].mean())
    table = str(stats)
    lines = table.splitlines()
    assert lines[0].startswith("┌") and lines[-1].startswith("└") and "┬" in lines[2]
    assert len({len(line) for line in lines}) == 1  # a closed box
    assert f"{H.mean():.2f} bits" in table and f"{conf.mean():.1%}" in table


def test_empty_stats() -> None:
    stats = GenerationStats()
    assert stats.num_tokens == 0 and np.isnan(stats.mean_entropy)
    assert "tokens" in stats.table()
