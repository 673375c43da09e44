"""Logits processors against hand-worked arithmetic and brute-force oracles."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from nima.generation import (
    LogitsProcessorList,
    RepetitionPenalty,
    Temperature,
    TopK,
    TopP,
    sample_tokens,
    softmax,
)

logit_rows = arrays(np.float64, st.tuples(st.integers(1, 4), st.integers(2, 30)),
                    elements=st.floats(-8, 8, allow_nan=False, width=32))
distinct_rows = arrays(np.float64, st.tuples(st.integers(1, 4), st.integers(2, 30)),
                       elements=st.floats(-8, 8, allow_nan=False, width=32), unique=True)
IDS = np.zeros((1, 1), dtype=np.int64)


def ids_for(logits: np.ndarray) -> np.ndarray:
    return np.zeros((logits.shape[0], 1), dtype=np.int64)


def test_temperature_divides() -> None:
    logits = np.array([[2.0, -1.0, 0.5]])
    np.testing.assert_allclose(Temperature(0.5)(IDS, logits), [[4.0, -2.0, 1.0]])
    per_row = Temperature(np.array([2.0, 4.0]))(np.zeros((2, 1), np.int64),
                                                np.array([[2.0, 4.0], [8.0, -4.0]]))
    np.testing.assert_allclose(per_row, [[1.0, 2.0], [2.0, -1.0]])


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_temperature_errors(bad: float) -> None:
    with pytest.raises(ValueError, match="Temperature: temperature must be"):
        Temperature(bad)


@given(logit_rows, st.integers(1, 40))
def test_top_k_keeps_the_k_largest(logits: np.ndarray, k: int) -> None:
    out = TopK(k)(ids_for(logits), logits)
    for row, kept in zip(logits, out, strict=True):
        kth = np.sort(row)[::-1][min(k, row.size) - 1]  # the k-th largest value
        np.testing.assert_array_equal(np.isfinite(kept), row >= kth)
        np.testing.assert_array_equal(kept[row >= kth], row[row >= kth])
    # and sampling never leaves the set
    tokens = sample_tokens(softmax(out), np.random.default_rng(0))
    assert np.all(np.isfinite(out[np.arange(len(out)), tokens]))


def nucleus_oracle(row: np.ndarray, p: float) -> tuple[set[int], float]:
    """Brute force: the smallest k with mass(top k) >= p; its tokens; the slack |mass - p|."""
    probs = np.exp(row - row.max())
    probs /= probs.sum()
    order = sorted(range(row.size), key=lambda i: -row[i])
    for k in range(1, row.size + 1):
        mass = math.fsum(probs[i] for i in order[:k])
        if mass >= p:
            before = math.fsum(probs[i] for i in order[:k - 1])
            return set(order[:k]), min(abs(mass - p), abs(before - p))
    return set(order), 1.0


@given(distinct_rows, st.floats(0.01, 1.0))
def test_top_p_is_the_smallest_set_reaching_p(logits: np.ndarray, p: float) -> None:
    out = TopP(p)(ids_for(logits), logits)
    for row, kept in zip(logits, out, strict=True):
        expected, slack = nucleus_oracle(row, p)
        if slack < 1e-9:  # a rounding tie between two set sizes: either is right
            continue
        assert set(np.flatnonzero(np.isfinite(kept)).tolist()) == expected
    tokens = sample_tokens(softmax(out), np.random.default_rng(1))
    assert np.all(np.isfinite(out[np.arange(len(out)), tokens]))


def test_top_p_worked_example() -> None:
    # probabilities 0.5, 0.3, 0.15, 0.05: p = 0.79 needs {0, 1}; p = 0.81 needs {0, 1, 2}
    logits = np.log(np.array([[0.5, 0.3, 0.15, 0.05]]))
    assert np.isfinite(TopP(0.79)(IDS, logits)).tolist() == [[True, True, False, False]]
    assert np.isfinite(TopP(0.81)(IDS, logits)).tolist() == [[True, True, True, False]]
    assert np.isfinite(TopP(0.1)(IDS, logits)).tolist() == [[True, False, False, False]]
    assert np.isfinite(TopP(1.0)(IDS, logits)).all()


def test_repetition_penalty_by_hand() -> None:
    logits = np.array([[2.0, -1.0, 0.5, 3.0], [2.0, -1.0, 0.5, 3.0]])
    ids = np.array([[0, 1, 1], [3, 3, 3]])  # row 0 saw tokens 0 and 1 (twice); row 1 saw 3
    out = RepetitionPenalty(2.0)(ids, logits)
    np.testing.assert_allclose(out, [[1.0, -2.0, 0.5, 3.0], [2.0, -1.0, 0.5, 1.5]])
    assert logits[0, 0] == 2.0  # input untouched
    np.testing.assert_allclose(RepetitionPenalty(0.5)(ids, logits)[0], [4.0, -0.5, 0.5, 3.0])


def test_chain_applies_in_order() -> None:
    logits = np.array([[4.0, 2.0, -2.0, 1.0]])
    ids = np.array([[0]])
    chain = LogitsProcessorList([RepetitionPenalty(4.0), Temperature(0.5), TopK(2)])
    # penalty: [1, 2, -2, 1]; / 0.5: [2, 4, -4, 2]; top-2 keeps values >= 2 (a tie: three)
    np.testing.assert_allclose(chain(ids, logits), [[2.0, 4.0, -np.inf, 2.0]])
    with pytest.raises(TypeError, match="not callable"):
        LogitsProcessorList([1.0])


@pytest.mark.parametrize(("make", "match"), [
    (lambda: TopK(0), "TopK.top_k: must be >= 1, got 0"),
    (lambda: TopK(2.5), "TopK.top_k: expected int"),
    (lambda: TopP(0.0), r"TopP: top_p must be in \(0, 1\], got 0.0"),
    (lambda: TopP(1.5), "TopP: top_p"),
    (lambda: RepetitionPenalty(0.0), "RepetitionPenalty: penalty must be a finite number > 0"),
    (lambda: RepetitionPenalty(-1.0), "RepetitionPenalty"),
])
def test_bad_values(make, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make()


def test_shape_errors() -> None:
    with pytest.raises(ValueError, match=r"TopK: expected input_ids \(B, T\) and logits"):
        TopK(2)(IDS, np.zeros(5))


def test_sampling_follows_the_distribution() -> None:
    probs = np.array([[0.1, 0.0, 0.6, 0.3]])
    rng = np.random.default_rng(0)
    draws = np.concatenate([sample_tokens(np.repeat(probs, 1000, 0), rng) for _ in range(20)])
    freq = np.bincount(draws, minlength=4) / draws.size
    # 20000 draws: the standard error of each frequency is below 0.004
    np.testing.assert_allclose(freq, probs[0], atol=0.015)
    assert freq[1] == 0.0
