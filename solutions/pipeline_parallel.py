"""Solutions of exercises/pipeline_parallel.py."""

import math


def gpipe_schedule(P, m):
    slots = 2 * (m + P - 1)
    grid = [["."] * slots for _ in range(P)]
    for s in range(P):
        for i in range(m):
            grid[s][s + i] = f"F{i}"  # one slot after the stage before
            # the last stage starts backward at m + P - 1; stage s waits P - 1 - s hops
            grid[s][m + P - 1 + (P - 1 - s) + (m - 1 - i)] = f"B{i}"
    return grid


def _gpipe_backward_in_order(P, m):
    """Runs the backwards oldest first: fine for gradients, but not the diagram's schedule."""
    grid = gpipe_schedule(P, m)
    for row in grid:
        backs = [t for t, op in enumerate(row) if op.startswith("B")]
        for t, i in zip(backs, range(m), strict=True):
            row[t] = f"B{i}"
    return grid


def _gpipe_all_at_once(P, m):
    """Starts every stage at time 0, before its input has arrived."""
    slots = 2 * (m + P - 1)
    grid = [["."] * slots for _ in range(P)]
    for s in range(P):
        for i in range(m):
            grid[s][i] = f"F{i}"
            grid[s][m + (m - 1 - i)] = f"B{i}"
    return grid


def micro_batches_for(P, max_bubble):
    # (P - 1) / (m + P - 1) <= b  <=>  m >= (P - 1)(1 - b) / b
    m = math.ceil((P - 1) * (1 - max_bubble) / max_bubble - 1e-9)
    return max(m, 1)


WRONG = {
    "gpipe_schedule": [_gpipe_backward_in_order, _gpipe_all_at_once],
    "micro_batches_for": [lambda P, max_bubble: math.ceil((P - 1) / max_bubble)],
}
