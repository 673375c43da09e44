r"""Exercises of the Data for structure and memory page (docs/structure_data.md)."""

import numpy as np

from exercises import close, equal
from nima.data.brackets import bracket_spans as nima_bracket_spans
from nima.data.brackets import generate_brackets
from nima.data.sampler import LossGuidedSampler


def bracket_spans(text: str) -> np.ndarray:
    r"""How far back each closing bracket's partner is.

    The brackets are `()[]{}<>`. Return an int array with one entry per character of `text`:
    for a closing bracket, the distance back to the opener it matches; 0 for any other
    character; -1 for a closer whose opener is not in `text`. A newline closes every bracket
    still open. (`"(()))"` gives `[0, 0, 1, 3, -1]`.)
    """
    raise NotImplementedError


def check_bracket_spans(bracket_spans) -> None:
    """Compares with `nima.data.brackets.bracket_spans` on generated lines, on a window cut
    inside a line and on hand-made strings."""
    lines = generate_brackets(n_lines=3, length=64, seed=0)
    for text in ["(()))", "([)]", "<{}>\n)(", "((\n))", lines, lines[10:90]]:
        close(np.asarray(bracket_spans(text)), nima_bracket_spans(text),
              f"the spans of {text[:20]!r}...")


def window_probabilities(losses: np.ndarray, seen: np.ndarray, alpha: float,
                         eps: float) -> np.ndarray:
    r"""The loss-guided sampler's distribution.

    `losses` `(W,)` holds each window's recent loss, meaningful only where `seen` `(W,)` is
    True. Return $P(i) \propto (p_i + \epsilon)^\alpha$, where an unseen window counts with the
    highest loss seen so far (1.0 if none has been seen).
    """
    raise NotImplementedError


def check_window_probabilities(window_probabilities) -> None:
    """Records losses in a `LossGuidedSampler` and compares with its `probabilities()`, with
    unseen windows, for α = 0, 1 and 2 (and before any loss is known)."""
    rng = np.random.default_rng(0)
    for alpha, known in [(1.0, 5), (2.0, 8), (0.0, 3), (1.0, 0)]:
        sampler = LossGuidedSampler(100, 10, alpha=alpha, eps=0.05)
        if known:
            indices = rng.choice(len(sampler), known, replace=False)
            sampler.update(indices, rng.uniform(0.5, 4, known))
        got = window_probabilities(sampler.priorities.copy(), sampler.seen.copy(), alpha, 0.05)
        close(got, sampler.probabilities(), f"the probabilities at alpha={alpha}, {known} seen")
        equal(bool(np.isclose(np.sum(got), 1.0)), True, "probabilities summing to 1")
