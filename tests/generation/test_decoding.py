"""Greedy, sampling and entropy-aware decoding on the KV cache, against uncached full forwards."""

import numpy as np
import pytest

import nima
from nima.generation import (
    GenerationConfig,
    RepetitionPenalty,
    Temperature,
    TopK,
    TopP,
    generate,
    sample_tokens,
)
from nima.generation import softmax as softmax_rows


def prompts(B: int, T: int, V: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, V, size=(B, T))


def test_greedy_equals_the_argmax_path(make_gpt, reference) -> None:
    model = make_gpt()
    idx = prompts(2, 3, 11)
    out = generate(model, idx, 10)
    np.testing.assert_array_equal(out.sequences, reference(model, idx, 10))
    assert out.strategy == "greedy" and out.lengths.tolist() == [13, 13]
    np.testing.assert_array_equal(out.sequences[:, :3], idx)


@pytest.mark.parametrize("keep", [None, 1, 5, 16])
def test_sliding_window_matches_the_uncached_path(make_gpt, reference, keep) -> None:
    model = make_gpt(seed=1)  # block_size 16: 30 new tokens slide the window several times
    idx = prompts(2, 5, 11, seed=1)
    out = generate(model, idx, 30, window_keep=keep)
    np.testing.assert_array_equal(out.sequences, reference(model, idx, 30, keep=keep))


def test_full_keep_is_nanogpts_crop(make_gpt, logits_of) -> None:
    model = make_gpt(seed=2)
    seq = prompts(1, 20, 11, seed=2)  # a prompt longer than block_size is cropped too
    out = generate(model, seq, 25, window_keep=16)
    for _ in range(25):  # nanoGPT: idx_cond = idx[:, -block_size:]
        token = logits_of(model, seq[:, -16:]).argmax(-1)
        seq = np.concatenate([seq, token[:, None]], axis=1)
    np.testing.assert_array_equal(out.sequences, seq)


def test_batch_equals_prompts_one_by_one(make_gpt) -> None:
    model = make_gpt(seed=3)
    idx = prompts(3, 4, 11, seed=3)
    together = generate(model, idx, 30).sequences
    for b in range(3):
        np.testing.assert_array_equal(together[b], generate(model, idx[b:b + 1], 30).sequences[0])


def test_cached_sampling_equals_uncached(make_gpt, logits_of) -> None:
    model = make_gpt(seed=4)
    idx = prompts(2, 3, 11, seed=4)
    kw = dict(temperature=0.9, top_k=6, top_p=0.9, repetition_penalty=1.3)
    out = generate(model, idx, 12, do_sample=True, seed=7, **kw)
    rng, seq, logprob = np.random.default_rng(7), idx.copy(), np.zeros(2)
    for _ in range(12):  # the same processors and draws, on a full forward each step
        z = RepetitionPenalty(1.3)(seq, logits_of(model, seq))
        z = TopP(0.9)(seq, TopK(6)(seq, Temperature(0.9)(seq, z)))
        p = softmax_rows(z)
        token = sample_tokens(p, rng)
        logprob += np.log(p[np.arange(2), token])
        seq = np.concatenate([seq, token[:, None]], axis=1)
    np.testing.assert_array_equal(out.sequences, seq)
    np.testing.assert_allclose(out.sequence_logprobs, logprob, rtol=1e-9)


def test_seeded_sampling_is_reproducible_and_leaves_nima_rng_alone(make_gpt) -> None:
    model = make_gpt(seed=5)
    idx = prompts(1, 2, 11, seed=5)
    state = nima.random.get_state()
    a = generate(model, idx, 30, do_sample=True, seed=1).sequences
    assert nima.random.get_state() == state
    np.testing.assert_array_equal(a, generate(model, idx, 30, do_sample=True, seed=1).sequences)
    assert not np.array_equal(a, generate(model, idx, 30, do_sample=True, seed=2).sequences)
    rng = np.random.default_rng(1)  # a generator passed in draws the same as its seed
    np.testing.assert_array_equal(a, generate(model, idx, 30, do_sample=True,
                                              generator=rng).sequences)


