r"""Attention layers: `MultiHeadAttention` (self- and cross-attention) and its `KVCache`.

Multi-head attention runs `n_head` scaled dot-product attentions
(`nima.ops.attention.scaled_dot_product_attention`, re-exported here and as
`F.scaled_dot_product_attention`) side by side on slices of the channels, then mixes their
outputs with one projection. With `n_kv_head < n_head` the heads share keys and values in groups
(grouped-query attention; one key/value head is multi-query attention).

**Masks.** Each API takes the convention of its PyTorch namesake, so a PyTorch user's masks mean
the same thing here:

* `MultiHeadAttention.forward(attn_mask=...)`, bool: **True = may not attend**, as
  `torch.nn.MultiheadAttention`;
* `MultiHeadAttention.forward(key_padding_mask=...)`, bool: True = padding, ignored, as
  `torch.nn.MultiheadAttention`;
* `scaled_dot_product_attention(attn_mask=...)`, bool: **True = may attend**, as
  `torch.nn.functional.scaled_dot_product_attention`;
* a float `attn_mask`, in either: added to the scores.

A query that can see no key at all — every key masked — gets a zero attention output (so the
layer returns `proj`'s bias there) and a zero gradient, where PyTorch gives NaN.
"""

from __future__ import annotations

import numpy as np

from nima._tensor import Tensor
from nima.autograd import is_grad_enabled
from nima.nn.linear import Linear
from nima.nn.module import Module
from nima.nn.positional import ALiBi, RotaryEmbedding
from nima.ops.attention import (
    Mask,
    causal_mask,
    causal_self_attention,
    mask_array,
    scaled_dot_product_attention,
)
from nima.ops.shape import cat
from nima.settings import check_int

__all__ = ["KVCache", "Mask", "MultiHeadAttention", "causal_mask", "scaled_dot_product_attention"]


