"""`decode_step` computes exactly what `GPT.forward` computes with a KV cache — for every config
`supports` accepts — and `supports` refuses the rest, which then decode through the model."""

import itertools

import numpy as np
import pytest

import nima
from nima.generation import generate
from nima.generation.fast import decode_step, supports
from nima.generation.learned import LearnedInference
from nima.models import GPT, GPTConfig

SUPPORTED = [dict(position=p, norm=n, ffn=f, bias=b) for p, n, f, b in itertools.product(
    ("learned", "sinusoidal"), ("layernorm", "rmsnorm"), ("gelu", "relu"), (False, True))]


def model_of(seed: int = 0, **config) -> GPT:
    nima.manual_seed(seed)
    model = GPT(GPTConfig(vocab_size=13, block_size=12, n_layer=2, n_head=2, n_embd=16,
                          **config)).double()
    rng = np.random.default_rng(seed)
    for p in model.parameters():  # large random weights: far from uniform predictions
        p.data[...] = rng.normal(0.0, 0.5, p.data.shape)
    return model.eval()


@pytest.mark.parametrize("config", SUPPORTED, ids=lambda c: "-".join(map(str, c.values())))
def test_decode_step_equals_the_cached_forward(config):
    model = model_of(**config)
    assert supports(model)
    idx = np.random.default_rng(1).integers(0, 13, size=(3, 9))
    ours, theirs = model.new_caches(), model.new_caches()
    with nima.no_grad():
        for start, stop in ((0, 4), (4, 5), (5, 6), (6, 9)):  # a prefill, then tokens
            got = decode_step(model, idx[:, start:stop], ours)
            want = model(idx[:, start:stop], caches=theirs)[0].data
            np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(a.k, b.k, atol=1e-12)
        np.testing.assert_allclose(a.v, b.v, atol=1e-12)


def test_decode_step_matches_in_float32_too():
    model = model_of(position="learned").float()
    idx = np.random.default_rng(2).integers(0, 13, size=(2, 6))
    with nima.no_grad():
        got = decode_step(model, idx, model.new_caches())
        want = model(idx)[0].data
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("config", [dict(position="rope"), dict(position="alibi"),
                                    dict(ffn="swiglu"), dict(norm_placement="post"),
                                    dict(attention="hybrid")], ids=str)
def test_other_models_decode_through_forward(config):
    model = model_of(**config)
    assert not supports(model)
    assert not supports(LearnedInference(model_of()))
    out = generate(model, np.array([[1, 2, 3]]), 5)  # greedy, through GPT.forward
    assert out.sequences.shape == (1, 8)


def test_generate_is_the_same_on_arrays_and_through_the_model(monkeypatch):
    """Greedy and seeded sampling give the same tokens whichever path decodes."""
    model = model_of(position="learned")
    prompts = np.random.default_rng(3).integers(0, 13, size=(2, 4))
    kwargs = dict(do_sample=True, top_k=5, seed=7, window_keep=4)  # slides the window too
    fast = generate(model, prompts, 20, **kwargs)
    monkeypatch.setattr("nima.generation.window.supports", lambda model: False)
    slow = generate(model, prompts, 20, **kwargs)
    np.testing.assert_array_equal(fast.sequences, slow.sequences)
    np.testing.assert_allclose(fast.sequence_logprobs, slow.sequence_logprobs, rtol=1e-9)
