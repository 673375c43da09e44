"""Solutions of exercises/tutorial_10.py."""

import numpy as np


def inverse_cdf(probs, u):
    cdf = np.cumsum(probs, axis=-1)
    target = u * cdf[:, -1]
    return np.minimum((cdf < target[:, None]).sum(axis=-1), probs.shape[-1] - 1)


def _inverse_cdf_strict(probs, u):
    """Looks for the first F_i strictly above u F_V: lands one token late on a boundary."""
    cdf = np.cumsum(probs, axis=-1)
    return np.minimum((cdf <= (u * cdf[:, -1])[:, None]).sum(axis=-1), probs.shape[-1] - 1)


def top_k_filter(logits, k):
    kth = -np.sort(-logits, axis=-1)[:, k - 1:k]  # (B, 1): the k-th largest
    return np.where(logits < kth, -np.inf, logits)


def _top_k_exactly_k(logits, k):
    """Keeps exactly k indices by sorting: a tie at the cut-off loses tokens."""
    out = np.full_like(logits, -np.inf)
    top = np.argsort(-logits, axis=-1, kind="stable")[:, :k]
    np.put_along_axis(out, top, np.take_along_axis(logits, top, axis=-1), axis=-1)
    return out


WRONG = {
    "inverse_cdf": [_inverse_cdf_strict],
    "top_k_filter": [_top_k_exactly_k],
}
