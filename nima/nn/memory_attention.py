r"""Memory attention: local causal attention mixed, by a learned gate, with attention over a
bank of keys and values from earlier segments (Memorizing Transformers, Wu et al., 2022).

A segment's tokens attend causally to each other, as in any GPT layer. The same queries also
read the `MemoryBank`: either every entry (`top_k=None`) or, per query, only the $k$ entries
with the highest scores $\langle q, m_j\rangle$ — exact $k$-nearest-neighbour retrieval:

$$Y^\text{mem} = \operatorname{softmax}\bigl(q M_{\text{top-}k}^\top / \sqrt{d_h}\bigr)
V_{\text{top-}k}, \qquad Y = g_h\, Y^\text{mem} + (1 - g_h)\, Y^\text{local},
\quad g_h = \sigma(a_h),$$

one learned gate per head. After the read, the segment's own keys and values are written to the
bank (detached: no gradient reaches the past), so the next segment can retrieve them. The
selection of the top $k$ is a hard choice: the gradient flows through the scores of the chosen
entries, not through which ones were chosen. With an empty bank the layer is its local attention.

**Causality.** The bank holds only keys of earlier segments, and the local attention is causal,
so an output never depends on a later token.

**Decoding.** `MemoryCache` keeps a local `KVCache` of at most `block_size` tokens and a bank of
its own: when the local window is full, its keys and values move into the bank — the same
segment-by-segment schedule as training on consecutive segments of `block_size` tokens, so
generation can recall what left the context window. Its bank starts empty, independent of the
layer's training bank.

**Contrastive keys** (`contrastive=True`): in training, `aux_loss` holds the InfoNCE loss of
the segment's queries against their own keys, with the other keys of the segment and the bank's
keys as negatives (`nima.nn.contrastive.info_nce`); it makes each token's key the one its query
picks out, so a later query that resembles it retrieves it.
"""

from __future__ import annotations

import math

import numpy as np

from nima._tensor import Tensor
from nima.autograd import no_grad
from nima.nn.attention import KVCache, MultiHeadAttention, scaled_dot_product_attention
from nima.nn.cache import checked_rows
from nima.nn.contrastive import info_nce
from nima.nn.memory_bank import MemoryBank
from nima.nn.parameter import Parameter
from nima.ops.dropout import dropout
from nima.ops.elementwise import sigmoid
from nima.ops.nn import softmax
from nima.ops.shape import cat


class MemoryCache:
    """The decoding state of a `MemoryAttention` layer: the local window's keys and values
    (`local`, a `KVCache`) and the bank of `capacity` entries the full windows moved into
    (`bank`, None until then).
    """

    def __init__(self, capacity: int) -> None:
        self.local = KVCache()
        self.capacity = capacity
        self.bank: MemoryBank | None = None
        self.length = 0

    def reset(self) -> None:
        self.local.reset()
        self.bank = None
        self.length = 0

    def move_to_bank(self) -> None:
        """The local window's keys and values into the bank (made on first use); the window
        starts empty."""
        if self.local.length == 0:
            return
        k, v = self.local.keys, self.local.values  # (B, nh, n, hd): the filled positions
        if self.bank is None:
            B, nh, _, hd = k.shape
            self.bank = MemoryBank(self.capacity, nh, hd, B, dtype=k.dtype)
        self.bank.write(k, v)
        self.local.reset()

    def next_segment(self) -> None:
        """Start the next segment: the window moves to the bank, positions count from 0."""
        self.move_to_bank()
        self.length = 0

    def reorder(self, indices: np.ndarray) -> None:
        bank = None if self.bank is None else self.bank.keys.data
        held = [a for a in (self.local.k, bank) if a is not None]
        if held:  # the window, the bank, or both (the window is empty after next_segment)
            rows = checked_rows("MemoryCache", indices, held[0].shape[0])
            self.local.reorder(rows)
            if self.bank is not None:
                self.bank.reorder(rows)

    def __repr__(self) -> str:
        bank = 0 if self.bank is None else self.bank.size
        return f"MemoryCache(length={self.length}, local={self.local.length}, bank={bank})"


