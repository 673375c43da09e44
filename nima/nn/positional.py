r"""Position information for attention: sinusoidal, learned, rotary (RoPE) and ALiBi.

Attention by itself is blind to order: permute the tokens and every output is permuted the same
way. The four schemes here tell it where each token sits, in two different places:

| scheme | where | what |
|---|---|---|
| `SinusoidalPositionalEncoding` | added to the embeddings | fixed sines and cosines |
| `LearnedPositionalEmbedding` | added to the embeddings | a learned row per position |
| `RotaryEmbedding` | $q$ and $k$, every layer | rotate pairs of dims by angles |
| `ALiBi` | the attention scores | a per-head penalty linear in distance |

Every `forward`/`bias` takes an `offset`: the position of the first row, so that a KV cache
(`nima.nn.attention.KVCache`) decoding token $t$ gets position $t$, not 0 — or, for a padded
batch, `positions`: each token's own position, counted over the real tokens of its row
(`positions_from_padding`).
"""

from __future__ import annotations

import math

import numpy as np

from nima._tensor import Tensor
from nima.autograd import Context, Function
from nima.kernels.rotation import rotate_pairs
from nima.nn import init
from nima.nn.module import Module
from nima.nn.parameter import Parameter
from nima.ops.nn import embedding
from nima.ops.shape import narrow


def _check_span(name: str, length: int, offset: int, max_len: int) -> None:
    if length < 0 or offset < 0 or offset + length > max_len:
        raise ValueError(f"{name}: positions {offset}..{offset + length - 1} (length {length}, "
                         f"offset {offset}) do not fit in max_len={max_len}")


def _check_positions(name: str, positions: np.ndarray, length: int, max_len: int) -> np.ndarray:
    """`positions` as an int array `(..., length)` of values in `[0, max_len)`."""
    positions = np.asarray(positions)
    if positions.dtype.kind not in "iu" or positions.ndim < 1 or positions.shape[-1] != length:
        raise ValueError(f"{name}: positions must be integers of shape (..., {length}), got "
                         f"{positions.dtype} {positions.shape}")
    if positions.size and (positions.min() < 0 or positions.max() >= max_len):
        raise ValueError(f"{name}: positions {positions.min()}..{positions.max()} do not fit "
                         f"in max_len={max_len}")
    return positions


# --8<-- [start:positions_from_padding]
def positions_from_padding(padding: np.ndarray) -> np.ndarray:
    r"""The position of every token of a padded batch, from its padding mask `(B, S)` (True at
    padding): the number of real tokens before it in its row,

    $$p_{b,s} = \max\Bigl(0,\ \sum_{s' \le s} [\text{real}_{b,s'}] - 1\Bigr),$$

    so a row's first real token sits at 0 wherever its padding put it, and each row gets the
    positions it would have alone (Hugging Face's `attention_mask.cumsum(-1) - 1`). Padding
    takes the position of the real token before it (0 before any): any position would do, as
    no query attends to it.

    Example: left padding `[[True, True, False, False]]` gives `[[0, 0, 0, 1]]`; right padding
    `[[False, False, True]]` gives `[[0, 1, 1]]`.
    """
    return np.maximum(np.cumsum(~padding, axis=-1) - 1, 0)  # (B, S)
# --8<-- [end:positions_from_padding]