# --8<-- [start:kv_cache]
class KVCache:
    """The keys and values one attention layer has seen, `(B, n_kv_head, T_seen, hd)` each.

    Decoding one token at a time, the new token's query needs the keys and values of every
    earlier token. They do not change once computed (a causal layer's earlier positions never
    see later ones), so each step computes them for the new tokens only and writes them into
    two arrays allocated once, `(B, n_kv_head, capacity, hd)`, at position `length` — no
    concatenation, no copy of what is already cached. Without a `capacity` the arrays double
    whenever they fill up.

    The arrays sit outside the autograd graph: gradients reach the current step's keys and
    values, not cached ones (decoding runs under `no_grad` anyway, and then `append` returns
    views of the arrays, no copies).

    A padded batch's cache also remembers which keys are padding (`padding`, `(B, capacity)`
    bool, True at padding; None as long as no padding was appended): later queries must not
    see them, and a model recovers each row's positions from it (`positions_from_padding`), so
    decoding goes on with no mask passed after the prompt.
    """

    def __init__(self, capacity: int | None = None) -> None:
        self.capacity = None if capacity is None else check_int("KVCache.capacity", capacity,
                                                                 ge=1)
        self.k: np.ndarray | None = None  # (B, nkv, capacity, hd); positions >= length unused
        self.v: np.ndarray | None = None
        self.padding: np.ndarray | None = None  # (B, capacity), True at padding keys
        self.length = 0  # how many positions are cached: the position of the next token

    @property
    def keys(self) -> np.ndarray | None:
        """The cached keys, `(B, nkv, length, hd)`: a view of the first `length` positions."""
        return None if self.k is None else self.k[:, :, :self.length]

    @property
    def values(self) -> np.ndarray | None:
        """The cached values, `(B, nkv, length, hd)`: a view, as `keys`."""
        return None if self.v is None else self.v[:, :, :self.length]

    def reset(self) -> None:
        """Forget everything, to start a new sequence."""
        self.k = self.v = self.padding = None
        self.length = 0

    def append(self, k: Tensor, v: Tensor,
               padding: np.ndarray | None = None) -> tuple[Tensor, Tensor]:
        """Store the new `k`, `v` `(B, nkv, T, hd)` at positions `length ... length + T - 1`,
        and their `padding` `(B, T)` (True at padding; None: all real); return all keys and
        values so far, `(B, nkv, length + T, hd)`."""
        start, end = self.length, self.length + k.shape[2]
        self._reserve(k.data, end)
        self.k[:, :, start:end] = k.data
        self.v[:, :, start:end] = v.data
        if padding is not None or self.padding is not None:
            if self.padding is None:  # the first padding seen: every earlier key was real
                self.padding = np.zeros((self.k.shape[0], self.k.shape[2]), dtype=bool)
            self.padding[:, start:end] = False if padding is None else padding
        self.length = end
        if is_grad_enabled() and start and (k.requires_grad or v.requires_grad):
            # the new keys keep their gradient path; the cached ones are constants
            return (cat([Tensor(self.k[:, :, :start]), k], dim=2),
                    cat([Tensor(self.v[:, :, :start]), v], dim=2))
        if is_grad_enabled() and (k.requires_grad or v.requires_grad):
            return k, v
        return Tensor(self.k[:, :, :end]), Tensor(self.v[:, :, :end])  # views, no copy

    def _reserve(self, k: np.ndarray, end: int) -> None:
        """Arrays that hold `end` positions of keys shaped like `k` (allocated on first use)."""
        if self.k is not None and (k.shape[:2] != self.k.shape[:2] or
                                   k.shape[3:] != self.k.shape[3:] or k.dtype != self.k.dtype):
            cached = (*self.k.shape[:2], self.length, self.k.shape[3])
            raise ValueError(f"KVCache: new keys {k.dtype} {k.shape} do not match the cached "
                             f"{self.k.dtype} {cached} (B, n_kv_head, T, hd)")
        size = 0 if self.k is None else self.k.shape[2]
        if self.k is not None and end <= size:
            return
        if self.capacity is not None and end > self.capacity:
            raise ValueError(f"KVCache: {end} positions exceed its capacity of "
                             f"{self.capacity}; reset it or start a new cache")
        size = self.capacity or max(end, 2 * size, 16)
        k_new = np.empty((*k.shape[:2], size, k.shape[3]), dtype=k.dtype)
        v_new = np.empty_like(k_new)
        if self.k is not None:
            k_new[:, :, :self.length] = self.k[:, :, :self.length]
            v_new[:, :, :self.length] = self.v[:, :, :self.length]
        if self.padding is not None:
            padding = np.zeros((k.shape[0], size), dtype=bool)
            padding[:, :self.length] = self.padding[:, :self.length]
            self.padding = padding
        self.k, self.v = k_new, v_new

    def padding_mask(self, T: int, new: np.ndarray | None = None) -> np.ndarray | None:
        """The key padding mask `(B, length + T)` of the cached keys followed by `T` new ones
        whose padding is `new` `(B, T)` (None: all real), True at padding — or None when no
        key is padding, so an unpadded batch needs no mask at all."""
        if new is None and self.padding is None:
            return None
        B = new.shape[0] if self.padding is None else self.padding.shape[0]
        if new is not None and new.shape != (B, T):
            raise ValueError(f"KVCache.padding_mask: new padding must be (B, T) = ({B}, {T}), "
                             f"got {new.shape}")
        past = np.zeros((B, self.length), dtype=bool) if self.padding is None \
            else self.padding[:, :self.length]  # (B, length)
        new = np.zeros((B, T), dtype=bool) if new is None else new  # (B, T)
        return np.concatenate([past, new], axis=1)  # (B, length + T)

    def reorder(self, indices: np.ndarray) -> None:
        """Keep batch rows `indices` `(B',)` in that order: row `i` becomes old row
        `indices[i]` (beam search moves each beam's history to where its successors are)."""
        if self.k is not None:
            indices = np.asarray(indices)
            if indices.ndim != 1 or indices.dtype.kind not in "iu" or (indices.size and (
                    indices.min() < 0 or indices.max() >= self.k.shape[0])):
                raise ValueError(f"KVCache.reorder: indices must be 1-D ints in "
                                 f"[0, {self.k.shape[0]}), got {indices!r}")
            n = self.length
            self.k = np.ascontiguousarray(self.k[indices])  # (B', nkv, capacity, hd)
            self.v = np.ascontiguousarray(self.v[indices])
            if self.padding is not None:
                self.padding = self.padding[indices]  # (B', capacity)
            self.length = n

    def __repr__(self) -> str:
        shape = None if self.k is None else self.k.shape
        return f"KVCache(length={self.length}, capacity={self.capacity}, arrays={shape})"
# --8<-- [end:kv_cache]