class MemoryAttention(MultiHeadAttention):
    r"""Causal self-attention plus a read of the memory bank, mixed per head by a gate.

    A `MultiHeadAttention(d_model, n_head, causal=True)` (its `qkv` and `proj`) plus `memory`
    (`MemoryBank(capacity, n_head, d_model // n_head, batch_size)`) and `gate_logit` $a$,
    Parameter `(n_head,)`, zeros at first ($g = 1/2$).

    Args:
        d_model: model width $d$.
        n_head: number of heads.
        block_size: the longest segment; decoding moves the local window to the bank every
            `block_size` tokens.
        capacity: entries per stream and head the bank keeps.
        batch_size: streams of the training bank.
        top_k: read only the $k$ best-scoring entries per query; None reads them all.
        contrastive: compute the InfoNCE `aux_loss` in training.
        temperature: $\tau$ of that loss.
        bias: biases in `qkv` and `proj`.
        dropout: dropout on the local and the memory attention weights in training.

    `write_memory` (True): whether a forward without a cache writes its keys and values to the
    bank; set it False to evaluate without changing the memory (e.g. in a gradient check).
    """

    def __init__(self, d_model: int, n_head: int, block_size: int, capacity: int, *,
                 batch_size: int = 1, top_k: int | None = None, contrastive: bool = False,
                 temperature: float = 0.1, bias: bool = True, dropout: float = 0.0) -> None:
        name = "MemoryAttention"
        if block_size < 1:
            raise ValueError(f"{name}: block_size must be >= 1, got {block_size}")
        if top_k is not None and top_k < 1:
            raise ValueError(f"{name}: top_k must be >= 1 (or None for all), got {top_k}")
        if temperature <= 0:
            raise ValueError(f"{name}: temperature must be > 0, got {temperature}")
        super().__init__(d_model, n_head, bias=bias, dropout=dropout, causal=True)
        self.block_size, self.top_k = block_size, top_k
        self.contrastive, self.temperature = contrastive, temperature
        self.memory = MemoryBank(capacity, n_head, self.head_dim, batch_size)
        self.gate_logit = Parameter(np.zeros(n_head, dtype=np.float32))  # (nh,)
        self.write_memory = True
        self.aux_loss: Tensor | None = None

    def new_cache(self, max_len: int | None = None) -> MemoryCache:
        """An empty decoding state, with a bank of its own; the window holds at most
        `block_size` tokens and the bank `capacity` entries, so `max_len` is not needed."""
        return MemoryCache(self.memory.capacity)

    # --8<-- [start:forward]
    def forward(self, x: Tensor, cache: MemoryCache | None = None) -> Tensor:
        """`x` `(B, T, d)` -> `(B, T, d)`. Without a cache `x` is one segment: it reads the
        bank, then (if `write_memory`) is written to it. With a cache, `x` holds the new
        tokens only."""
        if x.ndim != 3 or x.shape[-1] != self.d_model:
            raise ValueError(f"MemoryAttention: expected x of shape (B, T, {self.d_model}), "
                             f"got {x.shape}")
        if cache is not None:
            return self._decode(x, cache)
        if x.shape[0] != self.memory.keys.shape[0] or x.shape[1] > self.block_size:
            raise ValueError(f"MemoryAttention: expected a segment of batch_size="
                             f"{self.memory.keys.shape[0]} rows and at most block_size="
                             f"{self.block_size} tokens, got x of shape {x.shape}")
        q, k, v = self._project(x, None, None)  # (B, nh, T, hd) each
        local = scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=self._p())
        mem_k, mem_v = self.memory.read()  # (B, nh, M, hd) copies of the past, oldest first
        y = self._mix(q, local, mem_k, mem_v)  # (B, nh, T, hd)
        self.aux_loss = info_nce(q, k, mem_k, self.temperature) if (
            self.contrastive and self.training) else None
        if self.write_memory:
            self.memory.write(k, v)  # after the read: the next segment's past
        B, T, C = x.shape
        return self.proj(y.transpose(1, 2).reshape(B, T, C))  # (B, T, C)
    # --8<-- [end:forward]

    # --8<-- [start:mix]
    def _mix(self, q: Tensor, local: Tensor, mem_k: np.ndarray, mem_v: np.ndarray) -> Tensor:
        r"""$g_h Y^\text{mem} + (1 - g_h) Y^\text{local}$; just $Y^\text{local}$ if the bank
        is empty."""
        if mem_k.shape[2] == 0:
            return local
        if self.top_k is None or self.top_k >= mem_k.shape[2]:  # every entry
            memory = scaled_dot_product_attention(q, Tensor(mem_k), Tensor(mem_v),
                                                  dropout_p=self._p())
        else:
            memory = self._top_k(q, mem_k, mem_v)
        g = sigmoid(self.gate_logit).reshape(self.n_head, 1, 1)  # (nh, 1, 1)
        return local + g * (memory - local)  # (B, nh, T, hd)
    # --8<-- [end:mix]

    # --8<-- [start:top_k]
    def _top_k(self, q: Tensor, mem_k: np.ndarray, mem_v: np.ndarray) -> Tensor:
        """Attention over the `top_k` best-scoring entries of each query."""
        B, nh, _, hd = q.shape
        with no_grad():  # which entries: a hard choice, no gradient
            scores = (q.detach() @ Tensor(mem_k).transpose(-2, -1)).data  # (B, nh, T, M)
        best = np.argpartition(-scores, self.top_k - 1, axis=-1)[..., :self.top_k]  # (B,nh,T,k)
        rows = np.arange(B)[:, None, None, None], np.arange(nh)[None, :, None, None]
        keys = Tensor(mem_k[(*rows, best)])  # (B, nh, T, k, hd): each query's own entries
        values = Tensor(mem_v[(*rows, best)])  # (B, nh, T, k, hd)
        s = (q.unsqueeze(3) @ keys.transpose(-2, -1)) * (1.0 / math.sqrt(hd))  # (B,nh,T,1,k)
        weights = dropout(softmax(s, dim=-1), self._p())  # (B, nh, T, 1, k)
        return (weights @ values).squeeze(3)  # (B, nh, T, hd)
    # --8<-- [end:top_k]

    def _decode(self, x: Tensor, cache: MemoryCache) -> Tensor:
        """The new tokens, cut where local windows end; a full window moves to the bank."""
        B, T, C = x.shape
        outs, i = [], 0
        while i < T:
            if cache.local.length == self.block_size:  # a segment is over
                cache.move_to_bank()
            n = min(T - i, self.block_size - cache.local.length)
            q, k, v = self._project(x[:, i:i + n], None, None)  # (B, nh, n, hd) each
            k_all, v_all = cache.local.append(k, v)  # (B, nh, window so far, hd)
            local = scaled_dot_product_attention(q, k_all, v_all, is_causal=True)
            empty = np.zeros((B, self.n_head, 0, self.head_dim), dtype=x.dtype)
            mem_k, mem_v = (empty, empty) if cache.bank is None else cache.bank.read()
            y = self._mix(q, local, mem_k, mem_v)  # (B, nh, n, hd)
            outs.append(self.proj(y.transpose(1, 2).reshape(B, n, C)))
            cache.length += n
            i += n
        return outs[0] if len(outs) == 1 else cat(outs, dim=1)

    def _p(self) -> float:
        return self.dropout if self.training else 0.0

    def extra_repr(self) -> str:
        return (f"d_model={self.d_model}, n_head={self.n_head}, block_size={self.block_size}, "
                f"capacity={self.memory.capacity}, top_k={self.top_k}, "
                f"contrastive={self.contrastive}")
