"""Prompts of different lengths: left-padded as Hugging Face pads them, each row decodes exactly
as its prompt alone — greedy, with the repetition penalty, and beam search — for every
position kind, through the cache; the output shows the padding and `tolist` drops it."""

import numpy as np
import pytest

from nima.generation import generate
from nima.generation.window import Prompts, as_prompts

POSITIONS = ["learned", "sinusoidal", "rope", "alibi"]
PROMPTS = [[3, 1, 4, 1, 5], [9], [2, 6, 5]]


@pytest.mark.parametrize("position", POSITIONS)
@pytest.mark.parametrize("penalty", [None, 1.5])
def test_greedy_rows_equal_their_prompts_alone(make_gpt, position, penalty) -> None:
    model = make_gpt(position=position, block_size=16)
    out = generate(model, PROMPTS, 8, repetition_penalty=penalty, stats=False)
    assert out.sequences.shape == (3, 5 + 8) and out.starts.tolist() == [0, 4, 2]
    for b, prompt in enumerate(PROMPTS):
        one = generate(model, [prompt], 8, repetition_penalty=penalty, stats=False)
        assert out.tolist()[b] == one.tolist()[0]
        assert out.generated(b) == one.generated(0)
        np.testing.assert_allclose(out.sequence_logprobs[b], one.sequence_logprobs[0],
                                   rtol=1e-10)
    assert (out.sequences[1, :4] == 0).all()  # the padding shows as pad_token_id


@pytest.mark.parametrize("position", POSITIONS)
def test_beam_search_rows_equal_their_prompts_alone(make_gpt, position) -> None:
    model = make_gpt(position=position, block_size=16)
    out = generate(model, PROMPTS, 6, num_beams=3, num_return_sequences=2, stats=False)
    for b, prompt in enumerate(PROMPTS):
        one = generate(model, [prompt], 6, num_beams=3, num_return_sequences=2, stats=False)
        for j in range(2):
            assert out.tolist()[2 * b + j] == one.tolist()[j]
            np.testing.assert_allclose(out.scores[2 * b + j], one.scores[j], rtol=1e-10)


def test_ids_and_attention_mask_pair(make_gpt) -> None:
    """HF's form: ids with garbage under the padding, and a 0/1 mask."""
    model = make_gpt(position="rope")
    ids = np.array([[7, 7, 9], [2, 6, 5]])
    mask = np.array([[0, 0, 1], [1, 1, 1]])
    pair = generate(model, (ids, mask), 5, eos_token_id=10, pad_token_id=1, stats=False)
    lists = generate(model, [[9], [2, 6, 5]], 5, eos_token_id=10, pad_token_id=1, stats=False)
    np.testing.assert_array_equal(pair.sequences, lists.sequences)
    assert (pair.sequences[0, :2] == 1).all()


def test_sampling_with_padding_draws_from_the_rows_own_distributions(make_gpt, logits_of) -> None:
    """Sampled rows follow their own prompts: the log-probability of each chosen token is that
    of the unpadded prompt's full forward."""
    model = make_gpt(position="learned")
    out = generate(model, [[1, 2, 3], [4]], 4, do_sample=True, seed=3, stats=False)
    for b, row in enumerate(out.tolist()):
        logp = 0.0
        for n in range(len(row) - 4, len(row)):
            z = logits_of(model, np.array([row[:n]]))[0]
            logp += z[row[n]] - np.log(np.exp(z - z.max()).sum()) - z.max()
        np.testing.assert_allclose(out.sequence_logprobs[b], logp, rtol=1e-10)


def test_as_prompts_forms_and_errors() -> None:
    p = as_prompts("generate", [[1, 2, 3], [4, 5]])
    assert isinstance(p, Prompts) and p.starts.tolist() == [0, 1]
    assert p.ids.tolist() == [[1, 2, 3], [4, 4, 5]]  # padding holds the row's first token
    same = as_prompts("generate", [[1, 2], [3, 4]])
    assert not same.padded and same.ids.tolist() == [[1, 2], [3, 4]]
    assert as_prompts("generate", p) is p
    with pytest.raises(ValueError, match="prompt 1 is empty"):
        as_prompts("generate", [[1, 2], []])
    with pytest.raises(ValueError, match=r"must be left-padded.*row 0"):
        as_prompts("generate", (np.array([[1, 2, 3]]), np.array([[1, 1, 0]])))
    with pytest.raises(ValueError, match=r"must be left-padded.*row 1"):
        as_prompts("generate", (np.array([[1, 2], [3, 4]]), np.array([[1, 1], [1, 0]])))
    with pytest.raises(ValueError, match=r"attention_mask must be 0/1 or bool of the ids' shape"):
        as_prompts("generate", (np.array([[1, 2]]), np.array([[1.0, 1.0]])))
