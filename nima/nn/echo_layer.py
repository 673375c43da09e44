r"""The echo layer: a few state vectors carried from one segment to the next, read by every
token, rewritten after every segment through a learned gate.

A model that reads a long text in segments of `segment_size` tokens forgets everything before
the current segment. The echo layer keeps $S$ state vectors ("slots") $s \in \mathbb{R}^{S \times
d}$ per sequence stream and threads them through the segments:

1. **read** — every token of segment $n$ attends to the slots left by segments $< n$
   (cross-attention, queries from the tokens, keys and values from the slots):
   $y_t = \operatorname{MHA}(x_t;\, s_{n-1})$;
2. **write** — after the segment, the slots attend to its tokens to gather what is new,
   $u = \operatorname{MHA}(s_{n-1};\, h)$ (the attention pooling of the segment), and a learned
   gate decides, per slot and channel, how much of the old state to keep:

$$g = \sigma\bigl(W_g [s_{n-1}; u] + b_g\bigr), \qquad
s_n = g \odot s_{n-1} + (1 - g) \odot u.$$

The first segment after `reset()` reads the learned initial state `initial`. Tokens read only
the state of *earlier* segments, so the layer is causal. This is the state recurrence of
Transformer-XL (Dai et al., 2019; there the cached hidden states of the previous segment) and of
the Block-Recurrent Transformer (Hutchins et al., 2022; there too a gated state of a few vectors
written by cross-attention).

**Training** streams consecutive segments of the same sequences (row $b$ of every batch
continues row $b$ of the previous one, hence `batch_size` is fixed). The carried state stays in
the graph for `tbptt` segments, then is detached: truncated backpropagation through time. The
training loop sums the losses of those `tbptt` segments and calls `backward()` once; with
`tbptt=1` it may call it after every segment. No update is in place on anything the graph saved:
each segment makes a new state tensor, and the `state` buffer (in `state_dict`, so a checkpoint
resumes the stream) is a copy that no graph ever holds.

**Decoding** keeps the state and the open segment's tokens in an `EchoCache`; when a segment
fills up, the state is rewritten as in training, so generation carries context beyond
`segment_size`.
"""

from __future__ import annotations

import numpy as np

from nima._tensor import Tensor
from nima.nn import init
from nima.nn.attention import MultiHeadAttention
from nima.nn.cache import checked_rows
from nima.nn.linear import Linear
from nima.nn.module import Module
from nima.nn.parameter import Parameter
from nima.ops.elementwise import sigmoid
from nima.ops.shape import cat


class EchoCache:
    """The decoding state of an `EchoLayer`: the carried slots `(B, S, d)` (None: the initial
    ones) and the tokens `(B, n, d)` of the open segment."""

    def __init__(self) -> None:
        self.state: np.ndarray | None = None
        self.segment: np.ndarray | None = None
        self.length = 0

    def reset(self) -> None:
        self.state = self.segment = None
        self.length = 0

    def next_segment(self) -> None:
        """Count positions from 0 again for the next segment; the state carries over. The
        segment must be complete (its tokens already written into the state)."""
        if self.segment is not None:
            raise ValueError(f"EchoCache.next_segment: {self.segment.shape[1]} tokens of the "
                             f"open segment are not in the state yet (a segment ends after the "
                             f"layer's segment_size tokens)")
        self.length = 0

    def reorder(self, indices: np.ndarray) -> None:
        held = [a for a in (self.state, self.segment) if a is not None]
        if held:
            rows = checked_rows("EchoCache", indices, held[0].shape[0])
            self.state = None if self.state is None else self.state[rows]
            self.segment = None if self.segment is None else self.segment[rows]

    def __repr__(self) -> str:
        open_tokens = 0 if self.segment is None else self.segment.shape[1]
        return f"EchoCache(length={self.length}, open segment={open_tokens})"


