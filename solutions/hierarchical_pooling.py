"""Solutions of exercises/hierarchical_pooling.py."""

import numpy as np


def mean_pyramid(x, b, L):
    pyramid, level = [], x
    for _ in range(L):
        B, N, C = level.shape
        n = N // b  # completed chunks only
        level = level[:, :n * b].reshape(B, n, b, C).mean(axis=2)
        pyramid.append(level)
    return pyramid


def _mean_pyramid_from_tokens_each_level(x, b, L):
    """Pools b tokens at every level instead of b children: level 2 covers b, not b^2."""
    B, T, C = x.shape
    return [x[:, :T // b * b].reshape(B, T // b, b, C).mean(axis=2) for _ in range(L)]


def upsample(summaries, span, length):
    B, _, C = summaries.shape
    repeated = np.repeat(summaries, span, axis=1)  # (B, n span, C)
    shifted = np.concatenate([np.zeros((B, span, C)), repeated], axis=1)  # one chunk later
    return shifted[:, :length]


def _upsample_without_shift(summaries, span, length):
    """Gives each token the summary of its own chunk: it reads its own future."""
    repeated = np.repeat(summaries, span, axis=1)
    B, _, C = summaries.shape
    pad = np.zeros((B, max(0, length - repeated.shape[1]), C))
    return np.concatenate([repeated, pad], axis=1)[:, :length]


WRONG = {
    "mean_pyramid": [_mean_pyramid_from_tokens_each_level],
    "upsample": [_upsample_without_shift],
}
