r"""Exercises of the Recursion and adaptive depth page (docs/recursive_block.md)."""

import numpy as np

from exercises import close, equal
from nima.nn import ProgressiveDepth


def act_weights(p: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    r"""Graves's halting rule.

    `p` is `(R, T)`: the halting probability $p^r_t$ of each position $t$ before each of the
    $R$ steps. Position $t$ halts at the first step $N_t$ where $\sum_{r \le N_t} p^r_t$
    exceeds `threshold` ($1 - \epsilon$), or at the last step. Return `(weights, ponder)`:
    `weights` `(R, T)` holds $p^r_t$ for $r < N_t$, the remainder $R_t = 1 - \sum_{r<N_t}
    p^r_t$ at $r = N_t$ and 0 after; `ponder` `(T,)` is $N_t + R_t$ (steps counted from 1).
    """
    raise NotImplementedError


def check_act_weights(act_weights) -> None:
    """Compares with cases worked by hand (each column one position): halting at once
    ($p = 1$), never ($p = 0$), in the middle, and at the last step with mass left over."""
    p = np.array([[1.0, 0.0, 0.3, 0.1],
                  [0.5, 0.0, 0.5, 0.1],
                  [0.5, 0.0, 0.4, 0.1]])
    weights, ponder = act_weights(p, 0.99)
    close(weights, np.array([[1.0, 0.0, 0.3, 0.1],
                             [0.0, 0.0, 0.5, 0.1],
                             [0.0, 1.0, 0.2, 0.8]]), "the weights", atol=1e-12)
    close(ponder, np.array([2.0, 4.0, 3.2, 3.8]), "the ponder cost", atol=1e-12)


def depth_at(start: int, end: int, steps: int, step: int) -> int:
    r"""Progressive depth.

    The depth grows from `start` to `end` in equal stages over the first `steps` training steps:
    `end - start + 1` stages, each `steps / (end - start + 1)` long. Return the depth at
    training step `step` (0-based); after `steps` it stays at `end`.
    """
    raise NotImplementedError


def check_depth_at(depth_at) -> None:
    """Compares with `ProgressiveDepth(start, end, steps)(step)` at every step of three
    schedules, and beyond their end."""
    for start, end, steps in [(1, 4, 1000), (2, 3, 7), (1, 1, 10)]:
        schedule = ProgressiveDepth(start, end, steps)
        for step in range(0, steps + 20):
            equal(int(depth_at(start, end, steps, step)), schedule(step),
                  f"the depth at step {step} of ({start}, {end}, {steps})")