def test_num_return_sequences_samples_independently(make_gpt) -> None:
    model = make_gpt(seed=5, scale=0.1)  # flatter: independent draws should differ
    out = generate(model, prompts(2, 2, 11), 20, do_sample=True, seed=0, num_return_sequences=3)
    assert out.sequences.shape == (6, 22)
    np.testing.assert_array_equal(out.sequences[0, :2], out.sequences[2, :2])
    assert not np.array_equal(out.sequences[0], out.sequences[1])


def test_stops_at_eos(make_gpt, reference) -> None:
    model = make_gpt(seed=6)
    idx = prompts(2, 3, 11, seed=6)
    free = reference(model, idx, 12)
    eos = int(free[0, 3 + 4])  # the token row 0 emits 5th
    first = [int(np.argmax(np.append(row[3:] == eos, True))) for row in free]
    out = generate(model, idx, 12, eos_token_id=eos)
    for r in range(2):
        n = min(3 + first[r] + 1, 15)
        assert out.lengths[r] == n
        np.testing.assert_array_equal(out.sequences[r, :n], free[r, :n])
        assert np.all(out.sequences[r, n:] == eos)  # padded with eos (pad_token_id default)
    assert out.sequences.shape[1] == max(out.lengths)  # stopped when every row had finished


def test_stops_on_a_string(make_gpt, reference) -> None:
    model = make_gpt(seed=7)
    idx = prompts(1, 3, 11, seed=7)
    decode = lambda ids: "".join("abcdefghijk"[i] for i in ids)  # noqa: E731
    text = decode(reference(model, idx, 15)[0, 3:].tolist())
    stop = text[4:7]
    m = next(m for m in range(1, 16) if stop in text[:m])  # tokens until it first appears
    out = generate(model, idx, 15, stop_strings=[stop], tokenizer=decode)
    assert out.lengths[0] == 3 + m and decode(out.generated(0)) == text[:m]


def test_on_token_streams_every_step(make_gpt) -> None:
    model = make_gpt(seed=8)
    seen = []
    out = generate(model, prompts(1, 2, 11), 9, on_token=lambda t: seen.append(int(t[0])))
    assert seen == out.generated(0)


def test_entropy_strategy_hits_its_target(make_gpt) -> None:
    model = make_gpt(seed=9)
    out = generate(model, prompts(2, 3, 11), 20, target_entropy=1.5, min_temp=0.01,
                   max_temp=50.0, seed=0)
    assert out.strategy == "entropy"
    np.testing.assert_allclose(out.stats.entropy, 1.5, atol=1e-3)
    assert np.all((out.stats.temperature >= 0.01) & (out.stats.temperature <= 50.0))
    assert abs(out.stats.mean_entropy - 1.5) < 1e-3


def test_entropy_strategy_clamps_out_of_reach(make_gpt, logits_of) -> None:
    model = make_gpt(seed=9)
    target = np.log2(11) - 1e-3  # nearly uniform: only a very hot temperature gets there
    out = generate(model, prompts(1, 3, 11), 10, target_entropy=target, max_temp=1.0, seed=0)
    np.testing.assert_allclose(out.stats.temperature, 1.0)  # clamped to max_temp
    p = np.stack([softmax_rows(logits_of(model, out.sequences[:, :n]))[0] for n in range(3, 13)])
    H = -(p * np.log2(p)).sum(-1)  # what T = 1 gives: below the target at every step
    assert np.all(target > H)
    np.testing.assert_allclose(out.stats.entropy[:, 0], H, rtol=1e-6)