class MultiHeadAttention(Module):
    r"""Multi-head attention: `n_head` attentions of width $d_h = d / n_\text{head}$ side by side,

    $$\operatorname{MHA}(X) = \operatorname{concat}(\text{head}_1, \dots,
    \text{head}_{n})\,W_O, \qquad \text{head}_h = \operatorname{Attention}(X W_Q^h,
    C W_K^{g(h)}, C W_V^{g(h)}),$$

    with $C = X$ (self-attention) or the encoder's output (cross-attention, `cross=True`), and
    $g(h) = \lfloor h / (n_\text{head} / n_\text{kv}) \rfloor$ the key/value head that query
    head $h$ reads ($g(h) = h$ unless `n_kv_head < n_head`).

    Parameters as GPT-2 names them: `qkv` (`c_attn`, one `Linear(d, (n_head + 2 n_kv) d_h)`
    for all three projections of self-attention; cross-attention has `q = Linear(d, d)` and
    `kv = Linear(d, 2 n_kv d_h)` instead) and `proj` (`c_proj`, $W_O$). `dropout` drops
    attention weights in training, as PyTorch's `nn.MultiheadAttention` does; residual dropout
    after `proj` belongs to the block. `causal` masks future keys; `rope` rotates q and k;
    `alibi` biases the scores (both for self-attention only).
    """

    def __init__(self, d_model: int, n_head: int, *, n_kv_head: int | None = None,
                 bias: bool = True, dropout: float = 0.0, causal: bool = False,
                 rope: RotaryEmbedding | None = None, alibi: ALiBi | None = None,
                 cross: bool = False) -> None:
        super().__init__()
        name = "MultiHeadAttention"
        if n_head < 1 or d_model % n_head:
            raise ValueError(f"{name}: d_model={d_model} is not divisible by n_head={n_head}")
        n_kv_head = n_head if n_kv_head is None else n_kv_head
        if n_kv_head < 1 or n_head % n_kv_head:
            raise ValueError(f"{name}: n_head={n_head} is not a multiple of "
                             f"n_kv_head={n_kv_head}")
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
        self.d_model, self.n_head, self.n_kv_head, self.head_dim = (d_model, n_head, n_kv_head,
                                                                    head_dim)
        self.dropout, self.causal, self.cross = dropout, causal, cross
        kv_width = n_kv_head * head_dim
        if cross:
            self.q = Linear(d_model, d_model, bias=bias)
            self.kv = Linear(d_model, 2 * kv_width, bias=bias)
        else:
            self.qkv = Linear(d_model, d_model + 2 * kv_width, bias=bias)
        self.proj = Linear(d_model, d_model, bias=bias)
        self.rope, self.alibi = rope, alibi

    def new_cache(self, max_len: int | None = None) -> KVCache:
        """An empty `KVCache` for decoding sequences of at most `max_len` positions (None: it
        grows as needed)."""
        return KVCache(max_len)

    def forward(self, x: Tensor, context: Tensor | None = None, *,
                key_padding_mask: Mask | None = None, attn_mask: Mask | None = None,
                cache: KVCache | None = None, positions: np.ndarray | None = None,
                need_weights: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """`x` `(B, T, d)` -> `(B, T, d)`, or `(y, weights (B, nh, T, S))` with `need_weights`.

        `context` `(B, S, d)`: the sequence to attend to, for cross-attention. With a `cache`,
        `x` holds only the new tokens: self-attention appends their keys and values and
        attends over all of them (positions continue from `cache.length`); cross-attention
        computes the context's keys and values on the first call and reuses them after
        (`context` may then be None). `key_padding_mask` `(B, S)`: True at padding keys (S
        counts cached keys too; the cache records the new keys' part). `attn_mask`
        broadcastable to `(B, nh, T, S)`: bool True where a query may *not* attend (as
        `torch.nn.MultiheadAttention`), or float, added to the scores. `positions` `(B, S)`
        ints: the position of every key of self-attention, cached and new — the queries are
        the last `T` — for RoPE and ALiBi in a padded batch (`positions_from_padding`);
        None is `0 .. S - 1`.
        """
        if (self.causal and cache is None and context is None and key_padding_mask is None
                and attn_mask is None and positions is None and not need_weights
                and self.alibi is None and self.n_kv_head == self.n_head
                and not (self.training and self.dropout) and x.ndim == 3
                and x.shape[-1] == self.d_model):
            # the plain causal case: one fused op from the packed projection to the merged heads
            rotary = None if self.rope is None else self.rope.tables(x.shape[1])
            return self.proj(causal_self_attention(self.qkv(x), self.n_head, rotary=rotary))
        q, k, v = self._project(x, context, cache)  # (B, nh, T, hd), 2 x (B, nkv, S_new, hd)
        B, T, C = x.shape
        offset = 0 if cache is None or self.cross else cache.length
        S = offset + k.shape[2]  # every key: cached (self-attention) and new
        pad = self._padding(key_padding_mask, B, S)  # (B, S) bool or None
        positions = self._positions(positions, B, S)  # (B, S) ints or None
        if self.rope is not None:  # rotated for their positions
            at = None if positions is None else positions[:, -T:]  # (B, T)
            q, k = self.rope(q, offset, at), self.rope(k, offset, at)
        if cache is not None and not (self.cross and cache.length):
            # (B, nkv, S, hd): cached keys, then the new ones
            k, v = cache.append(k, v, None if pad is None else pad[:, S - k.shape[2]:])
        mask = self._mask(B, T, S, offset, pad, attn_mask, positions)
        y, weights = scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=self.causal, need_weights=True,
            dropout_p=self.dropout if self.training else 0.0, enable_gqa=True)
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
        nh, nkv = self.n_head, self.n_kv_head
        if not self.cross:
            if context is not None:
                raise ValueError(f"{name}: context is for cross-attention (cross=True); this "
                                 f"is self-attention, got context of shape {context.shape}")
            # --8<-- [start:split_heads]
            heads = self._heads(self.qkv(x))  # (B, T, (nh + 2 nkv) hd) -> (B, nh + 2 nkv, T, hd)
            return heads[:, :nh], heads[:, nh:nh + nkv], heads[:, nh + nkv:]  # q, k, v
            # --8<-- [end:split_heads]
        q = self._heads(self.q(x))  # (B, nh, T, hd)
        if cache is not None and cache.length:  # the context's keys and values, from step 1
            if cache.k.shape[0] != x.shape[0]:
                raise ValueError(f"{name}: cache holds batch {cache.k.shape[0]}, x has "
                                 f"{x.shape}")
            return q, Tensor(cache.keys), Tensor(cache.values)
        if context is None or context.ndim != 3 or context.shape[-1] != d or \
                context.shape[0] != x.shape[0]:
            got = None if context is None else context.shape
            raise ValueError(f"{name}: cross-attention needs context of shape "
                             f"({x.shape[0]}, S, {d}), got {got}")
        kv = self._heads(self.kv(context))  # (B, 2 nkv, S, hd)
        return q, kv[:, :nkv], kv[:, nkv:]

    # --8<-- [start:heads]
    def _heads(self, t: Tensor) -> Tensor:
        """`(B, T, n hd) -> (B, n, T, hd)`: the channels of each head become its own matrix."""
        B, T, width = t.shape
        return t.view(B, T, width // self.head_dim, self.head_dim).transpose(1, 2)
    # --8<-- [end:heads]

    def _padding(self, key_padding_mask: Mask | None, B: int, S: int) -> np.ndarray | None:
        """`key_padding_mask` as a bool array `(B, S)`, checked."""
        if key_padding_mask is None:
            return None
        pad = np.asarray(key_padding_mask.data if isinstance(key_padding_mask, Tensor)
                         else key_padding_mask)
        if pad.dtype != np.bool_ or pad.shape != (B, S):
            raise ValueError(f"MultiHeadAttention: key_padding_mask must be bool of shape "
                             f"(B, S) = ({B}, {S}) with True at padding, got {pad.dtype} "
                             f"{pad.shape}")
        return pad

    def _positions(self, positions: np.ndarray | None, B: int, S: int) -> np.ndarray | None:
        """`positions` as ints `(B, S)`, checked (self-attention only)."""
        if positions is None:
            return None
        positions = np.asarray(positions)
        if self.cross or positions.dtype.kind not in "iu" or positions.shape != (B, S):
            what = "cross-attention takes none" if self.cross else f"(B, S) = ({B}, {S}) ints"
            raise ValueError(f"MultiHeadAttention: positions must be {what}, got "
                             f"{positions.dtype} {positions.shape}")
        return positions

    def _mask(self, B: int, T: int, S: int, offset: int, pad: np.ndarray | None,
              attn_mask: Mask | None, positions: np.ndarray | None = None) -> Mask | None:
        r"""One `attn_mask` for `scaled_dot_product_attention` (the causal mask is passed as
        `is_causal`) from the padding `pad` `(B, S)`, `attn_mask` and ALiBi's bias at
        `positions`: bool True = may attend where only masks apply, float once a bias is
        involved."""
        name, shape = "MultiHeadAttention", (B, self.n_head, T, S)
        keep, bias = None, None
        # --8<-- [start:combine_masks]
        if pad is not None:
            keep = ~pad[:, None, None, :]  # (B, 1, 1, S): every head and query ignores padding
        if attn_mask is not None:
            mask = mask_array(name, "attn_mask", attn_mask, shape)
            if mask.dtype == np.bool_:
                # True = blocked here (torch.nn.MultiheadAttention), True = keep in SDPA
                keep = ~mask if keep is None else keep & ~mask  # (B, nh, T, S) when broadcast
            else:
                bias = mask
        if self.alibi is not None:
            alibi = self.alibi.bias(T, S, offset, positions)  # (nh, T, S) or (B, nh, T, S)
            bias = alibi if bias is None else bias + alibi
        if bias is None:
            return keep
        if keep is None:
            return bias
        return bias + np.where(keep, 0.0, -np.inf)  # a bool mask as an additive one
        # --8<-- [end:combine_masks]

    def extra_repr(self) -> str:
        kv = f", n_kv_head={self.n_kv_head}" if self.n_kv_head != self.n_head else ""
        return (f"d_model={self.d_model}, n_head={self.n_head}{kv}, causal={self.causal}, "
                f"cross={self.cross}, dropout={self.dropout}")
