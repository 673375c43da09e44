"""Solutions of exercises/memory_bank.py."""

import numpy as np


def ring_slots(count, n, capacity):
    kept = min(n, capacity)
    first = count + n - kept  # the number of the first surviving new entry
    return (first + np.arange(kept)) % capacity


def _ring_slots_from_zero(count, n, capacity):
    """Starts every write at slot 0, overwriting the newest entries."""
    return np.arange(min(n, capacity))


def _ring_slots_first_kept(count, n, capacity):
    """Keeps the first capacity entries of a long write instead of the last."""
    return (count + np.arange(min(n, capacity))) % capacity


def info_nce(q, k, negatives, tau):
    def unit(x):
        return x / np.sqrt((x * x).sum(-1, keepdims=True) + 1e-12)

    q, k = unit(q), unit(k)
    logits = q @ k.T / tau  # (N, N): the positives on the diagonal
    if len(negatives):
        logits = np.concatenate([logits, q @ unit(negatives).T / tau], axis=1)
    m = logits.max(axis=1, keepdims=True)
    lse = (m + np.log(np.exp(logits - m).sum(axis=1, keepdims=True)))[:, 0]
    return float((lse - np.diag(q @ k.T) / tau).mean())


def _info_nce_unnormalised(q, k, negatives, tau):
    """Skips the normalisation: dot products instead of cosines."""
    logits = q @ k.T / tau
    if len(negatives):
        logits = np.concatenate([logits, q @ negatives.T / tau], axis=1)
    lse = np.log(np.exp(logits).sum(axis=1))
    return float((lse - np.diag(logits)).mean())


def _info_nce_no_negatives(q, k, negatives, tau):
    """Ignores the bank's negatives."""
    return info_nce(q, k, negatives[:0], tau)


WRONG = {
    "ring_slots": [_ring_slots_from_zero, _ring_slots_first_kept],
    "info_nce": [_info_nce_unnormalised, _info_nce_no_negatives],
}