# --8<-- [start:sinusoidal_table]
def sinusoidal_table(max_len: int, d_model: int) -> np.ndarray:
    r"""The table of "Attention Is All You Need", shape `(max_len, d_model)`, float64:

    $$PE_{p,\,2i} = \sin\!\left(\frac{p}{10000^{2i/d}}\right), \qquad
    PE_{p,\,2i+1} = \cos\!\left(\frac{p}{10000^{2i/d}}\right).$$

    Column pair $(2i, 2i+1)$ is a clock hand turning at frequency $\omega_i = 10000^{-2i/d}$:
    wavelengths run from $2\pi$ (first pair) to $2\pi \cdot 10000$ (last). An odd `d_model` gets
    a final sine column without its cosine.
    """
    p = np.arange(max_len, dtype=np.float64)[:, None]  # (max_len, 1)
    omega = 10000.0 ** (-np.arange(0, d_model, 2, dtype=np.float64) / d_model)  # (ceil(d/2),)
    angles = p * omega  # (max_len, ceil(d/2))
    table = np.empty((max_len, d_model))
    table[:, 0::2] = np.sin(angles)
    table[:, 1::2] = np.cos(angles[:, : d_model // 2])
    return table
# --8<-- [end:sinusoidal_table]


class SinusoidalPositionalEncoding(Module):
    """Fixed sinusoidal positions, added to the token embeddings; nothing to learn.

    The table is a non-persistent buffer (rebuilt from the formula, so it stays out of
    `state_dict()`); `.double()` casts it with the model.
    """

    def __init__(self, max_len: int, d_model: int) -> None:
        super().__init__()
        self.max_len, self.d_model = max_len, d_model
        table = sinusoidal_table(max_len, d_model).astype(np.float32)
        self.register_buffer("pe", Tensor(table), persistent=False)  # (max_len, d_model)

    def forward(self, length: int, offset: int = 0,
                positions: np.ndarray | None = None) -> Tensor:
        """Rows `offset .. offset + length - 1` of the table: `(length, d_model)`; or, given
        `positions` `(B, length)` ints, row `positions[b, t]` for each: `(B, length, d_model)`."""
        name = "SinusoidalPositionalEncoding"
        if positions is not None:
            positions = _check_positions(name, positions, length, self.max_len)
            return Tensor(self.pe.data[positions])  # (B, length, d_model)
        _check_span(name, length, offset, self.max_len)
        return Tensor(self.pe.data[offset:offset + length])  # (length, d_model)

    def extra_repr(self) -> str:
        return f"max_len={self.max_len}, d_model={self.d_model}"


# --8<-- [start:learned]
class LearnedPositionalEmbedding(Module):
    r"""One learned vector per position (GPT-2's `wpe`), initialised $\mathcal N(0, 0.02^2)$.

    Unlike the sinusoidal table it cannot extrapolate: position `max_len` has no row.
    """

    def __init__(self, max_len: int, d_model: int) -> None:
        super().__init__()
        self.max_len, self.d_model = max_len, d_model
        self.weight = Parameter(np.empty((max_len, d_model), dtype=np.float32), decay=False)
        init.normal_(self.weight, 0.0, 0.02)

    def forward(self, length: int, offset: int = 0,
                positions: np.ndarray | None = None) -> Tensor:
        """Rows `offset .. offset + length - 1` of `weight`: `(length, d_model)`; or, given
        `positions` `(B, length)` ints, row `positions[b, t]` for each: `(B, length, d_model)`."""
        name = "LearnedPositionalEmbedding"
        if positions is not None:
            positions = _check_positions(name, positions, length, self.max_len)
            return embedding(positions, self.weight)  # (B, length, d_model)
        _check_span(name, length, offset, self.max_len)
        return narrow(self.weight, 0, offset, length)  # (length, d_model)
# --8<-- [end:learned]

    def extra_repr(self) -> str:
        return f"max_len={self.max_len}, d_model={self.d_model}"


# --8<-- [start:rotate]
class Rotate(Function):
    r"""Rotate pairs of dims: with $x = (x_1, x_2)$ the two halves of the last axis,

    $$\operatorname{rot}_\theta(x) = (x_1 \cos\theta - x_2 \sin\theta,\;
    x_1 \sin\theta + x_2 \cos\theta).$$

    A rotation is orthogonal, $R_\theta^\top = R_{-\theta}$, so the vector–Jacobian product
    is the rotation back: $\bar x = R_{-\theta}\,\bar y$ — the same code with $\sin$ negated.
    """

    @staticmethod
    def forward(ctx: Context, x: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
        ctx.save_for_backward(cos, sin)
        return rotate_pairs(x, cos, sin)

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray) -> tuple[np.ndarray, None, None]:
        cos, sin = ctx.saved_tensors
        return rotate_pairs(grad, cos, -sin), None, None
# --8<-- [end:rotate]


# --8<-- [start:rope]
class RotaryEmbedding(Module):
    r"""Rotary position embedding (RoPE, Su et al. 2021), applied to queries and keys.

    Dimension $i$ of the first half of each head is paired with dimension $i + d/2$ (the
    GPT-NeoX / LLaMA layout), and the pair at position $p$ is rotated by the angle

    $$\theta_{p,i} = p\,\omega_i, \qquad \omega_i = \text{base}^{-2i/d}, \quad i < d/2.$$

    Rotating $q$ at position $m$ and $k$ at position $n$ leaves their dot product a function of
    $m - n$ only: $\langle R_m q, R_n k\rangle = \langle q, R_{n-m} k\rangle$ — relative
    positions, with nothing added to the embeddings. `cos`/`sin` are computed once for
    `max_len` positions and kept as non-persistent buffers, in float64 (exact angles for a
    float64 gradient check; `forward` casts the rows it uses to the input's dtype).
    """

    def __init__(self, head_dim: int, max_len: int, base: float = 10000.0) -> None:
        super().__init__()
        if head_dim % 2:
            raise ValueError(f"RotaryEmbedding: head_dim must be even (dims rotate in pairs), "
                             f"got {head_dim}")
        self.head_dim, self.max_len, self.base = head_dim, max_len, base
        # --8<-- [start:rope_angles]
        omega = base ** (-np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)  # (hd/2,)
        angles = np.arange(max_len, dtype=np.float64)[:, None] * omega  # (max_len, hd/2)
        # --8<-- [end:rope_angles]
        self.register_buffer("cos", Tensor(np.cos(angles)), persistent=False)  # (max_len, hd/2)
        self.register_buffer("sin", Tensor(np.sin(angles)), persistent=False)  # (max_len, hd/2)

    def forward(self, x: Tensor, offset: int = 0, positions: np.ndarray | None = None) -> Tensor:
        """`x` `(B, nh, T, hd)` (any leading dims) rotated for positions `offset .. offset+T-1`,
        or, given `positions` `(B, T)` ints, row `b`'s token `t` for position `positions[b, t]`
        (the same for every head; `x` then `(B, nh, T, hd)`)."""
        name = "RotaryEmbedding"
        if x.ndim < 2 or x.shape[-1] != self.head_dim:
            raise ValueError(f"{name}: expected input (..., T, {self.head_dim}), got {x.shape}")
        length = x.shape[-2]
        if positions is not None:
            positions = _check_positions(name, positions, length, self.max_len)
            if x.ndim != 4 or positions.shape != (x.shape[0], length):
                raise ValueError(f"{name}: positions {positions.shape} need x of shape "
                                 f"(B, nh, T, hd) = ({positions.shape[0]}, nh, {length}, "
                                 f"{self.head_dim}), got {x.shape}")
            cos = self.cos.data[positions][:, None]  # (B, 1, T, hd/2): every head alike
            sin = self.sin.data[positions][:, None]  # (B, 1, T, hd/2)
        else:
            cos, sin = self.tables(length, offset)  # (T, hd/2) each
        return Rotate.apply(x, cos.astype(x.dtype, copy=False), sin.astype(x.dtype, copy=False))

    def tables(self, length: int, offset: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """`cos`, `sin` `(length, hd/2)` of the angles of positions `offset .. offset+length-1`
        (float64); an error names the positions past `max_len`."""
        _check_span("RotaryEmbedding", length, offset, self.max_len)
        return self.cos.data[offset:offset + length], self.sin.data[offset:offset + length]
    # --8<-- [end:rope]

    def extra_repr(self) -> str:
        return f"head_dim={self.head_dim}, max_len={self.max_len}, base={self.base}"


# --8<-- [start:alibi_slopes]
def alibi_slopes(n_head: int) -> np.ndarray:
    r"""The paper's per-head slopes (Press et al. 2022), shape `(n_head,)`.

    For $n$ a power of two, the geometric sequence starting at $2^{-8/n}$ with that ratio:
    $m_h = 2^{-8h/n}$, $h = 1 \dots n$ — for 8 heads $\tfrac12, \tfrac14, \dots, \tfrac1{256}$.
    Otherwise, with $n_0$ the largest power of two below $n$: the $n_0$ slopes for $n_0$
    heads, then every other slope of the sequence for $2 n_0$ heads, until there are $n$.

    Example: 6 heads give the 4-head slopes $2^{-2}, 2^{-4}, 2^{-6}, 2^{-8}$, then $2^{-1}, 2^{-3}$
    (the 8-head slopes the 4-head sequence skips).
    """
    def power_of_two(n: int) -> list[float]:
        return [2.0 ** (-8.0 * h / n) for h in range(1, n + 1)]

    n0 = 2 ** math.floor(math.log2(n_head))
    extra = power_of_two(2 * n0)[0::2][: n_head - n0]
    return np.array(power_of_two(n0) + extra)
# --8<-- [end:alibi_slopes]


class ALiBi(Module):
    r"""Attention with Linear Biases: no position embeddings at all; instead head $h$ adds

    $$b_{h,i,j} = -m_h\,(i - j)$$

    to the score of query position $i$ for key position $j$ — a penalty growing linearly with
    distance, steep for the first heads (local) and gentle for the last (long range). Made for
    causal attention, where $j \le i$; without the causal mask keys in the future would get a
    bonus instead. Nothing is learned, so `slopes` is a plain array.
    """

    def __init__(self, n_head: int) -> None:
        super().__init__()
        if n_head < 1:
            raise ValueError(f"ALiBi: n_head must be positive, got {n_head}")
        self.n_head = n_head
        self.slopes = alibi_slopes(n_head)  # (n_head,)

    # --8<-- [start:alibi_bias]
    def bias(self, t_q: int, t_k: int, offset: int = 0,
             positions: np.ndarray | None = None) -> np.ndarray:
        """Additive score bias `(n_head, t_q, t_k)`, float64; query `i` sits at `offset + i`.
        Given `positions` `(B, t_k)`, the position of every key (the queries are the last
        `t_q` of them, as with a KV cache): `(B, n_head, t_q, t_k)`."""
        if positions is not None:
            positions = np.asarray(positions)
            if positions.ndim != 2 or positions.shape[1] != t_k or t_q > t_k:
                raise ValueError(f"ALiBi: positions must be (B, t_k) = (B, {t_k}) with t_q = "
                                 f"{t_q} <= t_k, got {positions.shape}")
            distance = positions[:, -t_q:, None] - positions[:, None, :]  # (B, t_q, t_k)
            return -self.slopes[:, None, None] * distance[:, None]  # (B, n_head, t_q, t_k)
        query_pos = offset + np.arange(t_q)[:, None]  # (t_q, 1)
        key_pos = np.arange(t_k)[None, :]  # (1, t_k)
        return -self.slopes[:, None, None] * (query_pos - key_pos)  # (n_head, t_q, t_k)
    # --8<-- [end:alibi_bias]

    def extra_repr(self) -> str:
        return f"n_head={self.n_head}"
