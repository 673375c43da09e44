"""Solutions of exercises/beam_search.py."""

import numpy as np


def beam_winners():
    # alpha 0: "a </s>" (log 0.40 = -0.92) beats "b a </s>" (log 0.324 = -1.13);
    # alpha 2: -0.92 / 2^2 = -0.23 against -1.13 / 3^2 = -0.13: the longer one wins, and no
    # three-token continuation ("a a </s>": 0.03, "b b </s>": 0.012, ...) comes close
    return {0.0: ["a", "</s>"], 2.0: ["b", "a", "</s>"]}


def best_candidates(beam_scores, logp, n):
    V = logp.shape[1]
    cand = (beam_scores[:, None] + logp).reshape(-1)  # (K V,)
    top = np.argpartition(-cand, n - 1)[:n]  # the n best, unordered
    top = top[np.argsort(-cand[top])]  # best first
    return top // V, top % V, cand[top]


def _best_candidates_per_beam(beam_scores, logp, n):
    """Takes the best tokens of each beam in turn instead of ranking all candidates together."""
    K = logp.shape[0]
    order = np.argsort(-logp, axis=1)[:, : max(1, n // K)]
    beam = np.repeat(np.arange(K), order.shape[1])
    token = order.reshape(-1)
    score = beam_scores[beam] + logp[beam, token]
    keep = np.argsort(-score)[:n]
    return beam[keep], token[keep], score[keep]


def _best_candidates_ignore_beam_score(beam_scores, logp, n):
    """Ranks by the new token's log-probability alone, forgetting each beam's past."""
    V = logp.shape[1]
    flat = logp.reshape(-1)
    top = np.argsort(-flat)[:n]
    return top // V, top % V, beam_scores[top // V] + flat[top]


WRONG = {
    "beam_winners": [lambda: {0.0: ["a", "</s>"], 2.0: ["a", "</s>"]},  # the raw-probability pick
                     lambda: {0.0: ["b", "a", "</s>"], 2.0: ["b", "a", "</s>"]}],
    "best_candidates": [_best_candidates_per_beam, _best_candidates_ignore_beam_score],
}
