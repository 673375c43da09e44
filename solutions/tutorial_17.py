"""Solutions of exercises/tutorial_17.py."""

import numpy as np


def dense_sees(d, p, T):
    return p // T * T <= d <= p  # its own segment, up to itself


def memory_sees(d, p, T, capacity):
    start = p // T * T  # p's segment begins here
    oldest = max(0, start - capacity)  # the oldest entry the bank still holds
    # that entry's key was computed from its own segment up to it
    return oldest // T * T <= d <= p


def memory_read(q, mem_k, mem_v, top_k):
    scores = q @ mem_k.T / np.sqrt(q.shape[1])  # (T, M)
    if top_k is not None and top_k < mem_k.shape[0]:
        kth = -np.sort(-scores, axis=1)[:, top_k - 1:top_k]  # each query's k-th best score
        scores = np.where(scores >= kth, scores, -np.inf)
    weights = np.exp(scores - scores.max(1, keepdims=True))
    return weights / weights.sum(1, keepdims=True) @ mem_v


def _memory_read_unrenormalised(q, mem_k, mem_v, top_k):
    """Softmax over the whole bank, then keeps the top-k weights without renormalising."""
    scores = q @ mem_k.T / np.sqrt(q.shape[1])
    weights = np.exp(scores - scores.max(1, keepdims=True))
    weights /= weights.sum(1, keepdims=True)
    if top_k is not None and top_k < mem_k.shape[0]:
        kth = -np.sort(-scores, axis=1)[:, top_k - 1:top_k]
        weights = np.where(scores >= kth, weights, 0.0)
    return weights @ mem_v


def _memory_read_unscaled(q, mem_k, mem_v, top_k):
    """Forgets the 1/sqrt(d) of the scores."""
    return memory_read(q * np.sqrt(q.shape[1]), mem_k, mem_v, top_k)


WRONG = {
    "dense_sees": [
        lambda d, p, T: p - T < d <= p,  # a sliding window: the last T tokens
        lambda d, p, T: d <= p,  # the whole past
    ],
    "memory_sees": [
        # the oldest entry, but not the tokens before it in its segment
        lambda d, p, T, capacity: p // T * T - capacity <= d <= p,
        lambda d, p, T, capacity: d <= p,  # a bank that never forgets
        lambda d, p, T, capacity: dense_sees(d, p, T),  # as if the bank were not read
    ],
    "memory_read": [_memory_read_unrenormalised, _memory_read_unscaled],
}
