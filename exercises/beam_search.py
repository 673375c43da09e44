r"""Exercises of the Beam search page (docs/beam_search.md)."""

from types import SimpleNamespace

import numpy as np

import nima
from exercises import close, equal
from nima.generation import generate

VOCAB = ["<s>", "a", "b", "</s>"]
# the page's worked example: p(next | generated so far), for the contexts it names
TABLE = {(): [0.5, 0.4, 0.1], ("a",): [0.1, 0.1, 0.8], ("b",): [0.9, 0.05, 0.05],
         ("b", "a"): [0.05, 0.05, 0.9]}
OTHER = [0.2, 0.2, 0.6]  # every other context


class _History:
    """A decoding 'cache' that remembers each row's tokens, so the model sees its prefix."""

    def __init__(self) -> None:
        self.rows: np.ndarray | None = None

    @property
    def length(self) -> int:
        return 0 if self.rows is None else self.rows.shape[1]

    def reorder(self, indices: np.ndarray) -> None:
        self.rows = self.rows[indices]


class PrefixTableLM:
    """The page's example as a model `generate` can decode: logits are the log of `TABLE`'s
    probabilities for the tokens generated after `<s>`."""

    config = SimpleNamespace(block_size=16)
    training = False

    def new_caches(self) -> list:
        return [_History()]

    def forward(self, idx, caches=None):
        cache = caches[0]
        cache.rows = idx if cache.rows is None else np.concatenate([cache.rows, idx], axis=1)
        logits = np.full((*idx.shape, len(VOCAB)), -np.inf)
        for b, row in enumerate(cache.rows):
            for t in range(idx.shape[1]):
                seen = tuple(VOCAB[i] for i in row[1:cache.length - idx.shape[1] + t + 1])
                with np.errstate(divide="ignore"):
                    logits[b, t, 1:] = np.log(TABLE.get(seen, OTHER))
        return nima.Tensor(logits), None

    def eval(self):
        return self

    def train(self, mode: bool = True):
        return self


def beam_winners() -> dict[float, list[str]]:
    r"""Predict the beam-search winner at length penalty 2.

    Run the page's worked example in your head — $K = 2$ beams, at most 3 new tokens, every
    context the table does not list giving $a$ 0.2, $b$ 0.2, $\langle/s\rangle$ 0.6 — and
    return the best sequence at `length_penalty` 0 and at 2, as `{0.0: [...], 2.0: [...]}`,
    each a list of token names ending with `"</s>"`.
    """
    raise NotImplementedError


def check_beam_winners(beam_winners) -> None:
    """Runs `nima.generate(..., num_beams=2, length_penalty=alpha)` on the example as a model
    and compares the best sequence for α = 0 and α = 2."""
    got = beam_winners()
    for alpha in (0.0, 2.0):
        out = generate(PrefixTableLM(), np.array([[0]]), 3, num_beams=2, length_penalty=alpha,
                       eos_token_id=3)
        expected = [VOCAB[i] for i in out.generated(0)]
        equal(list(got[alpha]), expected, f"the winner at length_penalty {alpha}")


def best_candidates(beam_scores: np.ndarray, logp: np.ndarray,
                    n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""Expand and rank, one step.

    `beam_scores` `(K,)` holds each beam's summed log-probability, `logp` `(K, V)` each beam's
    next-token log-probabilities. Every beam proposes every token, scored $s_b + \log p(i)$.
    Return the `n` best candidates, best first, as `(from_beam, token, score)` arrays of shape
    `(n,)` — without a Python loop over the $K \cdot V$ candidates (`argpartition` and
    `argsort` do it).
    """
    raise NotImplementedError


def check_best_candidates(best_candidates) -> None:
    """Compares with a plain loop that scores all K·V candidates and sorts them, for several
    K, V and n (no ties), and a first step where only beam 0 may propose."""
    rng = np.random.default_rng(0)
    for K, V, n in [(2, 5, 4), (4, 50, 8), (3, 7, 21), (2, 6, 4)]:
        scores = rng.standard_normal(K) - 3
        if V == 6:
            scores[1:] = -np.inf  # the first step: all beams are the same prompt
        logp = np.log(rng.dirichlet(np.ones(V), K))
        everything = sorted(((scores[b] + logp[b, i], b, i) for b in range(K) for i in range(V)),
                            reverse=True)[:n]
        beam, token, score = (np.asarray(a) for a in best_candidates(scores, logp, n))
        close(score, np.array([s for s, _, _ in everything]), f"the scores (K={K}, V={V})")
        close(beam, np.array([b for _, b, _ in everything]), f"the beams (K={K}, V={V})")
        close(token, np.array([i for _, _, i in everything]), f"the tokens (K={K}, V={V})")
