"""Solutions of exercises/tutorial_11.py."""

import numpy as np

import nima


def _log_softmax(z):
    m = z.max(axis=-1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(axis=-1, keepdims=True))


def sequence_logprob(model, prompt, tokens):
    seq = np.array([prompt + list(tokens)])
    with nima.no_grad():
        logits, _ = model(seq)
    logp = _log_softmax(logits.data[0].astype(np.float64))  # (n, V)
    n0 = len(prompt)
    # token at position n0 + t is predicted by the logits at position n0 + t - 1
    return float(sum(logp[n0 + t - 1, tok] for t, tok in enumerate(tokens)))


def _sequence_logprob_unshifted(model, prompt, tokens):
    """Reads each token's probability at its own position instead of the one before."""
    seq = np.array([prompt + list(tokens)])
    with nima.no_grad():
        logits, _ = model(seq)
    logp = _log_softmax(logits.data[0].astype(np.float64))
    n0 = len(prompt)
    return float(sum(logp[n0 + t, tok] for t, tok in enumerate(tokens)))


WRONG = {"sequence_logprob": [_sequence_logprob_unshifted]}
