r"""Tree attention with branch gating: every query sees its whole past through $O(bL)$ keys.

Cut the positions into chunks of $b$ tokens, chunks of $b$ chunks, and so on: a tree whose
level-$l$ nodes are the chunks $[jb^l, (j+1)b^l)$, each with a summary vector
(`nima.nn.hierarchical_pooling`). The past $[0, t]$ of query $t$ splits into disjoint pieces,
one per level, read off the base-$b$ digits of $t$:

- **level 0**: the tokens of its own leaf chunk up to itself, $\lfloor t/b\rfloor b \le s \le t$;
- **level $l \ge 1$**: the *completed siblings* of its level-$l$ chunk — the level-$l$ chunks $j$
  in the same level-$(l+1)$ chunk that end before $t$'s own level-$l$ chunk begins,
  $\lfloor j/b \rfloor = \lfloor t/b^{l+1} \rfloor$ and $j < \lfloor t/b^l \rfloor$.

Level $l$ offers at most $b - 1$ summaries ($b$ tokens at level 0). When the sequence fits in
the top node, $T \le b^{L+1}$, the levels $0..L$ cover the whole past, each position exactly
once, with at most $b + L(b-1)$ keys instead of $t + 1$: with $L = \lceil \log_b T\rceil - 1$
the cost is $O(T\, b \log_b T)$ time and memory instead of $O(T^2)$. This is the causal,
per-level form of the hierarchical attention of H-Transformer-1D (Zhu & Soricut, 2021).

Each level is its own attention head-wise, $Y_l = \operatorname{softmax}(Q K_l^\top/\sqrt{d_h}
+ M_l) V_l$, with the summaries' keys and values projected by the same $W_K, W_V$ as the tokens'.
**Branch gates** $g_{h,l}$ — learned, one per head and level — weigh the levels:

$$Y_h = \sum_{l=0}^{L} g_{h,l}\, Y_{h,l}, \qquad g_{h,l} = \sigma(a_{h,l}) \text{ (sigmoid)}
\quad\text{or}\quad g_{h,\cdot} = \operatorname{softmax}_{l \in \text{levels with keys}}
(a_{h,l}) \text{ (softmax)}.$$

A level without keys for a query (e.g. level 1 for $t < b$) gives it a zero output; the softmax
gate spreads its weight over the levels that have keys.

**Decoding.** A new token needs only the keys of its leaf chunk and of the open siblings at each
level: `TreeCache` keeps those — at most $b$ per level, whatever the position — and, when the
token completes a chunk, pools the chunk into a summary for the level above.
"""

from __future__ import annotations

import numpy as np

from nima._tensor import Tensor
from nima.nn.attention import KVCache, MultiHeadAttention, scaled_dot_product_attention
from nima.nn.cache import checked_rows
from nima.nn.hierarchical_pooling import POOLS, HierarchicalPooling
from nima.nn.parameter import Parameter
from nima.ops.elementwise import sigmoid
from nima.ops.nn import softmax
from nima.ops.shape import cat

__all__ = ["GATES", "TreeAttention", "TreeCache", "tree_levels", "tree_pattern"]

GATES = ("sigmoid", "softmax")


# --8<-- [start:tree_levels]
def tree_levels(block_size: int, chunk_size: int, levels: int | None = None,
                owner: str = "TreeAttention") -> int:
    r"""The number of levels $L$ above the tokens for which the tree covers `block_size`:
    $b^L < \text{block\_size} \le b^{L+1}$ (the whole past is reachable, and the top level is
    used), and at least 1. Derived when `levels` is None; otherwise checked, with an error
    naming the values.

    Example: `tree_levels(512, 16)` is 2 ($16^2 = 256 < 512 \le 4096$).
    """
    if chunk_size < 2:
        raise ValueError(f"{owner}: chunk_size must be >= 2, got {chunk_size}")
    if block_size < 2:
        raise ValueError(f"{owner}: block_size must be >= 2, got {block_size}")
    needed = 0
    while chunk_size ** (needed + 1) < block_size:
        needed += 1
    if levels is None:
        return max(needed, 1)
    if levels < 1:
        raise ValueError(f"{owner}: levels must be >= 1, got {levels}")
    if levels < needed:
        raise ValueError(f"{owner}: block_size={block_size} is larger than chunk_size ** "
                         f"(levels + 1) = {chunk_size} ** {levels + 1} = "
                         f"{chunk_size ** (levels + 1)}: queries could not reach the whole past; "
                         f"use levels={needed} or a larger chunk_size")
    if levels > max(needed, 1):
        raise ValueError(f"{owner}: levels={levels} with chunk_size={chunk_size} summarises "
                         f"chunks of {chunk_size ** levels} tokens, no shorter than "
                         f"block_size={block_size}: no query would see the top level; use "
                         f"levels={max(needed, 1)}")
    return levels
