"""Solutions of exercises/tutorial_04.py."""

import numpy as np


def causal_mask(t_q, t_k):
    i = np.arange(t_q)[:, None]
    j = np.arange(t_k)[None, :]
    return j <= t_k - t_q + i


def split_heads(x, n_head):
    B, T, C = x.shape
    return x.reshape(B, T, n_head, C // n_head).transpose(0, 2, 1, 3)


WRONG = {
    "causal_mask": [lambda t_q, t_k: np.tri(t_q, t_k, dtype=bool)],  # aligned to the start
    "split_heads": [lambda x, n_head: x.reshape(x.shape[0], n_head, x.shape[1], -1),  # no swap
                    lambda x, n_head: x.reshape(x.shape[0], x.shape[1], -1, n_head)
                    .transpose(0, 3, 1, 2)],  # strided channels
}
