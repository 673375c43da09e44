r"""`HybridAttention`, from the knock.knock design of a small interactive text model: learned
positional patterns mixed with content attention.

Content attention decides where to look by comparing the query with every key,
$\operatorname{softmax}(q_t k_j^\top / \sqrt{d_h})$. **Reweight attention** skips the comparison:
the token at position $t$ writes its logits over key positions $0 \dots t$ straight from its
own vector with one linear map,

$$R_{h,t,:} = (W^h_\text{reweight}\, x_t)_{0..T_k-1}, \qquad
A^\text{rw}_h = \operatorname{softmax}\bigl(R_h + M_\text{causal}\bigr),$$

so each position learns which earlier positions to average: a pattern over the absolute
positions of the context window, chosen from the token's own vector (which carries its
position embedding), never from what the keys hold.
The **hybrid** mixes the two attention distributions per head,

$$A_h = \alpha_h\, A^\text{rw}_h + (1 - \alpha_h)\, A^\text{content}_h, \qquad
\alpha_h = \sigma(a_h) \text{ when learned},$$

a convex combination of two distributions, hence a distribution itself, and the output is
$A_h V_h$ as in any attention. `mode="content"` is plain causal `MultiHeadAttention`.

The price: `reweight` is a `Linear(d, n_head * block_size)`, $d \cdot n_h \cdot
\text{block\_size}$ weights (plus $n_h \cdot \text{block\_size}$ biases), and the column for
key position $j$ exists only for $j < \text{block\_size}$ — reweight attention cannot look
further back than the window it was built for.
"""

from __future__ import annotations

import math

import numpy as np

from nima._tensor import Tensor
from nima.nn.attention import (
    KVCache,
    Mask,
    MultiHeadAttention,
    causal_mask,
    scaled_dot_product_attention,
)
from nima.nn.linear import Linear
from nima.nn.parameter import Parameter
from nima.nn.positional import ALiBi, RotaryEmbedding
from nima.ops.dropout import dropout
from nima.ops.elementwise import sigmoid
from nima.ops.nn import softmax

MODES = ("content", "reweight", "hybrid")


