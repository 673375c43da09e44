r"""`FeedForward`: the position-wise MLP of a transformer block, in four flavours.

Every token's vector goes through the same two-layer network, independently of the others:
widen from $d$ to $h$, apply a nonlinearity, project back to $d$. The flavours differ in the
nonlinearity:

| `kind` | equation | parameters (with bias) | default $h$ |
|---|---|---|---|
| `"relu"` | $W_2 \max(0, W_1 x + b_1) + b_2$ | $2dh + h + d$ | $4d$ |
| `"gelu"` | $W_2 \operatorname{GELU}(W_1 x + b_1) + b_2$ | $2dh + h + d$ | $4d$ |
| `"glu"` | $W_2 (\sigma(W x) \odot V x)$ | $3dh + 2h + d$ | `swiglu_hidden(d)` |
| `"swiglu"` | $W_2 (\operatorname{SiLU}(W x) \odot V x)$ | $3dh + 2h + d$ | `swiglu_hidden(d)` |

The gated kinds hold $W$ and $V$ stacked in one `fc` layer, $W$ (the gate) in the first $h$
rows of `fc.weight` and $V$ (the value) in the last $h$ — LLaMA's `w1` and `w3`.
"""

from __future__ import annotations

import math

from nima import functional as F
from nima._tensor import Tensor
from nima.nn.dropout import Dropout
from nima.nn.linear import Linear
from nima.nn.module import Module

KINDS = ("relu", "gelu", "glu", "swiglu")


# --8<-- [start:swiglu_hidden]
def swiglu_hidden(d_model: int, multiple_of: int = 256) -> int:
    r"""LLaMA's hidden size for a gated FFN: $h = \lceil \tfrac23 \cdot 4d / m \rceil \cdot m$.

    A gated FFN has three $d \times h$ matrices instead of two, so $h = \tfrac23 \cdot 4d$ gives
    it the parameter count of a $4d$ FFN ($3 d h = 2 d \cdot 4d$); rounding up to a multiple
    of $m$ keeps the matrix shapes friendly to the hardware. LLaMA truncates
    $\tfrac23 \cdot 4d$ to an integer before rounding up, and so does this function.

    Example: `swiglu_hidden(4096)` is 11008 (LLaMA-7B): $\lfloor 8 \cdot 4096 / 3 \rfloor =
    10922$, rounded up to a multiple of 256.
    """
    if d_model < 1 or multiple_of < 1:
        raise ValueError(f"swiglu_hidden: d_model and multiple_of must be positive, "
                         f"got d_model={d_model}, multiple_of={multiple_of}")
    hidden = int(2 * 4 * d_model / 3)
    return multiple_of * math.ceil(hidden / multiple_of)
# --8<-- [end:swiglu_hidden]


class FeedForward(Module):
    r"""Position-wise feed-forward network `(..., d_model) -> (..., d_model)`.

    Args:
        d_model: the model width $d$.
        hidden: the inner width $h$; default $4d$ for `"relu"`/`"gelu"` and
            `swiglu_hidden(d_model)` for `"glu"`/`"swiglu"` (the same parameter budget).
        kind: `"relu"`, `"gelu"`, `"glu"` or `"swiglu"`.
        bias: biases in both layers (GPT-2 has them, LLaMA does not).
        dropout: dropout probability on the output (the residual branch), as in GPT-2.
        approximate: the GELU flavour for `kind="gelu"`: `"tanh"` (default, GPT-2's
            $\tfrac12 x(1 + \tanh(\sqrt{2/\pi}(x + 0.044715x^3)))$) or `"none"` (exact
            $x\,\Phi(x)$, PyTorch's `nn.GELU()` default). Ignored by the other kinds.

    Layers: `fc` = `Linear(d, h)` (or `Linear(d, 2h)` for the gated kinds: gate, then value)
    and `proj` = `Linear(h, d)`, named after GPT-2's `c_fc` and `c_proj`.
    """

    def __init__(self, d_model: int, hidden: int | None = None, *, kind: str = "gelu",
                 bias: bool = True, dropout: float = 0.0, approximate: str = "tanh") -> None:
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"FeedForward: kind must be one of {', '.join(map(repr, KINDS))}, "
                             f"got {kind!r}")
        if approximate not in ("none", "tanh"):
            raise ValueError(f"FeedForward: approximate must be 'none' or 'tanh', "
                             f"got {approximate!r}")
        gated = kind in ("glu", "swiglu")
        if hidden is None:
            hidden = swiglu_hidden(d_model) if gated else 4 * d_model
        self.d_model, self.hidden, self.kind, self.approximate = d_model, hidden, kind, approximate
        self.fc = Linear(d_model, 2 * hidden if gated else hidden, bias=bias)
        self.proj = Linear(hidden, d_model, bias=bias)
        self.dropout = Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1:] != (self.d_model,):
            raise ValueError(f"FeedForward: expected input (..., {self.d_model}), got {x.shape}")
        if self.kind in ("relu", "gelu"):
            # --8<-- [start:ffn]
            # $u = W_1 x + b_1$, then $\phi(u)$ elementwise
            u = self.fc(x)  # (..., h)
            a = F.relu(u) if self.kind == "relu" else F.gelu(u, self.approximate)  # (..., h)
            # --8<-- [end:ffn]
        else:
            # --8<-- [start:gated]
            # gate $W x$ and value $V x$ from one matmul, split down the middle
            gate, value = self.fc(x).chunk(2, dim=-1)  # (..., h) each
            # GLU: $\sigma(W x) \odot V x$; SwiGLU: $\operatorname{SiLU}(W x) \odot V x$
            act = F.sigmoid(gate) if self.kind == "glu" else F.silu(gate)  # (..., h)
            a = act * value  # (..., h)
            # --8<-- [end:gated]
        # --8<-- [start:out]
        # back to the model width, $W_2 a + b_2$, then dropout on the residual branch
        return self.dropout(self.proj(a))  # (..., d)
        # --8<-- [end:out]

    def extra_repr(self) -> str:
        gelu = f", approximate={self.approximate!r}" if self.kind == "gelu" else ""
        return f"d_model={self.d_model}, hidden={self.hidden}, kind={self.kind!r}{gelu}"
