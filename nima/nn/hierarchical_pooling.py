r"""Hierarchical pooling: a sequence summarised in chunks of $b$, then chunks of chunks, causally.

Level $l$ cuts the positions into chunks of $b^l$ tokens, $[jb^l, (j+1)b^l)$, and gives each
chunk one summary vector. Summaries are built bottom-up: a level-$l$ summary pools the $b$
level-$(l-1)$ summaries inside its chunk (level 0 is the tokens themselves),

$$S_l[j] = \operatorname{pool}_l\bigl(S_{l-1}[jb], \dots, S_{l-1}[jb + b - 1]\bigr),
\qquad S_0 = X,$$

so $L$ levels form a pyramid of $T/b + T/b^2 + \dots + T/b^L < T/(b-1)$ vectors. Two pools:

- **mean**: $\operatorname{pool}(c_1..c_b) = \frac1b \sum_i c_i$, so $S_l[j]$ is the mean of
  the chunk's $b^l$ tokens;
- **attention**: a learned query $w_l$ per level scores the children,
  $\alpha = \operatorname{softmax}_i(\langle w_l, c_i\rangle / \sqrt{d})$, and
  $\operatorname{pool}(c_1..c_b) = \sum_i \alpha_i c_i$. With $w_l = 0$ (the initial value) it
  is the mean.

Only *completed* chunks have summaries: a sequence of $T$ tokens has $\lfloor T/b^l \rfloor$ at
level $l$. **Causality.** $S_l[j]$ depends on the tokens of its chunk, so the position that may
read it must lie after the whole chunk: `upsample` gives position $t$ the summary of the last
level-$l$ chunk that ended before $t$'s own chunk began, $S_l[\lfloor t/b^l\rfloor - 1]$ (zero
for $t < b^l$). A token never sees the summary of the chunk it sits in — the shift by one chunk
of the Hourglass transformer (Nawrot et al., 2021); the Funnel Transformer (Dai et al., 2020)
pools the same way without the causal shift.
"""

from __future__ import annotations

import math

import numpy as np

from nima._tensor import Tensor
from nima.nn.module import Module
from nima.nn.parameter import Parameter
from nima.ops.nn import softmax
from nima.ops.shape import cat

POOLS = ("mean", "attention")


class HierarchicalPooling(Module):
    r"""The pyramid of causal chunk summaries of a sequence: `(B, T, C) -> [S_1, ..., S_L]`.

    Args:
        d_model: the width $C$ of the vectors pooled.
        chunk_size: $b \ge 2$, the children per summary.
        levels: $L \ge 1$, how many levels above the tokens.
        mode: `"mean"` or `"attention"` (learned query `query[l-1]` per level, Parameter of
            shape `(levels, d_model)`, zeros at first, so it starts as the mean).

    Example: with $b = 2$, $L = 2$ and tokens $x_0..x_4$, mean pooling gives
    $S_1 = [\frac{x_0 + x_1}2, \frac{x_2 + x_3}2]$ ($x_4$'s chunk is not complete) and
    $S_2 = [\frac{x_0 + x_1 + x_2 + x_3}4]$.
    """

    def __init__(self, d_model: int, chunk_size: int, levels: int, mode: str = "mean") -> None:
        super().__init__()
        name = "HierarchicalPooling"
        if mode not in POOLS:
            raise ValueError(f"{name}: mode must be one of {', '.join(map(repr, POOLS))}, "
                             f"got {mode!r}")
        if chunk_size < 2:
            raise ValueError(f"{name}: chunk_size must be >= 2, got {chunk_size}")
        if levels < 1:
            raise ValueError(f"{name}: levels must be >= 1, got {levels}")
        if d_model < 1:
            raise ValueError(f"{name}: d_model must be >= 1, got {d_model}")
        self.d_model, self.chunk_size, self.levels, self.mode = d_model, chunk_size, levels, mode
        if mode == "attention":
            self.query = Parameter(np.zeros((levels, d_model), dtype=np.float32))  # (L, C)

    # --8<-- [start:pool]
    def pool(self, children: Tensor, level: int) -> Tensor:
        r"""One level up: `(B, n·b, C)` level-`(level-1)` vectors -> `(B, n, C)` summaries of
        level `level` ($1 \le \text{level} \le L$), each pooling $b$ consecutive children."""
        B, N, C = children.shape
        b = self.chunk_size
        if N % b or not 1 <= level <= self.levels:
            raise ValueError(f"HierarchicalPooling.pool: expected (B, n * {b}, {self.d_model}) "
                             f"children and 1 <= level <= {self.levels}, got {children.shape} "
                             f"and level={level}")
        chunks = children.reshape(B, N // b, b, C)  # (B, n, b, C): a row of children per chunk
        if self.mode == "mean":
            return chunks.mean(dim=2)  # (B, n, C): $\frac1b \sum_i c_i$
        # $\alpha = \operatorname{softmax}_i(\langle w_l, c_i\rangle / \sqrt{C})$
        scores = chunks @ (self.query[level - 1] * (1.0 / math.sqrt(C)))  # (B, n, b)
        alpha = softmax(scores, dim=-1).unsqueeze(2)  # (B, n, 1, b)
        return (alpha @ chunks).squeeze(2)  # (B, n, C): $\sum_i \alpha_i c_i$
    # --8<-- [end:pool]

    # --8<-- [start:pyramid]
    def forward(self, x: Tensor) -> list[Tensor]:
        r"""`x` `(B, T, C)` -> `[S_1, ..., S_L]`, $S_l$ of shape $(B, \lfloor T/b^l \rfloor, C)$:
        the summaries of the completed level-$l$ chunks, oldest first (possibly none)."""
        if x.ndim != 3 or x.shape[-1] != self.d_model:
            raise ValueError(f"HierarchicalPooling: expected x of shape (B, T, {self.d_model}), "
                             f"got {x.shape}")
        pyramid, level = [], x
        for l in range(1, self.levels + 1):
            n = level.shape[1] // self.chunk_size  # completed chunks at level l
            level = self.pool(level[:, :n * self.chunk_size], l)  # (B, n, C)
            pyramid.append(level)
        return pyramid
    # --8<-- [end:pyramid]

    def extra_repr(self) -> str:
        return (f"d_model={self.d_model}, chunk_size={self.chunk_size}, levels={self.levels}, "
                f"mode={self.mode!r}")


# --8<-- [start:upsample]
def upsample(summaries: Tensor, span: int, length: int) -> Tensor:
    r"""Give each of `length` positions the summary of the last chunk completed before its own
    chunk began: `(B, n, C)` summaries of chunks of `span` tokens -> `(B, length, C)`,

    $$U[t] = S[\lfloor t / \text{span} \rfloor - 1] \quad (t \ge \text{span}), \qquad
    U[t] = 0 \quad (t < \text{span}).$$

    Each summary is repeated `span` times and shifted right by one chunk, so a token never
    reads the summary of the chunk it is in. Example: `span=2`, summaries `[a, b]`, length 6
    gives `[0, 0, a, a, b, b]`.
    """
    B, n, C = summaries.shape
    if span < 1 or not 0 <= length <= (n + 1) * span:
        raise ValueError(f"upsample: {n} summaries of span={span} reach positions < "
                         f"{(n + 1) * span}, got length={length}")
    repeated = summaries.unsqueeze(2).expand(B, n, span, C).reshape(B, n * span, C)
    empty = Tensor(np.zeros((B, span, C), dtype=summaries.dtype))  # nothing completed yet
    return cat([empty, repeated], dim=1)[:, :length]  # (B, length, C)
# --8<-- [end:upsample]