class HybridAttention(MultiHeadAttention):
    r"""Causal self-attention over `mode` = `"content"`, `"reweight"` or `"hybrid"` weights.

    A `MultiHeadAttention(d_model, n_head, causal=True)` — the same `qkv` and `proj`, the same
    `forward` signature (`key_padding_mask`, `attn_mask`, `cache`, `need_weights`) — plus, for
    `"reweight"` and `"hybrid"`, the layer `reweight` = `Linear(d_model, n_head * block_size)`
    and, for a learned `"hybrid"`, one mixing logit per head.

    Args:
        d_model: model width $d$.
        n_head: number of heads $n_h$.
        block_size: the longest context (cached plus new tokens) reweight attention covers.
        mode: `"content"` ($QK^\top/\sqrt{d_h}$ only), `"reweight"` (learned patterns only)
            or `"hybrid"` (both, mixed by $\alpha$).
        alpha: the weight of the reweight distribution in `"hybrid"`: fixed, or the initial
            $\sigma(a_h)$ of every head when learned.
        learn_alpha: learn $\alpha_h = \sigma(a_h)$ per head (Parameter `alpha_logit`,
            shape `(n_head,)`); otherwise $\alpha$ stays fixed.
        bias: biases in `qkv`, `proj` and `reweight`.
        dropout: dropout on the (mixed) attention weights in training.
        rope, alibi: as in `MultiHeadAttention`. RoPE rotates $q$ and $k$, so it shapes the
            content scores only; ALiBi's bias, like `attn_mask` and `key_padding_mask`, is
            added to both the content scores and the reweight logits.

    `"reweight"` mode computes $q$ and $k$ without using them: every mode shares the
    parameter layout of the hybrid, so a state dict moves between modes (see
    `docs/hybrid_attention.md` for the cost).
    """

    def __init__(self, d_model: int, n_head: int, block_size: int, *, mode: str = "hybrid",
                 alpha: float = 0.5, learn_alpha: bool = True, bias: bool = True,
                 dropout: float = 0.0, rope: RotaryEmbedding | None = None,
                 alibi: ALiBi | None = None) -> None:
        name = "HybridAttention"
        if mode not in MODES:
            raise ValueError(f"{name}: mode must be one of {', '.join(map(repr, MODES))}, "
                             f"got {mode!r}")
        if block_size < 1:
            raise ValueError(f"{name}: block_size must be positive, got {block_size}")
        inside = 0.0 < alpha < 1.0 if learn_alpha else 0.0 <= alpha <= 1.0
        if mode == "hybrid" and not inside:
            interval = "(0, 1) to be learned as sigmoid(logit)" if learn_alpha else "[0, 1]"
            raise ValueError(f"{name}: alpha must be in {interval}, got {alpha}")
        super().__init__(d_model, n_head, bias=bias, dropout=dropout, causal=True, rope=rope,
                         alibi=alibi)
        self.block_size, self.mode = block_size, mode
        self.alpha_fixed: float | None = None
        if mode != "content":
            self.reweight = Linear(d_model, n_head * block_size, bias=bias)
        if mode == "hybrid" and learn_alpha:
            logit = math.log(alpha / (1 - alpha))  # $\sigma^{-1}(\alpha)$
            self.alpha_logit = Parameter(np.full(n_head, logit, dtype=np.float32))  # (nh,)
        elif mode == "hybrid":
            self.alpha_fixed = float(alpha)

    def alpha(self) -> Tensor:
        r"""The mixing weight of every head, `(n_head,)`: $\sigma(a_h)$ or the fixed $\alpha$
        (in the graph when learned, so it can be used in a loss)."""
        if self.mode != "hybrid":
            raise ValueError(f"HybridAttention: alpha exists in mode 'hybrid' only, "
                             f"this one is {self.mode!r}")
        if self.alpha_fixed is not None:
            return Tensor(np.full(self.n_head, self.alpha_fixed, dtype=self.proj.weight.dtype))
        return sigmoid(self.alpha_logit)  # (nh,), each in (0, 1)

    def forward(self, x: Tensor, context: Tensor | None = None, *,
                key_padding_mask: Mask | None = None, attn_mask: Mask | None = None,
                cache: KVCache | None = None, positions: np.ndarray | None = None,
                need_weights: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """`x` `(B, T, d)` -> `(B, T, d)`, or `(y, weights (B, nh, T, S))` with `need_weights`.

        As `MultiHeadAttention.forward` for self-attention: with a `cache`, `x` holds the new
        tokens only, at positions `cache.length ...`; `S` counts cached and new keys and must
        not exceed `block_size` outside `"content"` mode. With `positions` (a padded batch),
        the reweight logits are read at each key's position.
        """
        if self.mode == "content":
            return super().forward(x, context, key_padding_mask=key_padding_mask,
                                   attn_mask=attn_mask, cache=cache, positions=positions,
                                   need_weights=need_weights)
        q, k, v = self._project(x, context, cache)  # 3 x (B, nh, T, hd)
        B, T, C = x.shape
        offset = 0 if cache is None else cache.length
        S = offset + T  # keys: cached, then new
        if offset + T > self.block_size:
            raise ValueError(f"HybridAttention: reweight attention covers block_size="
                             f"{self.block_size} positions, got {S} (T={T} new, "
                             f"{offset} cached); x has shape {x.shape}")
        pad = self._padding(key_padding_mask, B, S)  # (B, S) or None
        positions = self._positions(positions, B, S)  # (B, S) or None
        if self.rope is not None:
            at = None if positions is None else positions[:, -T:]  # (B, T)
            q, k = self.rope(q, offset, at), self.rope(k, offset, at)  # (B, nh, T, hd) each
        if cache is not None:
            k, v = cache.append(k, v, None if pad is None else pad[:, -T:])  # (B, nh, S, hd)
        mask = self._mask(B, T, S, offset, pad, attn_mask, positions)
        # --8<-- [start:mix]
        weights = self._reweight_weights(x, S, mask, positions)  # (B, nh, T, S)
        if self.mode == "hybrid":
            _, content = scaled_dot_product_attention(
                q, k, v, attn_mask=mask, is_causal=True, need_weights=True)  # (B, nh, T, S)
            alpha = self.alpha().reshape(self.n_head, 1, 1)  # (nh, 1, 1)
            # $A = \alpha A^\text{rw} + (1 - \alpha) A^\text{content}$: still a distribution
            weights = alpha * weights + (1 - alpha) * content  # (B, nh, T, S)
        y = dropout(weights, self.dropout, self.training) @ v  # (B, nh, T, hd)
        # --8<-- [end:mix]
        y = self.proj(y.transpose(1, 2).reshape(B, T, C))  # (B, T, C): heads side by side
        return (y, weights) if need_weights else y

    # --8<-- [start:reweight]
    def _reweight_weights(self, x: Tensor, S: int, mask: Mask | None,
                          positions: np.ndarray | None = None) -> Tensor:
        r"""$A^\text{rw} = \operatorname{softmax}(R + M)$, `(B, nh, T, S)`: the new tokens'
        rows of logits over the first `S` key positions (or, given `positions` `(B, S)`, at
        each key's position), the causal mask aligned to the end (a query at position $t$
        sees keys $0 \dots t$), plus `mask` from `_mask`."""
        B, T, _ = x.shape
        # $R = x W_\text{reweight}^\top$: every token writes a row of logits for every head
        logits = self.reweight(x).view(B, T, self.n_head, self.block_size)  # (B, T, nh, bs)
        logits = logits.transpose(1, 2)  # (B, nh, T, bs)
        if positions is None:
            logits = logits[..., :S]  # (B, nh, T, S): key positions 0..S-1
        else:  # (B, nh, T, S): row b's key s sits at position positions[b, s]
            rows, heads, queries = np.ogrid[:B, :self.n_head, :T]
            logits = logits[rows[..., None], heads[..., None], queries[..., None],
                            positions[:, None, None, :]]
        keep = causal_mask(T, S)  # (T, S)
        if mask is not None and mask.dtype == np.bool_:
            keep = keep & mask  # (B, nh, T, S) after broadcasting
        elif mask is not None:
            logits = logits + mask  # a float mask or an ALiBi bias, as on the content scores
        return softmax(logits + np.where(keep, 0.0, -np.inf), dim=-1)  # rows sum to 1
    # --8<-- [end:reweight]

    def extra_repr(self) -> str:
        alpha = ""
        if self.mode == "hybrid":
            learned = self.alpha_fixed is None
            alpha = ", alpha=learned" if learned else f", alpha={self.alpha_fixed}"
        return (f"d_model={self.d_model}, n_head={self.n_head}, block_size={self.block_size}, "
                f"mode={self.mode!r}{alpha}, dropout={self.dropout}")