class EchoLayer(Module):
    r"""State slots carried across segments: read by cross-attention, rewritten through a gate.

    Args:
        d_model: model width $d$.
        n_head: heads of the read and write attentions.
        segment_size: tokens per segment (the model's `block_size`); decoding rewrites the state
            every `segment_size` tokens.
        slots: $S$, the number of state vectors.
        batch_size: the number of parallel streams the training state holds.
        tbptt: detach the carried state every `tbptt` segments.
        bias: biases in the attentions and the gate.

    Parameters: `initial` `(S, d)` (drawn from $\mathcal N(0, 1)$), `read` and `write`
    (cross-attention `MultiHeadAttention`), `gate` (`Linear(2d, d)`). Buffers: `state`
    `(batch_size, S, d)` and `segments` (how many segments since `reset()`).
    """

    def __init__(self, d_model: int, n_head: int, segment_size: int, *, slots: int = 4,
                 batch_size: int = 1, tbptt: int = 1, bias: bool = True) -> None:
        super().__init__()
        name = "EchoLayer"
        for key, value in (("segment_size", segment_size), ("slots", slots),
                           ("batch_size", batch_size), ("tbptt", tbptt)):
            if value < 1:
                raise ValueError(f"{name}: {key} must be >= 1, got {value}")
        self.d_model, self.segment_size, self.slots = d_model, segment_size, slots
        self.batch_size, self.tbptt = batch_size, tbptt
        # the first segment's slots: N(0, 1), the scale of the normalised hidden states
        self.initial = init.normal_(Parameter(np.empty((slots, d_model), dtype=np.float32)))
        self.read = MultiHeadAttention(d_model, n_head, bias=bias, cross=True)
        self.write = MultiHeadAttention(d_model, n_head, bias=bias, cross=True)
        self.gate = Linear(2 * d_model, d_model, bias=bias)
        self.register_buffer("state", Tensor(np.zeros((batch_size, slots, d_model),
                                                      dtype=np.float32)))
        self.register_buffer("segments", Tensor(np.zeros((), dtype=np.int64)))
        self._carried: Tensor | None = None  # the state with its graph, until detached

    def reset(self) -> None:
        """Start new streams: the next segment reads the initial state."""
        self.state.data[...] = 0
        self.segments.data[...] = 0
        self._carried = None

    def new_cache(self, max_len: int | None = None) -> EchoCache:
        """An empty decoding state (independent of the training streams' `state`); it holds
        $S$ slots and at most one segment whatever the length, so `max_len` is not needed."""
        return EchoCache()

    # --8<-- [start:update]
    def update(self, s: Tensor, h: Tensor) -> Tensor:
        r"""The next state from slots `s` `(B, S, d)` and a segment's tokens `h` `(B, T, d)`:
        $s' = g \odot s + (1 - g) \odot u$ with $u$ what the slots read from `h`."""
        u = self.write(s, h)  # (B, S, d): each slot attends over the segment's tokens
        g = sigmoid(self.gate(cat([s, u], dim=-1)))  # (B, S, d): keep (1) or overwrite (0)
        return g * s + (1 - g) * u  # (B, S, d)
    # --8<-- [end:update]

    # --8<-- [start:forward]
    def forward(self, x: Tensor, cache: EchoCache | None = None) -> Tensor:
        """`x` `(B, T, d)`, one segment (or with a `cache`, the new tokens) -> what each token
        reads from the state, `(B, T, d)`; the state moves on to the end of the segment."""
        self._check(x, cache)
        if cache is not None:
            return self._decode(x, cache)
        s = self._carried_state()  # (B, S, d): written by the segments before this one
        y = self.read(x, s)  # (B, T, d): every token reads the past segments' state
        new = self.update(s, x)  # (B, S, d): a new tensor; nothing is written in place
        count = int(self.segments.data) + 1
        self._carried = None if count % self.tbptt == 0 else new  # truncate BPTT every k
        self.state.data[...] = new.data  # the checkpointed copy, never held by a graph
        self.segments.data[...] = count
        return y
    # --8<-- [end:forward]

    def _carried_state(self) -> Tensor:
        """The state the next segment reads: the initial slots after `reset()`, the graph's
        state within a `tbptt` window, else the buffer (e.g. just loaded from a checkpoint)."""
        if int(self.segments.data) == 0:
            return self._initial(self.batch_size)
        if self._carried is not None and np.array_equal(self._carried.data, self.state.data):
            return self._carried
        return Tensor(self.state.data.copy())

    def _initial(self, B: int) -> Tensor:
        return self.initial.unsqueeze(0).expand(B, self.slots, self.d_model)  # (B, S, d)

    def _decode(self, x: Tensor, cache: EchoCache) -> Tensor:
        """The new tokens, cut where segments end; each full segment rewrites the state."""
        B, T, _ = x.shape
        outs, i = [], 0
        while i < T:
            n = min(T - i, self.segment_size - cache.length % self.segment_size)
            piece = x[:, i:i + n]  # (B, n, d): tokens of the open segment
            s = self._initial(B) if cache.state is None else Tensor(cache.state)  # (B, S, d)
            outs.append(self.read(piece, s))
            cache.segment = piece.data if cache.segment is None else np.concatenate(
                [cache.segment, piece.data], axis=1)
            cache.length += n
            i += n
            if cache.length % self.segment_size == 0:  # the segment is complete
                cache.state = self.update(s, Tensor(cache.segment)).data
                cache.segment = None
        return outs[0] if len(outs) == 1 else cat(outs, dim=1)

    def _check(self, x: Tensor, cache: EchoCache | None) -> None:
        name = "EchoLayer"
        if x.ndim != 3 or x.shape[-1] != self.d_model:
            raise ValueError(f"{name}: expected x of shape (B, T, {self.d_model}), got {x.shape}")
        if cache is None and x.shape[0] != self.batch_size:
            raise ValueError(f"{name}: x has batch {x.shape[0]}, but the carried state holds "
                             f"batch_size={self.batch_size} streams")
        if cache is None and x.shape[1] > self.segment_size:
            raise ValueError(f"{name}: a segment has at most segment_size={self.segment_size} "
                             f"tokens, got x of shape {x.shape}")

    def extra_repr(self) -> str:
        return (f"d_model={self.d_model}, slots={self.slots}, segment_size={self.segment_size}, "
                f"batch_size={self.batch_size}, tbptt={self.tbptt}")