def test_greedy_stats_against_the_full_forward(make_gpt, logits_of) -> None:
    model = make_gpt(seed=10)
    out = generate(model, prompts(1, 3, 11), 6)
    p = np.stack([softmax_rows(logits_of(model, out.sequences[:, :n]))[0] for n in range(3, 9)])
    np.testing.assert_allclose(out.stats.confidence[:, 0], p.max(-1), rtol=1e-6)
    np.testing.assert_allclose(out.stats.entropy[:, 0], -(p * np.log2(p)).sum(-1), rtol=1e-6)
    np.testing.assert_allclose(out.sequence_logprobs[0], np.log(p.max(-1)).sum(), rtol=1e-6)


def test_mode_is_restored_and_backends_agree(make_gpt) -> None:
    model = make_gpt()
    backend = nima.kernels.current()
    with nima.kernels.backend("numpy"):
        reference = generate(model, prompts(2, 3, 11), 5).sequences
    np.testing.assert_array_equal(generate(model, prompts(2, 3, 11), 5).sequences, reference)
    assert nima.kernels.current() == backend
    for mode in (True, False):
        model.train(mode)
        generate(model, prompts(1, 2, 11), 3)
        assert model.training is mode
        generate(model, prompts(1, 2, 11), 3, num_beams=2)
        assert model.training is mode


def test_config_and_keywords_combine(make_gpt) -> None:
    model = make_gpt()
    config = GenerationConfig(max_new_tokens=4, do_sample=True, top_k=3, seed=1)
    by_config = generate(model, prompts(2, 3, 11), config=config)
    by_keywords = generate(model, prompts(2, 3, 11), 4, do_sample=True, top_k=3, seed=1)
    np.testing.assert_array_equal(by_config.sequences, by_keywords.sequences)
    assert by_config.sequences.shape == (2, 7)
    longer = generate(model, prompts(2, 3, 11), 6, config=config)  # keywords override it
    assert longer.sequences.shape == (2, 9)
    with pytest.raises(ValueError, match=r"GenerationConfig\.top_kk: unknown key; did you mean "
                                         r"'top_k'"):
        generate(model, prompts(1, 2, 11), 3, top_kk=3)


@pytest.mark.parametrize(("kwargs", "match"), [
    (dict(idx=np.array([1, 2])), r"generate: idx must be a batch of prompts \(B, T\)"),
    (dict(max_new_tokens=-1), "GenerationConfig.max_new_tokens: must be >= 0, got -1"),
    (dict(max_new_tokens=10**12), "GenerationConfig.max_new_tokens: must be <= 1000000"),
    (dict(strategy="nucleus"), "GenerationConfig.strategy: must be one of 'greedy', 'sample'"),
    (dict(strategy="sample", num_beams=3), "num_beams: 3 beams need strategy 'beam'"),
    (dict(strategy="entropy"), "GenerationConfig.target_entropy: strategy 'entropy' needs"),
    (dict(stop_strings="x"), "stop_strings need a tokenizer"),
    (dict(num_return_sequences=2), "greedy decoding gives one sequence per prompt"),
    (dict(temperature=0.0), "GenerationConfig.temperature: must be > 0, got 0.0"),
    (dict(temperature=float("inf")), "GenerationConfig.temperature: must be a finite number"),
    (dict(do_sample=True, top_p=2.0), "GenerationConfig.top_p: must be <= 1, got 2.0"),
    (dict(window_keep=17), "ContextWindow.keep: must be <= block_size=16, got 17"),
    (dict(target_entropy=2.0, min_temp=1.0, max_temp=0.5), "min_temp: must be <= max_temp"),
    (dict(do_sample=True, top_k=0), "GenerationConfig.top_k: must be >= 1, got 0"),
    (dict(repetition_penalty=0.0), "GenerationConfig.repetition_penalty: must be > 0"),
    (dict(num_beams=True), "GenerationConfig.num_beams: expected int, got bool"),
])
def test_errors(make_gpt, kwargs, match) -> None:
    model = make_gpt()
    args = dict(idx=prompts(1, 2, 11), max_new_tokens=3) | kwargs
    with pytest.raises(ValueError, match=match):
        generate(model, args.pop("idx"), args.pop("max_new_tokens"), **args)
