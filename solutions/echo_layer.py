"""Solutions of exercises/echo_layer.py."""

import numpy as np


def gated_update(s, u, gate_weight, gate_bias):
    z = np.concatenate([s, u], axis=-1) @ gate_weight.T + gate_bias  # (B, S, d)
    g = 1 / (1 + np.exp(-z))  # keep (1) or overwrite (0), per slot and channel
    return g * s + (1 - g) * u


def _gated_update_swapped(s, u, gate_weight, gate_bias):
    """Keeps the update where the gate says keep the old state."""
    g = 1 / (1 + np.exp(-(np.concatenate([s, u], axis=-1) @ gate_weight.T + gate_bias)))
    return g * u + (1 - g) * s


def connected(n_segments, tbptt):
    # i reads the state of i - 1 unless i - 1 was detached; a chain back to j needs no
    # detachment in segments j .. i - 1; and every output depends on its own tokens
    return {(i, j) for i in range(1, n_segments + 1) for j in range(1, i + 1)
            if all(m % tbptt for m in range(j, i))}


def _connected_own_segment_only(n_segments, tbptt):
    """Forgets that the state carries the graph within a window."""
    return {(i, i) for i in range(1, n_segments + 1)}


def _connected_windows_from_zero(n_segments, tbptt):
    """Counts segments from 0, so the windows are shifted by one."""
    return {(i, j) for i in range(1, n_segments + 1) for j in range(1, i + 1)
            if all((m - 1) % tbptt for m in range(j, i)) or i == j}


WRONG = {
    "gated_update": [_gated_update_swapped],
    "connected": [_connected_own_segment_only, _connected_windows_from_zero],
}
