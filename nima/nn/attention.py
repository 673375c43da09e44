r"""Attention layers: `MultiHeadAttention` (self- and cross-attention) and its `KVCache`.

Multi-head attention runs `n_head` scaled dot-product attentions
(`nima.ops.attention.scaled_dot_product_attention`, re-exported here and as
`F.scaled_dot_product_attention`) side by side on slices of the channels, then mixes their
outputs with one projection. Masks follow PyTorch: a boolean `attn_mask` is True where
attention is *allowed*, a float one is added to the scores, and a `key_padding_mask` is True at
*padding* (keys to ignore). A query that can see no key at all — every key padded — gets a zero
attention output (so the layer returns `proj`'s bias there) and a zero gradient, where PyTorch
gives NaN.
"""

from __future__ import annotations

import numpy as np

from nima._tensor import Tensor
from nima.nn.linear import Linear
from nima.nn.module import Module
from nima.nn.positional import ALiBi, RotaryEmbedding
from nima.ops.attention import Mask, causal_mask, mask_array, scaled_dot_product_attention
from nima.ops.shape import cat

__all__ = ["KVCache", "Mask", "MultiHeadAttention", "causal_mask", "scaled_dot_product_attention"]


# --8<-- [start:kv_cache]
class KVCache:
    """The keys and values one attention layer has seen, `(B, nh, T_seen, hd)` each.

    Decoding one token at a time, the new token's query needs the keys and values of every
    earlier token. They do not change once computed (a causal layer's earlier positions never
    see later ones), so each step computes them for the new tokens only and appends them here.
    The arrays sit outside the autograd graph: gradients reach the current step's keys and
    values, not cached ones (decoding runs under `no_grad` anyway).
    """

    def __init__(self) -> None:
        self.k: np.ndarray | None = None  # (B, nh, T_seen, hd)
        self.v: np.ndarray | None = None  # (B, nh, T_seen, hd)

    @property
    def length(self) -> int:
        """How many positions are cached: the position of the next token."""
        return 0 if self.k is None else self.k.shape[-2]

    def reset(self) -> None:
        """Forget everything, to start a new sequence."""
        self.k = self.v = None

    def append(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Store the new `k`, `v` `(B, nh, T, hd)`; return all keys and values so far,
        `(B, nh, T_seen + T, hd)`."""
        if self.k is not None:
            if k.shape[:2] != self.k.shape[:2] or k.shape[3:] != self.k.shape[3:]:
                raise ValueError(f"KVCache: new keys {k.shape} do not match the cached "
                                 f"{self.k.shape} (B, nh, T, hd)")
            k = cat([Tensor(self.k), k], dim=2)  # (B, nh, T_seen + T, hd)
            v = cat([Tensor(self.v), v], dim=2)  # (B, nh, T_seen + T, hd)
        self.k, self.v = np.ascontiguousarray(k.data), np.ascontiguousarray(v.data)
        return k, v

    def reorder(self, indices: np.ndarray) -> None:
        """Keep batch rows `indices` `(B',)` in that order: row `i` becomes old row
        `indices[i]` (beam search moves each beam's history to where its successors are)."""
        if self.k is not None:
            indices = np.asarray(indices)
            if indices.ndim != 1 or indices.dtype.kind not in "iu" or (indices.size and (
                    indices.min() < 0 or indices.max() >= self.k.shape[0])):
                raise ValueError(f"KVCache.reorder: indices must be 1-D ints in "
                                 f"[0, {self.k.shape[0]}), got {indices!r}")
            self.k, self.v = self.k[indices], self.v[indices]  # (B', nh, T_seen, hd)

    def __repr__(self) -> str:
        shape = None if self.k is None else self.k.shape
        return f"KVCache(length={self.length}, shape={shape})"
# --8<-- [end:kv_cache]


class MultiHeadAttention(Module):
    r"""Multi-head attention: `n_head` attentions of width $d_h = d / n_\text{head}$ side by side,

    $$\operatorname{MHA}(X) = \operatorname{concat}(\text{head}_1, \dots,
    \text{head}_{n})\,W_O, \qquad \text{head}_h = \operatorname{Attention}(X W_Q^h,
    C W_K^h, C W_V^h),$$

    with $C = X$ (self-attention) or the encoder's output (cross-attention, `cross=True`).

    Parameters as GPT-2 names them: `qkv` (`c_attn`, one `Linear(d, 3d)` for all three
    projections of self-attention; cross-attention has `q = Linear(d, d)` and
    `kv = Linear(d, 2d)` instead) and `proj` (`c_proj`, $W_O$). `dropout` drops attention
    weights in training, as PyTorch's `nn.MultiheadAttention` does; residual dropout after
    `proj` belongs to the block. `causal` masks future keys; `rope` rotates q and k; `alibi`
    biases the scores (both for self-attention only).
    """

    def __init__(self, d_model: int, n_head: int, *, bias: bool = True, dropout: float = 0.0,
                 causal: bool = False, rope: RotaryEmbedding | None = None,
                 alibi: ALiBi | None = None, cross: bool = False) -> None:
        super().__init__()
        name = "MultiHeadAttention"
        if n_head < 1 or d_model % n_head:
            raise ValueError(f"{name}: d_model={d_model} is not divisible by n_head={n_head}")
        head_dim = d_model // n_head
        if rope is not None and rope.head_dim != head_dim:
            raise ValueError(f"{name}: rope.head_dim={rope.head_dim} does not match "
                             f"d_model // n_head = {d_model} // {n_head} = {head_dim}")
        if alibi is not None and alibi.n_head != n_head:
            raise ValueError(f"{name}: alibi.n_head={alibi.n_head} does not match "
                             f"n_head={n_head}")
        if cross and (causal or rope is not None or alibi is not None):
            raise ValueError(f"{name}: cross-attention takes no causal mask, rope or alibi "
                             f"(queries and keys come from different sequences)")
        if not 0.0 <= dropout <= 1.0:
            raise ValueError(f"{name}: dropout must be in [0, 1], got {dropout}")
        self.d_model, self.n_head, self.head_dim = d_model, n_head, head_dim
        self.dropout, self.causal, self.cross = dropout, causal, cross
        if cross:
            self.q = Linear(d_model, d_model, bias=bias)
            self.kv = Linear(d_model, 2 * d_model, bias=bias)
        else:
            self.qkv = Linear(d_model, 3 * d_model, bias=bias)
        self.proj = Linear(d_model, d_model, bias=bias)
        self.rope, self.alibi = rope, alibi

    def forward(self, x: Tensor, context: Tensor | None = None, *,
                key_padding_mask: Mask | None = None, attn_mask: Mask | None = None,
                cache: KVCache | None = None, need_weights: bool = False,
                head_gate: Tensor | None = None) -> Tensor | tuple[Tensor, Tensor]:
        """`x` `(B, T, d)` -> `(B, T, d)`, or `(y, weights (B, nh, T, S))` with `need_weights`.

        `context` `(B, S, d)`: the sequence to attend to, for cross-attention. With a `cache`,
        `x` holds only the new tokens: self-attention appends their keys and values and
        attends over all of them (positions continue from `cache.length`); cross-attention
        computes the context's keys and values on the first call and reuses them after
        (`context` may then be None). `key_padding_mask` `(B, S)`: True at padding keys (S
        counts cached keys too). `attn_mask`: as in `scaled_dot_product_attention`,
        broadcastable to `(B, nh, T, S)`. `head_gate` `(nh,)`: a scale per head, multiplying its
        output before `proj` (learned by `nima.generation.learned`); None changes nothing.
        """
        q, k, v = self._project(x, context, cache)  # (B, nh, T, hd), (B, nh, S_new, hd) x2
        B, T, C = x.shape
        offset = 0 if cache is None or self.cross else cache.length
        if self.rope is not None:
            q, k = self.rope(q, offset), self.rope(k, offset)  # rotated for their positions
        if cache is not None and not (self.cross and cache.length):
            k, v = cache.append(k, v)  # (B, nh, S, hd): cached keys, then the new ones
        S = k.shape[2]
        mask = self._mask(B, T, S, offset, key_padding_mask, attn_mask)
        y, weights = scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=self.causal,
            dropout_p=self.dropout if self.training else 0.0, need_weights=True)
        if head_gate is not None:
            if head_gate.shape != (self.n_head,):
                raise ValueError(f"MultiHeadAttention: head_gate must have shape "
                                 f"({self.n_head},), got {head_gate.shape}")
            y = y * head_gate.reshape(self.n_head, 1, 1)  # (B, nh, T, hd): head h times $g_h$
        # --8<-- [start:merge_heads]
        y = y.transpose(1, 2).reshape(B, T, C)  # (B, nh, T, hd) -> (B, T, nh, hd) -> (B, T, C)
        y = self.proj(y)  # (B, T, C): $W_O$ mixes what the heads found
        # --8<-- [end:merge_heads]
        return (y, weights) if need_weights else y

    def _project(self, x: Tensor, context: Tensor | None,
                 cache: KVCache | None) -> tuple[Tensor, Tensor, Tensor]:
        """Queries from `x`; keys and values from `x`, `context`, or a cross-attention cache."""
        name, d = "MultiHeadAttention", self.d_model
        if x.ndim != 3 or x.shape[-1] != d:
            raise ValueError(f"{name}: expected x of shape (B, T, {d}), got {x.shape}")
        if not self.cross:
            if context is not None:
                raise ValueError(f"{name}: context is for cross-attention (cross=True); this "
                                 f"is self-attention, got context of shape {context.shape}")
            # --8<-- [start:split_heads]
            q, k, v = self.qkv(x).split(d, dim=2)  # (B, T, 3C) -> 3 x (B, T, C)
            return self._heads(q), self._heads(k), self._heads(v)  # 3 x (B, nh, T, hd)
            # --8<-- [end:split_heads]
        q = self._heads(self.q(x))  # (B, nh, T, hd)
        if cache is not None and cache.length:  # the context's keys and values, from step 1
            if cache.k.shape[0] != x.shape[0]:
                raise ValueError(f"{name}: cache holds batch {cache.k.shape[0]}, x has "
                                 f"{x.shape}")
            return q, Tensor(cache.k), Tensor(cache.v)
        if context is None or context.ndim != 3 or context.shape[-1] != d or \
                context.shape[0] != x.shape[0]:
            got = None if context is None else context.shape
            raise ValueError(f"{name}: cross-attention needs context of shape "
                             f"({x.shape[0]}, S, {d}), got {got}")
        k, v = self.kv(context).split(d, dim=2)  # (B, S, 2C) -> 2 x (B, S, C)
        return q, self._heads(k), self._heads(v)

    # --8<-- [start:heads]
    def _heads(self, t: Tensor) -> Tensor:
        """`(B, T, C) -> (B, nh, T, hd)`: the channels of each head become its own matrix."""
        B, T, _ = t.shape
        return t.view(B, T, self.n_head, self.head_dim).transpose(1, 2)  # (B, nh, T, hd)
    # --8<-- [end:heads]

    def _mask(self, B: int, T: int, S: int, offset: int, key_padding_mask: Mask | None,
              attn_mask: Mask | None) -> Mask | None:
        r"""One `attn_mask` for `scaled_dot_product_attention` (the causal mask is passed as
        `is_causal`): bool where only masks apply, float once a bias is involved."""
        name, shape = "MultiHeadAttention", (B, self.n_head, T, S)
        keep, bias = None, None
        # --8<-- [start:combine_masks]
        if key_padding_mask is not None:
            pad = np.asarray(key_padding_mask.data if isinstance(key_padding_mask, Tensor)
                             else key_padding_mask)
            if pad.dtype != np.bool_ or pad.shape != (B, S):
                raise ValueError(f"{name}: key_padding_mask must be bool of shape (B, S) = "
                                 f"({B}, {S}) with True at padding, got {pad.dtype} {pad.shape}")
            keep = ~pad[:, None, None, :]  # (B, 1, 1, S): every head and query ignores padding
        if attn_mask is not None:
            mask = mask_array(name, "attn_mask", attn_mask, shape)
            if mask.dtype == np.bool_:
                keep = mask if keep is None else keep & mask  # (B, nh, T, S) after broadcasting
            else:
                bias = mask
        if self.alibi is not None:
            alibi = self.alibi.bias(T, S, offset)  # (nh, T, S)
            bias = alibi if bias is None else bias + alibi
        if bias is None:
            return keep
        if keep is None:
            return bias
        return bias + np.where(keep, 0.0, -np.inf)  # a bool mask as an additive one
        # --8<-- [end:combine_masks]

    def extra_repr(self) -> str:
        return (f"d_model={self.d_model}, n_head={self.n_head}, causal={self.causal}, "
                f"cross={self.cross}, dropout={self.dropout}")
