r"""Exercises of the Feed-forward networks page (docs/feedforward.md)."""

import numpy as np

import nima
from exercises import close, equal
from nima.nn import FeedForward
from nima.nn.feedforward import swiglu_hidden as nima_swiglu_hidden


def swiglu_hidden(d: int, multiple_of: int = 256) -> int:
    r"""LLaMA's hidden size.

    Return $h = m \lceil \lfloor \tfrac23 \cdot 4d \rfloor / m \rceil$ for width $d$ and
    $m$ = `multiple_of`: the gated FFN's width at the standard FFN's budget, rounded up to a
    multiple of $m$.
    """
    raise NotImplementedError


def check_swiglu_hidden(swiglu_hidden) -> None:
    """Compares with `nima.nn.feedforward.swiglu_hidden` for LLaMA's widths and small ones."""
    for d, m in [(4096, 256), (5120, 256), (6656, 256), (8192, 256), (128, 256), (128, 32),
                 (384, 256), (100, 1)]:
        equal(int(swiglu_hidden(d, m)), nima_swiglu_hidden(d, m), f"h for d={d}, m={m}")


def swiglu(x: np.ndarray, fc_weight: np.ndarray, fc_bias: np.ndarray, proj_weight: np.ndarray,
           proj_bias: np.ndarray) -> np.ndarray:
    r"""SwiGLU's forward, from a module's weights.

    `fc_weight` `(2h, d)` stacks $W$ (its first $h$ rows) and $V$ (its last $h$), with
    `fc_bias` `(2h,)`; `proj_weight` `(d, h)` and `proj_bias` `(d,)` are $W_2$, $b_2$. Return
    $W_2(\operatorname{SiLU}(Wx) \odot Vx) + b_2$ for `x` `(..., d)`, each linear map with its
    bias, $\operatorname{SiLU}(u) = u\,\sigma(u)$.
    """
    raise NotImplementedError


def check_swiglu(swiglu) -> None:
    """Compares with `FeedForward(8, 12, kind="swiglu")` on a `(2, 3, 8)` input, given that
    module's own weights."""
    nima.manual_seed(0)
    ffn = FeedForward(8, 12, kind="swiglu").double()
    x = np.random.default_rng(0).standard_normal((2, 3, 8))
    with nima.no_grad():
        expected = ffn(nima.tensor(x))
    close(swiglu(x, ffn.fc.weight.data, ffn.fc.bias.data, ffn.proj.weight.data,
                 ffn.proj.bias.data), expected, "the output")


def ffn_parameters(d: int, h: int, kind: str, bias: bool) -> int:
    r"""Count a feed-forward network's parameters.

    Return the parameters of `FeedForward(d, h, kind=kind, bias=bias)` for `kind` one of
    `"relu"`, `"gelu"`, `"glu"`, `"swiglu"`: two matrices for the standard kinds, three for the
    gated ones, plus their biases when `bias`.
    """
    raise NotImplementedError


def check_ffn_parameters(ffn_parameters) -> None:
    """Builds `FeedForward` for every kind, with and without biases, and compares with
    `num_parameters()`."""
    for kind in ("relu", "gelu", "glu", "swiglu"):
        for bias in (True, False):
            expected = FeedForward(12, 20, kind=kind, bias=bias).num_parameters()
            equal(int(ffn_parameters(12, 20, kind, bias)), expected,
                  f"parameters of {kind}, bias={bias}")