# --8<-- [end:tree_levels]


# --8<-- [start:tree_pattern]
def tree_pattern(length: int, chunk_size: int, levels: int) -> np.ndarray:
    r"""`(length, length)` ints: the level through which query $t$ sees key $s$, or -1.

    Query $t$ sees key $s \le t$ at the lowest level $l$ where they share a level-$(l+1)$
    chunk, $\lfloor s/b^{l+1}\rfloor = \lfloor t/b^{l+1}\rfloor$: as a token for $l = 0$, else
    inside the summary of $s$'s level-$l$ chunk. Example, $b = 2$: row $t = 5$ is
    `[2, 2, 2, 2, 0, 0, -1, ...]` — keys 0–3 through one level-2 summary, 4 and 5 as tokens.
    """
    t = np.arange(length)[:, None]  # (T, 1) queries
    s = np.arange(length)[None, :]  # (1, T) keys
    pattern = np.full((length, length), -1)
    for level in range(levels, -1, -1):  # lower levels overwrite: the lowest shared one wins
        same = (s // chunk_size ** (level + 1)) == (t // chunk_size ** (level + 1))
        pattern[same & (s <= t)] = level
    return pattern
# --8<-- [end:tree_pattern]


class TreeCache:
    """The decoding state of one `TreeAttention` layer: per level, the vectors and the keys and
    values of the open chunk's completed children (tokens at level 0, summaries above).

    `kv[l]` is a `KVCache` of at most $b$ keys `(B, nh, n, hd)`; `items[l]` `(B, n, C)` are the
    vectors they came from, which `HierarchicalPooling.pool` needs when the chunk completes.
    """

    def __init__(self, levels: int) -> None:
        self.kv = [KVCache() for _ in range(levels + 1)]
        self.items: list[np.ndarray | None] = [None] * (levels + 1)
        self.length = 0

    def push(self, level: int, item: np.ndarray, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Add children `(B, n, C)` with keys and values `(B, nh, n, hd)` to `level`; return
        the level's keys and values so far."""
        old = self.items[level]
        self.items[level] = item if old is None else np.concatenate([old, item], axis=1)
        return self.kv[level].append(k, v)

    def clear(self, level: int) -> None:
        """Forget `level`'s children (their chunk is complete, its summary is above)."""
        self.kv[level].reset()
        self.items[level] = None

    def reset(self) -> None:
        for level in range(len(self.kv)):
            self.clear(level)
        self.length = 0

    def reorder(self, indices: np.ndarray) -> None:
        filled = [item for item in self.items if item is not None]
        if filled:
            rows = checked_rows("TreeCache", indices, filled[0].shape[0])
            for kv in self.kv:
                kv.reorder(rows)
            self.items = [None if item is None else item[rows] for item in self.items]

    def __repr__(self) -> str:
        sizes = [kv.length for kv in self.kv]
        return f"TreeCache(length={self.length}, children per level={sizes})"


class TreeAttention(MultiHeadAttention):
    r"""Causal self-attention over the tree of chunk summaries, with per-head, per-level gates.

    A `MultiHeadAttention(d_model, n_head, causal=True)` — the same `qkv` and `proj`, so the
    parameter names match a dense layer's — plus `pool` (`HierarchicalPooling`) and
    `gate_logit` $a$, Parameter of shape `(n_head, levels + 1)`, zeros at first.

    Args:
        d_model: model width $d$.
        n_head: number of heads.
        block_size: the longest sequence (cached plus new tokens); with `chunk_size` it fixes
            `levels` (see `tree_levels`).
        chunk_size: $b$, children per node of the tree.
        levels: $L$; derived from `block_size` and `chunk_size` when None, else checked.
        pooling: `"mean"` or `"attention"` summaries (see `HierarchicalPooling`).
        gate: `"sigmoid"` (independent gates) or `"softmax"` (over the levels with keys).
        bias: biases in `qkv` and `proj`.
        dropout: dropout on each level's attention weights in training.
    """

    def __init__(self, d_model: int, n_head: int, block_size: int, *, chunk_size: int = 16,
                 levels: int | None = None, pooling: str = "mean", gate: str = "sigmoid",
                 bias: bool = True, dropout: float = 0.0) -> None:
        name = "TreeAttention"
        if gate not in GATES:
            raise ValueError(f"{name}: gate must be one of {', '.join(map(repr, GATES))}, "
                             f"got {gate!r}")
        if pooling not in POOLS:
            raise ValueError(f"{name}: pooling must be one of {', '.join(map(repr, POOLS))}, "
                             f"got {pooling!r}")
        levels = tree_levels(block_size, chunk_size, levels, name)
        super().__init__(d_model, n_head, bias=bias, dropout=dropout, causal=True)
        self.block_size, self.chunk_size, self.levels, self.gate = (
            block_size, chunk_size, levels, gate)
        self.pool = HierarchicalPooling(d_model, chunk_size, levels, pooling)
        self.gate_logit = Parameter(np.zeros((n_head, levels + 1), dtype=np.float32))

    def new_cache(self, max_len: int | None = None) -> TreeCache:
        """An empty decoding state for this layer. It holds at most $b$ children per level
        whatever the length, so `max_len` (the protocol's preallocation hint) is not needed."""
        return TreeCache(self.levels)

    def forward(self, x: Tensor, cache: TreeCache | None = None) -> Tensor:
        """`x` `(B, T, d)` -> `(B, T, d)`. With a `cache`, `x` holds only the new tokens, at
        positions `cache.length ...`, and the cache is updated."""
        start = 0 if cache is None else cache.length
        if x.ndim != 3 or start + x.shape[1] > self.block_size:
            raise ValueError(f"TreeAttention: expected x (B, T, {self.d_model}) with "
                             f"{start} cached + T <= block_size={self.block_size}, got "
                             f"{x.shape}")
        if cache is None or cache.length == 0:
            return self._full(x, cache)
        steps = [self._step(x[:, t:t + 1], cache) for t in range(x.shape[1])]
        return steps[0] if len(steps) == 1 else cat(steps, dim=1)

    # --8<-- [start:full]
    def _full(self, x: Tensor, cache: TreeCache | None) -> Tensor:
        """Every position at once, $O(T b L)$; fills an empty `cache` for decoding after."""
        B, T, C = x.shape
        b, nh, hd = self.chunk_size, self.n_head, self.head_dim
        q, k, v = self._project(x, None, None)  # (B, nh, T, hd) each
        Tp = -(-T // b) * b  # whole leaf chunks: the padded tail is future, never seen
        q, kp, vp = (_pad(t, Tp) for t in (q, k, v))  # (B, nh, Tp, hd)
        # level 0: causal attention inside each leaf chunk of b tokens
        leaf = scaled_dot_product_attention(
            q.view(B, nh, Tp // b, b, hd), kp.view(B, nh, Tp // b, b, hd),
            vp.view(B, nh, Tp // b, b, hd), is_causal=True, dropout_p=self._p())
        outs: list[Tensor | None] = [leaf.reshape(B, nh, Tp, hd)]
        pyramid = self.pool(x)  # [S_1, ..., S_L], S_l (B, T // b^l, C)
        summary_kv = []
        for level, summaries in enumerate(pyramid, start=1):
            if summaries.shape[1] == 0:  # no completed chunk this high up
                outs.append(None)
                continue
            k_l, v_l = self._summary_kv(summaries)  # (B, nh, T // b^l, hd) each
            summary_kv.append((level, summaries, k_l, v_l))
            outs.append(self._siblings(q, k_l, v_l, level))  # (B, nh, Tp, hd)
        y = self._combine(outs, np.arange(Tp))[:, :, :T]  # (B, nh, T, hd)
        if cache is not None:
            keep = T // b * b  # the open leaf chunk's tokens
            cache.push(0, x.data[:, keep:], k[:, :, keep:], v[:, :, keep:])
            for level, summaries, k_l, v_l in summary_kv:
                keep = summaries.shape[1] // b * b  # the open level-l chunk's children
                if keep < summaries.shape[1]:
                    cache.push(level, summaries.data[:, keep:], k_l[:, :, keep:],
                               v_l[:, :, keep:])
            cache.length = T
        return self.proj(y.transpose(1, 2).reshape(B, T, C))  # (B, T, C)
    # --8<-- [end:full]

    # --8<-- [start:siblings]
    def _siblings(self, q: Tensor, k: Tensor, v: Tensor, level: int) -> Tensor:
        r"""Level `level`'s attention for queries `q` `(B, nh, Tp, hd)` over the summaries'
        keys and values `(B, nh, n, hd)`: query $t$ sees the summaries $j$ of its level-$(l+1)$
        chunk with $j < \lfloor t/b^l \rfloor$. Queries are grouped by that chunk, so each
        group of $b^{l+1}$ queries meets only its own $b$ keys."""
        B, nh, Tp, hd = q.shape
        b, unit = self.chunk_size, self.chunk_size ** level
        span = unit * b  # queries per level-(l+1) chunk
        if Tp <= span:  # one chunk holds every query: its keys are all the summaries
            keep = (np.arange(Tp)[:, None] // unit) > np.arange(k.shape[2])  # (Tp, n)
            return scaled_dot_product_attention(q, k, v, attn_mask=keep, dropout_p=self._p())
        groups = -(-Tp // span)
        keep = (np.arange(span)[:, None] // unit) > np.arange(b)  # (span, b): same per group
        out = scaled_dot_product_attention(
            _pad(q, groups * span).view(B, nh, groups, span, hd),
            _pad(k, groups * b).view(B, nh, groups, b, hd),
            _pad(v, groups * b).view(B, nh, groups, b, hd), attn_mask=keep,
            dropout_p=self._p())  # (B, nh, groups, span, hd)
        return out.reshape(B, nh, groups * span, hd)[:, :, :Tp]
    # --8<-- [end:siblings]

    # --8<-- [start:step]
    def _step(self, x: Tensor, cache: TreeCache) -> Tensor:
        """One new token `(B, 1, d)` at position `cache.length`, from the cached children."""
        B, _, C = x.shape
        q, k, v = self._project(x, None, None)  # (B, nh, 1, hd) each
        k0, v0 = cache.push(0, x.data, k, v)  # its leaf chunk so far, itself included
        outs: list[Tensor | None] = [scaled_dot_product_attention(q, k0, v0)]
        for kv in cache.kv[1:]:  # the completed siblings at each level
            outs.append(None if kv.length == 0 else scaled_dot_product_attention(
                q, Tensor(kv.keys), Tensor(kv.values)))
        y = self._combine(outs, np.array([cache.length]))  # (B, nh, 1, hd)
        for level in range(self.levels):  # a full chunk becomes a summary one level up
            if cache.kv[level].length < self.chunk_size:
                break
            summary = self.pool.pool(Tensor(cache.items[level]), level + 1)  # (B, 1, C)
            cache.clear(level)
            cache.push(level + 1, summary.data, *self._summary_kv(summary))
        cache.length += 1
        return self.proj(y.transpose(1, 2).reshape(B, 1, C))  # (B, 1, C)
    # --8<-- [end:step]

    # --8<-- [start:combine]
    def _combine(self, outs: list[Tensor | None], positions: np.ndarray) -> Tensor:
        r"""$\sum_l g_{h,l} Y_l$ over the levels' outputs `(B, nh, T, hd)` (None: no keys)."""
        if self.gate == "sigmoid":
            gates = sigmoid(self.gate_logit).unsqueeze(1)  # (nh, 1, L+1)
        else:  # softmax over the levels that hold keys for each position
            digits = positions[:, None] // self.chunk_size ** np.arange(self.levels + 1)
            has_keys = (digits % self.chunk_size > 0) | (np.arange(self.levels + 1) == 0)
            mask = np.where(has_keys, 0.0, -np.inf)  # (T, L+1)
            gates = softmax(self.gate_logit.unsqueeze(1) + mask, dim=-1)  # (nh, T, L+1)
        y = None
        for level, out in enumerate(outs):
            if out is not None:
                term = gates[:, :, level].unsqueeze(-1) * out  # (B, nh, T, hd)
                y = term if y is None else y + term
        return y
    # --8<-- [end:combine]

    def _summary_kv(self, summaries: Tensor) -> tuple[Tensor, Tensor]:
        """Keys and values `(B, nh, n, hd)` of summaries `(B, n, d)`, with the tokens' $W_K$,
        $W_V$ (the last two thirds of `qkv`)."""
        d = self.d_model
        kv = summaries @ self.qkv.weight[d:].T  # (B, n, 2d)
        if self.qkv.bias is not None:
            kv = kv + self.qkv.bias[d:]
        k, v = kv.split(d, dim=2)  # (B, n, d) each
        return self._heads(k), self._heads(v)

    def _p(self) -> float:
        return self.dropout if self.training else 0.0

    def extra_repr(self) -> str:
        return (f"d_model={self.d_model}, n_head={self.n_head}, block_size={self.block_size}, "
                f"chunk_size={self.chunk_size}, levels={self.levels}, gate={self.gate!r}, "
                f"dropout={self.dropout}")


def _pad(t: Tensor, size: int) -> Tensor:
    """`t` `(..., n, d)` with zero rows appended along axis -2 up to `size`."""
    n = t.shape[-2]
    if n == size:
        return t
    zeros = Tensor(np.zeros((*t.shape[:-2], size - n, t.shape[-1]), dtype=t.dtype))
    return cat([t, zeros], dim=-2)

