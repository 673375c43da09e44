"""Solutions of exercises/attention.py."""

import numpy as np


def _softmax(s: np.ndarray) -> np.ndarray:
    e = np.exp(s - s.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, causal: bool) -> np.ndarray:
    s = q @ np.swapaxes(k, -1, -2) / np.sqrt(q.shape[-1])  # (..., Tq, Tk)
    if causal:
        tq, tk = s.shape[-2:]
        visible = np.tril(np.ones((tq, tk), dtype=bool), k=tk - tq)  # diagonal aligned to the end
        s = np.where(visible, s, -np.inf)
    return _softmax(s) @ v


def _attention_mask_from_start(q, k, v, causal):
    """Aligns the causal diagonal to the first key: wrong as soon as keys are cached."""
    s = q @ np.swapaxes(k, -1, -2) / np.sqrt(q.shape[-1])
    if causal:
        s = np.where(np.tril(np.ones(s.shape[-2:], dtype=bool)), s, -np.inf)
    return _softmax(s) @ v


def _attention_unscaled(q, k, v, causal):
    """Forgets the 1 / sqrt(d)."""
    return attention(q * np.sqrt(q.shape[-1]), k, v, causal)


def attention_backward(q, k, v, grad):
    scale = 1 / np.sqrt(q.shape[-1])
    p = _softmax(q @ k.T * scale)  # (T, T)
    dv = p.T @ grad  # Y = P V
    dp = grad @ v.T
    ds = p * (dp - (dp * p).sum(axis=-1, keepdims=True))  # the softmax backward, row by row
    return ds @ k * scale, ds.T @ q * scale, dv


def _attention_backward_no_softmax(q, k, v, grad):
    """Sends the gradient of P straight to S, as if the softmax were the identity."""
    scale = 1 / np.sqrt(q.shape[-1])
    p = _softmax(q @ k.T * scale)
    dp = grad @ v.T
    return dp @ k * scale, dp.T @ q * scale, p.T @ grad


def _attention_backward_unscaled(q, k, v, grad):
    """Forgets the scale in the gradients of Q and K."""
    dq, dk, dv = attention_backward(q, k, v, grad)
    return dq * np.sqrt(q.shape[-1]), dk * np.sqrt(q.shape[-1]), dv


def gpt2_attention_weight_bytes() -> int:
    return 1 * 12 * 1024 * 1024 * 4  # (B, heads, queries, keys), 4 bytes each: 48 MiB


WRONG = {
    "attention": [_attention_mask_from_start, _attention_unscaled],
    "attention_backward": [_attention_backward_no_softmax, _attention_backward_unscaled],
    "gpt2_attention_weight_bytes": [lambda: 1024 * 1024 * 4,  # one head only
                                    lambda: 12 * 1024 * 64 * 4],  # the values' size
}
