r"""Exercises of the Echo layer page (docs/echo_layer.md)."""

import numpy as np

import nima
from exercises import close, equal
from nima.nn import EchoLayer


def gated_update(s: np.ndarray, u: np.ndarray, gate_weight: np.ndarray,
                 gate_bias: np.ndarray) -> np.ndarray:
    r"""The gated state update.

    `s` `(B, S, d)` is the old state, `u` `(B, S, d)` what the slots read from the segment;
    `gate_weight` `(d, 2d)` and `gate_bias` `(d,)` are the gate `Linear(2d, d)`. Return
    $s' = g \odot s + (1 - g) \odot u$ with $g = \sigma(W_g [s; u] + b_g)$, the old state and
    the update concatenated along the channels.
    """
    raise NotImplementedError


def check_gated_update(gated_update) -> None:
    """Computes $u$ with the layer's own `write` attention and compares with
    `EchoLayer.update(s, h)`."""
    nima.manual_seed(0)
    layer = EchoLayer(6, 2, segment_size=4, slots=3).double()
    rng = np.random.default_rng(0)
    s, h = nima.tensor(rng.standard_normal((2, 3, 6))), nima.tensor(rng.standard_normal((2, 4, 6)))
    with nima.no_grad():
        u = layer.write(s, h)
        expected = layer.update(s, h)
    close(gated_update(s.data, u.data, layer.gate.weight.data, layer.gate.bias.data), expected,
          "the new state")


def connected(n_segments: int, tbptt: int) -> set[tuple[int, int]]:
    r"""Which segments does a gradient reach?

    Segments $1 \dots n$ stream through one layer; the carried state is detached after every
    segment whose number is a multiple of `tbptt`. Return the pairs $(i, j)$ — output segment
    $i$, input segment $j$ — such that segment $i$'s output has a nonzero gradient with respect
    to segment $j$'s tokens.
    """
    raise NotImplementedError


def check_connected(connected) -> None:
    """Streams 5 segments through an `EchoLayer` for tbptt = 1, 2 and 3, back-propagates each
    segment's output alone, and records which segments' inputs receive a gradient."""
    for k in (1, 2, 3):
        nima.manual_seed(1)
        layer = EchoLayer(4, 1, segment_size=2, slots=2, tbptt=k).double()
        xs = [nima.tensor(np.random.default_rng(j).standard_normal((1, 2, 4)),
                          requires_grad=True) for j in range(5)]
        ys = [layer(x) for x in xs]
        expected = set()
        for i, y in enumerate(ys):
            for x in xs:
                x.grad = None
            y.sum().backward(retain_graph=True)
            expected |= {(i + 1, j + 1) for j, x in enumerate(xs)
                         if x.grad is not None and np.abs(x.grad).max() > 0}
        equal(set(connected(5, k)), expected, f"the connected pairs for tbptt={k}")
