"""Solutions of exercises/gpt.py."""

import math

import numpy as np

import nima


def block_forward(block, x):
    if block.pre_norm:
        x = x + block.attn(block.ln_1(x))  # tokens talk
        return x + block.ffn(block.ln_2(x))  # each token thinks alone
    x = block.ln_1(x + block.attn(x))
    return block.ln_2(x + block.ffn(x))


def _block_forward_always_pre(block, x):
    """Ignores the placement: pre-norm everywhere."""
    x = x + block.attn(block.ln_1(x))
    return x + block.ffn(block.ln_2(x))


def _block_forward_no_residual(block, x):
    """Drops the residual connections."""
    if block.pre_norm:
        return block.ffn(block.ln_2(block.attn(block.ln_1(x))))
    return block.ln_2(block.ffn(block.ln_1(block.attn(x))))


def greedy_decode(model, prompt, n):
    caches = model.new_caches()
    out = [prompt]
    with nima.no_grad():
        logits, _ = model(prompt, caches=caches)  # (B, T0, V): fills the caches
        for _ in range(n):
            token = logits.data[:, -1].argmax(axis=-1)[:, None]  # (B, 1)
            out.append(token)
            logits, _ = model(token, caches=caches)  # only the new token, at position T0 + i
    return np.concatenate(out, axis=1)


def _greedy_decode_no_cache(model, prompt, n):
    """Runs the model afresh each step on the last token alone: it forgets the context."""
    seq = prompt
    with nima.no_grad():
        for _ in range(n):
            logits, _ = model(seq[:, -1:])
            seq = np.concatenate([seq, logits.data[:, -1].argmax(axis=-1)[:, None]], axis=1)
    return seq


def initial_loss(V: int) -> float:
    return math.log(V)  # a uniform guess over V tokens


WRONG = {
    "block_forward": [_block_forward_always_pre, _block_forward_no_residual],
    "greedy_decode": [_greedy_decode_no_cache],
    "initial_loss": [lambda V: math.log2(V), lambda V: 1.0 / V],
}
