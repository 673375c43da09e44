r"""Exercises of tutorial 11, beam search by hand."""

import numpy as np

import nima
from exercises import close
from nima.generation import generate
from nima.models import GPT, GPTConfig


def sequence_logprob(model: GPT, prompt: list[int], tokens: list[int]) -> float:
    r"""Score a sequence with one forward pass.

    Run `model` once, without a cache and under `nima.no_grad()`, on the prompt followed by
    the generated `tokens` (one row), and return $\sum_t \log p(x_t \mid x_{<t})$ over the
    generated tokens only. Mind the alignment: the logits at position $i$ predict the token at
    position $i + 1$.
    """
    raise NotImplementedError


def check_sequence_logprob(sequence_logprob) -> None:
    """Compares with the summed log-probabilities `nima.generate` reports for sequences it
    sampled and for a beam search, from a small random GPT in float64."""
    nima.manual_seed(1)
    gpt = GPT(GPTConfig(vocab_size=12, block_size=16, n_layer=2, n_head=2, n_embd=16,
                        tie_weights=False)).double()
    gpt.lm_head.weight.data *= 10.0  # distributions with clear favourites
    prompt = np.array([[3, 5, 7]])
    outs = [generate(gpt, prompt, 6, do_sample=True, seed=s) for s in (0, 1)]
    outs.append(generate(gpt, prompt, 6, num_beams=3, length_penalty=1.0))
    for out in outs:
        tokens = out.generated(0)
        close(sequence_logprob(gpt, [3, 5, 7], tokens), out.sequence_logprobs[0],
              f"log p of {tokens}", rtol=1e-9, atol=1e-9)
