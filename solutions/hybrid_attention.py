"""Solutions of exercises/hybrid_attention.py."""

import numpy as np


def reweight_weights(x, weight, bias, n_head, block_size):
    B, T, _ = x.shape
    logits = (x @ weight.T + bias).reshape(B, T, n_head, block_size)  # head-major columns
    logits = logits.transpose(0, 2, 1, 3)[..., :T]  # (B, nh, T, T): key positions 0..T-1
    logits = np.where(np.tril(np.ones((T, T), dtype=bool)), logits, -np.inf)  # no future
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _reweight_no_mask(x, weight, bias, n_head, block_size):
    """Forgets the causal mask: tokens read their future."""
    B, T, _ = x.shape
    logits = (x @ weight.T + bias).reshape(B, T, n_head, block_size).transpose(0, 2, 1, 3)
    e = np.exp(logits[..., :T] - logits[..., :T].max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _reweight_position_major(x, weight, bias, n_head, block_size):
    """Views the columns as (block_size, n_head): every head gets the wrong logits."""
    B, T, _ = x.shape
    logits = (x @ weight.T + bias).reshape(B, T, block_size, n_head).transpose(0, 3, 1, 2)
    logits = np.where(np.tril(np.ones((T, T), dtype=bool)), logits[..., :T], -np.inf)
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def alpha_logit_grad(alpha, a_rw, a_c, grad):
    # dA/dalpha = A_rw - A_c, and dalpha/da = alpha (1 - alpha)
    return alpha * (1 - alpha) * (grad * (a_rw - a_c)).sum(axis=(0, 2, 3))


def reweight_parameters(d: int, n_head: int, block_size: int, bias: bool) -> int:
    return d * n_head * block_size + (n_head * block_size if bias else 0)


WRONG = {
    "reweight_weights": [_reweight_no_mask, _reweight_position_major],
    "alpha_logit_grad": [lambda alpha, a_rw, a_c, grad:
                         (grad * (a_rw - a_c)).sum(axis=(0, 2, 3))],  # the gradient of alpha
    "reweight_parameters": [lambda d, n_head, block_size, bias: d * block_size,
                            lambda d, n_head, block_size, bias: d * n_head * block_size],
}
