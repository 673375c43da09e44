"""Solutions of exercises/generation.py."""

import numpy as np


def _softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def top_p_mask(logits, p):
    order = np.argsort(-logits, axis=-1)  # most likely first
    probs = np.take_along_axis(_softmax(logits), order, axis=-1)
    before = np.cumsum(probs, axis=-1) - probs  # mass of the tokens ranked above
    keep_sorted = before < p  # the token that crosses p still has less than p before it
    mask = np.zeros_like(keep_sorted)
    np.put_along_axis(mask, order, keep_sorted, axis=-1)
    return mask


def _top_p_strict(logits, p):
    """Keeps a token only while the mass *including* it is below p: drops the one that crosses
    it, and with a small p drops even the top token."""
    order = np.argsort(-logits, axis=-1)
    probs = np.take_along_axis(_softmax(logits), order, axis=-1)
    mask = np.zeros(logits.shape, dtype=bool)
    np.put_along_axis(mask, order, np.cumsum(probs, axis=-1) < p, axis=-1)
    return mask


def _top_p_unsorted(logits, p):
    """Accumulates the mass in vocabulary order instead of from the most likely token."""
    probs = _softmax(logits)
    return np.cumsum(probs, axis=-1) - probs < p


def repetition_penalty(context, logits, theta):
    out = logits.copy()
    for b, row in enumerate(context):
        for token in set(row.tolist()):  # once per token, however often it appeared
            z = logits[b, token]
            out[b, token] = z / theta if z > 0 else z * theta
    return out


def _repetition_penalty_divide(context, logits, theta):
    """Divides every seen logit: a negative one moves *up*."""
    out = logits.copy()
    for b, row in enumerate(context):
        for token in set(row.tolist()):
            out[b, token] = logits[b, token] / theta
    return out


def _repetition_penalty_per_occurrence(context, logits, theta):
    """Applies the penalty once per occurrence: a token seen three times is hit three times."""
    out = logits.copy()
    for b, row in enumerate(context):
        for token in row.tolist():
            z = out[b, token]
            out[b, token] = z / theta if z > 0 else z * theta
    return out


def _entropy_bits(z, T):
    p = _softmax(z / T)
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum())


def entropy_temperature_bisect(z, target):
    lo, hi = 0.05, 20.0
    while hi - lo > 1e-9:
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _entropy_bits(z, mid) < target else (lo, mid)  # H rises with T
    return (lo + hi) / 2


def _entropy_temperature_nats(z, target):
    """Measures the entropy in nats: the target is missed by a factor ln 2."""
    lo, hi = 0.05, 20.0
    while hi - lo > 1e-9:
        mid = (lo + hi) / 2
        nats = _entropy_bits(z, mid) * np.log(2)
        lo, hi = (mid, hi) if nats < target else (lo, mid)
    return (lo + hi) / 2


WRONG = {
    "top_p_mask": [_top_p_strict, _top_p_unsorted],
    "repetition_penalty": [_repetition_penalty_divide, _repetition_penalty_per_occurrence],
    "entropy_temperature_bisect": [_entropy_temperature_nats],
}
