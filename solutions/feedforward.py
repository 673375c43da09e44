"""Solutions of exercises/feedforward.py."""

import numpy as np


def swiglu_hidden(d: int, multiple_of: int = 256) -> int:
    h = 2 * 4 * d // 3  # floor(2/3 * 4d): three matrices at the budget of two
    return multiple_of * -(-h // multiple_of)  # round up to a multiple


def _swiglu_hidden_round_down(d: int, multiple_of: int = 256) -> int:
    """Rounds down to the multiple instead of up."""
    return multiple_of * (2 * 4 * d // 3 // multiple_of)


def swiglu(x, fc_weight, fc_bias, proj_weight, proj_bias):
    u = x @ fc_weight.T + fc_bias  # (..., 2h): W x and V x from one product
    gate, value = np.split(u, 2, axis=-1)
    silu = gate / (1 + np.exp(-gate))  # u * sigmoid(u)
    return (silu * value) @ proj_weight.T + proj_bias


def _swiglu_swapped(x, fc_weight, fc_bias, proj_weight, proj_bias):
    """Gates with the second half and takes the value from the first."""
    h = fc_weight.shape[0] // 2
    w = np.concatenate([fc_weight[h:], fc_weight[:h]])
    b = np.concatenate([fc_bias[h:], fc_bias[:h]])
    return swiglu(x, w, b, proj_weight, proj_bias)


def _glu_instead(x, fc_weight, fc_bias, proj_weight, proj_bias):
    """A sigmoid gate (GLU) instead of SiLU."""
    gate, value = np.split(x @ fc_weight.T + fc_bias, 2, axis=-1)
    return (value / (1 + np.exp(-gate))) @ proj_weight.T + proj_bias


def ffn_parameters(d: int, h: int, kind: str, bias: bool) -> int:
    gated = kind in ("glu", "swiglu")
    first = d * (2 * h if gated else h) + ((2 * h if gated else h) if bias else 0)
    return first + h * d + (d if bias else 0)


WRONG = {
    "swiglu_hidden": [_swiglu_hidden_round_down, lambda d, multiple_of=256: 8 * d // 3],
    "swiglu": [_swiglu_swapped, _glu_instead],
    "ffn_parameters": [lambda d, h, kind, bias: 2 * d * h + (h + d if bias else 0)],
}
