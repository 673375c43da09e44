r"""Exercises of the GPT page (docs/gpt.md)."""

import math

import numpy as np

import nima
from exercises import close, equal
from nima.generation import generate
from nima.models import GPT, GPTConfig
from nima.models.gpt import Block


def block_forward(block: Block, x: nima.Tensor) -> nima.Tensor:
    r"""A transformer block, from its parts.

    Using the block's own modules — `block.ln_1`, `block.attn`, `block.ln_2`, `block.ffn` —
    return its output for `x` `(B, T, C)`: with `block.pre_norm`,
    $x + \operatorname{Attn}(\operatorname{N}_1(x))$ then
    $x + \operatorname{FFN}(\operatorname{N}_2(x))$;
    otherwise (post-norm) $\operatorname{N}_1(x + \operatorname{Attn}(x))$ then
    $\operatorname{N}_2(x + \operatorname{FFN}(x))$. (Dropout is off in these blocks.)
    """
    raise NotImplementedError


def check_block_forward(block_forward) -> None:
    """Compares with `block(x)` for a pre-norm and a post-norm block of a small GPT."""
    rng = np.random.default_rng(0)
    for placement in ("pre", "post"):
        nima.manual_seed(0)
        config = GPTConfig(vocab_size=10, block_size=8, n_layer=1, n_head=2, n_embd=8,
                           norm_placement=placement)
        block = Block(config).double()
        x = nima.tensor(rng.standard_normal((2, 5, 8)))
        with nima.no_grad():
            close(block_forward(block, x), block(x), f"the {placement}-norm block's output")


def greedy_decode(model: GPT, prompt: np.ndarray, n: int) -> np.ndarray:
    r"""Greedy decoding with KV caches.

    `prompt` is `(B, T0)` ids. Make the caches with `model.new_caches()`, run the whole prompt
    once with `model(prompt, caches=caches)`, then repeat `n` times: take the argmax of the
    last position's logits and feed *only that token*, `(B, 1)`, with the same caches. Return
    the prompt followed by the `n` new tokens, `(B, T0 + n)`. Work under `nima.no_grad()`.
    """
    raise NotImplementedError


def check_greedy_decode(greedy_decode) -> None:
    """Compares with `nima.generate` (greedy) on a random small GPT, 12 tokens after a prompt
    of 3, for a batch of 2."""
    nima.manual_seed(1)
    model = GPT(GPTConfig(vocab_size=13, block_size=16, n_layer=2, n_head=2, n_embd=16,
                          tie_weights=False))
    for block in model.blocks:  # weights large enough for the context to matter
        block.attn.qkv.weight.data *= 8.0
        block.attn.proj.weight.data *= 8.0
    model.lm_head.weight.data *= 20.0
    prompt = np.random.default_rng(1).integers(0, 13, (2, 3))
    expected = generate(model, prompt, 12).sequences
    got = np.asarray(greedy_decode(model, prompt.copy(), 12))
    close(got, expected, "the sequences")


def initial_loss(V: int) -> float:
    r"""Predict the loss of an untrained model.

    GPT-2's initialisation makes every logit nearly zero. What mean cross-entropy (in nats)
    does a freshly built model give, as a function of the vocabulary size $V$?
    """
    raise NotImplementedError


def check_initial_loss(initial_loss) -> None:
    """Builds fresh GPTs with vocabularies of 65 and 1000, runs random targets through them,
    and compares with their loss to 0.05."""
    for V in (65, 1000):
        nima.manual_seed(0)
        model = GPT(GPTConfig(vocab_size=V, block_size=16, n_layer=1, n_head=2, n_embd=16))
        ids = np.random.default_rng(0).integers(0, V, (4, 16))
        with nima.no_grad():
            _, loss = model(ids, np.roll(ids, -1, axis=1))
        close(initial_loss(V), loss.item(), f"the initial loss at V = {V}", atol=0.05)
        equal(math.isfinite(initial_loss(V)), True, "a finite loss")
