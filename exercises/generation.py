r"""Exercises of the Decoding page (docs/generation.md)."""

import numpy as np

from exercises import close
from nima.generation import RepetitionPenalty, TopP
from nima.generation.entropy import entropy_temperature


def top_p_mask(logits: np.ndarray, p: float) -> np.ndarray:
    r"""Derive the top-p mask.

    For logits `(B, V)`, return a bool array `(B, V)`, True for the tokens nucleus sampling
    keeps: sort each row's probabilities from most to least likely and keep token $(i)$ while
    the mass *before* it is still below $p$ — so the token that crosses $p$ is kept, and the
    most likely token always is. (Assume no ties.)
    """
    raise NotImplementedError


def check_top_p_mask(top_p_mask) -> None:
    """Compares with the tokens `nima.generation.TopP` leaves finite, for p from 0.05 to 1,
    on random rows and on a row worked by hand (probabilities 0.5, 0.3, 0.15, 0.05 shuffled)."""
    rng = np.random.default_rng(0)
    hand = np.log(np.array([[0.15, 0.5, 0.05, 0.3]]))
    rows = [hand, rng.standard_normal((4, 9)) * 2]
    for logits in rows:
        for p in (0.05, 0.5, 0.8, 0.85, 0.95, 1.0):
            expected = np.isfinite(TopP(p)(np.zeros((len(logits), 1), dtype=np.int64), logits))
            close(np.asarray(top_p_mask(logits.copy(), p), dtype=bool), expected,
                  f"the mask at p = {p} of rows of {logits.shape[1]}")


def repetition_penalty(context: np.ndarray, logits: np.ndarray, theta: float) -> np.ndarray:
    r"""CTRL's repetition penalty.

    `context` `(B, T)` holds the token ids so far, `logits` `(B, V)` the next-token logits.
    Return new logits where every token that appears in its row's context is made less likely
    by $\theta > 1$: a positive logit divided by $\theta$, a negative (or zero) one multiplied
    by it — once, however often the token appeared. Leave `logits` itself unchanged.
    """
    raise NotImplementedError


def check_repetition_penalty(repetition_penalty) -> None:
    """Compares with `nima.generation.RepetitionPenalty` on contexts with repeated tokens and
    logits of both signs."""
    rng = np.random.default_rng(1)
    context = np.array([[1, 1, 4, 2], [0, 3, 3, 3]])
    logits = rng.standard_normal((2, 6)) * 3
    before = logits.copy()
    for theta in (1.2, 2.0):
        expected = RepetitionPenalty(theta)(context, logits.copy())
        close(repetition_penalty(context, logits, theta), expected, f"the logits at {theta}")
        close(logits, before, "the logits passed in, after the call")


def entropy_temperature_bisect(z: np.ndarray, target: float) -> float:
    r"""The temperature that hits a target entropy.

    For one row of logits `z` `(V,)`, return the temperature $T \in [0.05, 20]$ at which
    $H(\operatorname{softmax}(z/T)) = $ `target`, with $H = -\sum_i p_i \log_2 p_i$ in **bits**.
    $H$ rises with $T$, so bisection on $T$ works; stop when the bracket is below $10^{-9}$.
    """
    raise NotImplementedError


def check_entropy_temperature_bisect(entropy_temperature_bisect) -> None:
    """Compares with `nima.generation.entropy.entropy_temperature` (safeguarded Newton) for
    targets from 0.5 to 4 bits on rows of 8 to 50 logits, to 1e-3 relative."""
    rng = np.random.default_rng(2)
    for V, target in [(8, 0.5), (8, 2.0), (50, 1.0), (50, 4.0), (20, 3.0)]:
        z = rng.standard_normal(V) * 3
        expected = entropy_temperature(z[None], target, 0.05, 20.0, tol=1e-10)[0]
        close(entropy_temperature_bisect(z.copy(), target), expected,
              f"the temperature for {target} bits over {V} logits", rtol=1e-3)
