"""Tiny random GPTs for the generation tests, and the uncached reference they are checked
against: a full forward of the window's tokens every step, no KV cache."""

import numpy as np
import pytest

import nima
from nima.models import GPT, GPTConfig


def tiny_gpt(seed: int = 0, vocab_size: int = 11, block_size: int = 16, scale: float = 0.4,
             **config) -> GPT:
    """A float64 GPT with large random weights, so its predictions are far from uniform."""
    nima.manual_seed(seed)
    model = GPT(GPTConfig(vocab_size=vocab_size, block_size=block_size, n_layer=2, n_head=2,
                          n_embd=16, **config)).double()
    rng = np.random.default_rng(seed)
    for p in model.parameters():
        p.data[...] = rng.normal(0.0, scale, p.data.shape)
    return model


def full_forward_logits(model: GPT, context: np.ndarray) -> np.ndarray:
    """Next-token logits `(B, V)` from one uncached forward of `context` `(B, n)`."""
    with nima.no_grad():
        logits, _ = model(context)
    return logits.data[:, -1, :].astype(np.float64)


def window_start(start: int, n: int, block_size: int, keep: int) -> int:
    """Where the window of a sequence of length n begins (the ContextWindow rule, restated):
    the last block_size tokens at first, then a jump to the last `keep` tokens when full."""
    if n - start > block_size:
        return n - keep
    return start


@pytest.fixture
def make_gpt():
    return tiny_gpt


def windowed_logits(model: GPT, seq: np.ndarray, T0: int, keep: int | None = None
                    ) -> list[np.ndarray]:
    """The logits `(B, V)` that predicted each of `seq[:, T0:]`, each from one uncached forward
    of the window the sequence had reached (the ContextWindow rule, restated)."""
    bs = model.config.block_size
    keep = bs // 2 if keep is None else keep
    start, out = max(0, T0 - bs), []
    for n in range(T0, seq.shape[1]):
        start = window_start(start, n, bs, keep)
        out.append(full_forward_logits(model, seq[:, start:n]))
    return out


@pytest.fixture
def reference():
    """Greedy decoding the slow way: argmax of a full uncached forward of the window."""

    def greedy(model: GPT, prompts: np.ndarray, steps: int, keep: int | None = None
               ) -> np.ndarray:
        bs = model.config.block_size
        keep = bs // 2 if keep is None else keep
        seq = np.array(prompts, dtype=np.int64)
        start = max(0, seq.shape[1] - bs)
        for _ in range(steps):
            start = window_start(start, seq.shape[1], bs, keep)
            token = full_forward_logits(model, seq[:, start:]).argmax(-1)
            seq = np.concatenate([seq, token[:, None]], axis=1)
        return seq

    return greedy


@pytest.fixture
def windowed():
    return windowed_logits


@pytest.fixture
def logits_of():
    return full_forward_logits
