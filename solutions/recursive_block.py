"""Solutions of exercises/recursive_block.py."""

import numpy as np


def act_weights(p, threshold):
    R, T = p.shape
    weights, ponder = np.zeros((R, T)), np.zeros(T)
    for t in range(T):
        total = 0.0
        for r in range(R):
            if total + p[r, t] > threshold or r == R - 1:  # halts at step r + 1
                weights[r, t] = 1 - total  # the remainder
                ponder[t] = (r + 1) + (1 - total)
                break
            weights[r, t] = p[r, t]
            total += p[r, t]
    return weights, ponder


def _act_weights_full_p_at_halt(p, threshold):
    """Gives the halting step its own p instead of the remainder: weights no longer sum to 1."""
    weights, ponder = act_weights(p, threshold)
    halted = np.argmax(np.cumsum(weights, axis=0) >= 1 - 1e-12, axis=0)
    weights[halted, np.arange(p.shape[1])] = p[halted, np.arange(p.shape[1])]
    return weights, ponder


def _act_ponder_steps_only(p, threshold):
    """Counts the steps and forgets the remainder, whose gradient is the point."""
    weights, ponder = act_weights(p, threshold)
    return weights, np.floor(ponder - 1e-12)


def depth_at(start, end, steps, step):
    return min(end, start + step * (end - start + 1) // steps)


WRONG = {
    "act_weights": [_act_weights_full_p_at_halt, _act_ponder_steps_only],
    "depth_at": [lambda start, end, steps, step: min(end, start + step * (end - start) // steps)],
}
