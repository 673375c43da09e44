"""Beam search against greedy decoding, exhaustive search and full uncached forwards."""

import itertools

import numpy as np
import pytest

from nima.generation import BeamHypotheses, beam_search, generate, softmax


def summed_logprob(logits_of, model, row: np.ndarray, T0: int) -> float:
    """$\\sum_t \\log p(x_t \\mid x_{<t})$ over the generated tokens, by full forwards."""
    return sum(float(np.log(softmax(logits_of(model, row[None, :t]))[0, row[t]]))
               for t in range(T0, row.size))


def test_one_beam_is_greedy(make_gpt) -> None:
    model = make_gpt(seed=11)
    idx = np.random.default_rng(0).integers(0, 11, size=(2, 3))
    beam = generate(model, idx, 30, num_beams=1, strategy="beam")  # slides the window too
    greedy = generate(model, idx, 30)
    np.testing.assert_array_equal(beam.sequences, greedy.sequences)
    np.testing.assert_allclose(beam.sequence_logprobs, greedy.sequence_logprobs, rtol=1e-9)


def test_scores_are_summed_logprobs_of_a_full_forward(make_gpt, logits_of) -> None:
    model = make_gpt(seed=12)
    idx = np.random.default_rng(1).integers(0, 11, size=(2, 2))
    out = generate(model, idx, 10, num_beams=4, num_return_sequences=3, eos_token_id=3,
                   length_penalty=0.7)
    assert out.sequences.shape[0] == 6
    for i in range(6):
        row = out.sequences[i, :out.lengths[i]]
        lp = summed_logprob(logits_of, model, row, 2)
        assert out.sequence_logprobs[i] == pytest.approx(lp, rel=1e-9)
        assert out.scores[i] == pytest.approx(lp / (row.size - 2) ** 0.7, rel=1e-9)
        assert row[-1] == 3 or row.size == 12  # ended by eos, or ran to max_new_tokens
        assert 3 not in row[2:-1].tolist()
    for b in range(2):  # best first
        assert np.all(np.diff(out.scores[3 * b:3 * b + 3]) <= 0)


def test_beams_across_the_sliding_window(make_gpt, windowed) -> None:
    model = make_gpt(seed=15)  # block_size 16: 30 new tokens rebuild the caches three times
    idx = np.random.default_rng(2).integers(0, 11, size=(2, 4))
    out = generate(model, idx, 30, num_beams=3, num_return_sequences=3)
    for i in range(6):
        row = out.sequences[i:i + 1, :out.lengths[i]]
        logits = windowed(model, row, 4)  # each step's logits, uncached
        lp = sum(float(np.log(softmax(z)[0, row[0, 4 + t]])) for t, z in enumerate(logits))
        assert out.sequence_logprobs[i] == pytest.approx(lp, rel=1e-9)


def test_enough_beams_find_the_exhaustive_optimum(make_gpt, logits_of) -> None:
    model = make_gpt(seed=13, vocab_size=5, scale=0.8)
    idx = np.array([[1, 4]])
    out = generate(model, idx, 3, num_beams=25)  # 25 = 5^2 beams keep every 2-token prefix
    best = max(itertools.product(range(5), repeat=3),
               key=lambda s: summed_logprob(logits_of, model, np.array([1, 4, *s]), 2))
    assert out.generated(0) == list(best)


def test_early_stopping_and_lengths(make_gpt) -> None:
    model = make_gpt(seed=14)
    idx = np.array([[2, 5]])
    out = generate(model, idx, 20, num_beams=3, eos_token_id=0, early_stopping=True,
                   num_return_sequences=3)
    for i in range(3):
        row = out.sequences[i, :out.lengths[i]]
        assert row[-1] == 0 or row.size == 22
        assert np.all(out.sequences[i, out.lengths[i]:] == 0)  # padding


def test_hypotheses_keep_the_best_and_know_when_done() -> None:
    h = BeamHypotheses(2, length_penalty=1.0, early_stopping=False)
    h.add(np.array([1, 2]), -4.0)  # score -2
    h.add(np.array([1]), -1.5)  # score -1.5
    h.add(np.array([1, 2, 3, 4]), -12.0)  # score -3: dropped
    assert [s for s, _, _ in h.hyps] == [-1.5, -2.0]
    assert h.is_done(best_running=-9.0, length=3)  # -3 cannot beat the worst, -2
    assert not h.is_done(best_running=-3.0, length=3)  # -1 could
    assert BeamHypotheses(2, 1.0, early_stopping=True).is_done(0.0, 1) is False


def test_errors(make_gpt) -> None:
    model = make_gpt()
    with pytest.raises(ValueError, match=r"num_return_sequences must be in \[1, num_beams=2\]"):
        beam_search(model, np.array([[1]]), 3, num_beams=2, num_return_sequences=3)
    with pytest.raises(ValueError, match="stop_strings are not supported with beam search"):
        generate(model, np.array([[1]]), 3, num_beams=2, stop_strings="a", tokenizer=str)


def test_kv_cache_reorder() -> None:
    from nima.nn.attention import KVCache

    cache = KVCache()
    cache.reorder(np.array([0, 0]))  # empty: nothing to move
    k = np.arange(3 * 2 * 4 * 2, dtype=float).reshape(3, 2, 4, 2)
    cache.k, cache.v = k.copy(), -k
    cache.reorder(np.array([2, 0, 0, 1]))
    np.testing.assert_array_equal(cache.k, k[[2, 0, 0, 1]])
    np.testing.assert_array_equal(cache.v, -k[[2, 0, 0, 1]])
    with pytest.raises(ValueError, match=r"KVCache.reorder: indices must be 1-D ints in \[0, 4\)"):
        cache.reorder(np.array([4]))
