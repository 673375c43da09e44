"""Decoding a model that carries state (echo or memory layers) past block_size: the prompt
streamed segment by segment, each full window followed by the next segment with the state kept
— equal to the training forward on the same segments, for greedy decoding and beam search."""

import numpy as np
import pytest

import nima
from nima.generation import ContextWindow, generate, softmax

STATEFUL = [dict(memory_layers=(1,), memory_capacity=12),
            dict(echo_layers=(0,)),
            dict(attention="tree", tree_chunk=2, memory_layers=(1,), echo_layers=(1,),
                 recursion_depth=2)]
IDS = ["memory", "echo", "all"]


def stream_logits(model, seq: np.ndarray) -> np.ndarray:
    """Next-token logits at every position of `seq` `(1, n)` by the training forward: one
    segment of block_size tokens after another, the state carried (streams = 1)."""
    T = model.config.block_size
    model.reset_state()
    with nima.no_grad():
        out = [model(seq[:, i:i + T])[0].data for i in range(0, seq.shape[1], T)]
    return np.concatenate(out, axis=1)[0].astype(np.float64)  # (n, V)


@pytest.mark.parametrize("variant", STATEFUL, ids=IDS)
@pytest.mark.parametrize("prompt", [5, 19])
def test_greedy_decoding_past_block_size_equals_the_training_stream(make_gpt, variant: dict,
                                                                    prompt: int) -> None:
    """block_size 8: a prompt of 5 or 19 tokens and 20 new ones cross two or three segment
    boundaries; every token is the argmax of the training forward's logits there."""
    model = make_gpt(seed=31, block_size=8, **variant).eval()
    assert model.config.carries_state
    idx = np.random.default_rng(5).integers(0, 11, size=(1, prompt))
    out = generate(model, idx, 20)
    seq = out.sequences
    logits = stream_logits(model, seq)
    np.testing.assert_array_equal(seq[0, prompt:], logits[prompt - 1:-1].argmax(-1))
    expected = sum(np.log(softmax(logits[t - 1:t])[0, seq[0, t]])
                   for t in range(prompt, seq.shape[1]))
    assert out.sequence_logprobs[0] == pytest.approx(expected, rel=1e-9)


def test_the_window_follows_the_segments(make_gpt) -> None:
    model = make_gpt(seed=32, block_size=8, echo_layers=(0,)).eval()
    window = ContextWindow(model)
    seq = np.random.default_rng(6).integers(0, 11, size=(1, 30))
    with nima.no_grad():
        for n in (19, 20, 24, 25, 30):
            window.next_logits(seq[:, :n])
            assert window.start == (n - 1) // 8 * 8 and window.cached == n - window.start
    assert window.rebuilds == 0 and window.caches[0].length == 30 - 24


@pytest.mark.parametrize("variant", STATEFUL, ids=IDS)
def test_beam_search_past_block_size_scores_by_the_training_stream(make_gpt,
                                                                   variant: dict) -> None:
    """Beams reorder the echo state and memory bank with their rows: each returned sequence's
    summed log-probability is that of the training forward on it."""
    model = make_gpt(seed=33, block_size=8, **variant).eval()
    idx = np.random.default_rng(7).integers(0, 11, size=(1, 6))
    out = generate(model, idx, 14, strategy="tree_beam", num_beams=3, tree_width=2,
                   num_return_sequences=3)
    for r in range(3):
        seq = out.sequences[r:r + 1, :out.lengths[r]]
        logits = stream_logits(model, seq)
        expected = sum(np.log(softmax(logits[t - 1:t])[0, seq[0, t]])
                       for t in range(6, seq.shape[1]))
        assert out.sequence_logprobs[r] == pytest.approx(expected, rel=1e-9)
