"""Beam search against greedy decoding, exhaustive search and full uncached forwards."""

import itertools

import numpy as np
import pytest

import nima
from nima.generation import BeamHypotheses, generate, softmax
from nima.models import GPTConfig


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
    with pytest.raises(ValueError, match=r"num_return_sequences: at most num_beams=2"):
        generate(model, np.array([[1]]), 3, num_beams=2, num_return_sequences=3)
    with pytest.raises(ValueError, match="stop_strings: not supported with beam search"):
        generate(model, np.array([[1]]), 3, num_beams=2, stop_strings="a", tokenizer=str)


class Bigram:
    """A language model whose next-token distribution depends on the last token only: row
    `table[t]` of probabilities. Enough of the protocol `generate` needs, with a trivial
    cache (only its length matters)."""

    class Cache:
        def __init__(self) -> None:
            self.length = 0

        def reorder(self, rows: np.ndarray) -> None:
            pass

    def __init__(self, table: np.ndarray) -> None:
        self.table, self.training = table, False
        self.config = GPTConfig(vocab_size=len(table), block_size=8, n_layer=1, n_head=1,
                                n_embd=2)

    def eval(self) -> None:
        pass

    def train(self, mode: bool = True) -> None:
        pass

    def new_caches(self) -> list:
        return [Bigram.Cache()]

    def forward(self, idx: np.ndarray, caches: list) -> tuple[nima.Tensor, None]:
        caches[0].length += idx.shape[1]
        with np.errstate(divide="ignore"):
            return nima.Tensor(np.log(self.table[idx])), None  # (B, T, V)


def test_early_stopping_keeps_a_better_running_beam() -> None:
    # tokens: 0 = BOS, 1 = a, 2 = b, 3 = EOS. After BOS: a .5, b .2, EOS .3; after a: a .9;
    # after b: EOS .9 (the rest of each row spread over the other tokens)
    table = np.full((4, 4), 1e-9)
    table[0, 1:] = [0.5, 0.2, 0.3]
    table[1, 1], table[1, 2] = 0.9, 0.1 - 2e-9
    table[2, 3], table[2, 1] = 0.9, 0.1 - 2e-9
    table[3, 3] = 1.0 - 3e-9
    out = generate(Bigram(table), np.array([[0]]), 2, num_beams=2, early_stopping=True,
                   eos_token_id=3, num_return_sequences=2)
    # [a, a] scores log(.5 * .9) / 2 = -0.399: better than both finished hypotheses,
    # [b, EOS] (-0.857) and [EOS] (-1.204), so it must be returned first
    assert out.sequences[0, 1:].tolist() == [1, 1]
    np.testing.assert_allclose(out.scores[0], np.log(0.5 * 0.9) / 2, rtol=1e-6)
    assert out.sequences[1, 1:].tolist() == [2, 3]
    assert out.scores[0] >= out.scores[1]


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
