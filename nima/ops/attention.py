r"""Scaled dot-product attention, the stateless core of every attention layer.

$$\operatorname{Attention}(Q, K, V) = \operatorname{softmax}\!\left(\frac{Q K^\top}{\sqrt{d_k}}
+ M\right) V,$$

with $M$ a mask: $0$ where a query may look, $-\infty$ where it may not. It is three ops —
the scaled scores $s\,QK^\top$ (`Scores`, one op with its own two-product backward), a fused
softmax kernel, and the product with $V$ — plus a mask or dropout when asked for, so autograd
differentiates it with no attention-specific backward. The causal mask goes *inside* the
softmax kernel (`CausalSoftmax`): no mask array and no filled copy of the scores. Exported as
`F.scaled_dot_product_attention`; `nima.nn.attention` builds `MultiHeadAttention` on it.

**Masks follow `torch.nn.functional.scaled_dot_product_attention`:** a boolean `attn_mask` is
True where attention is *allowed*; a float `attn_mask` is added to the scores. A query that may
see no key at all has a row of $-\infty$ scores; the softmax kernels give such a row zeros, so
that query's output is the zero vector and its gradient is zero — where PyTorch gives NaN.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from nima import kernels
from nima._tensor import FLOAT_DTYPES, Tensor
from nima.autograd import Context, Function
from nima.ops.dropout import dropout
from nima.ops.elementwise import masked_fill
from nima.ops.linalg import batched_matmul
from nima.ops.nn import softmax
from nima.ops.operands import autocast_float32, autocast_lower, binary_operands

Mask = Any  # a bool or float np.ndarray, or a Tensor


def mask_array(op: str, name: str, mask: Mask, shape: tuple[int, ...]) -> Any:
    """`mask` as a bool array, or a float array/Tensor, checked to broadcast to `shape`."""
    array = mask if isinstance(mask, Tensor) else np.asarray(mask)
    kind = array.dtype.kind
    if kind not in "bf":
        raise TypeError(f"{op}: {name} must be bool (True = attend) or float (added to the "
                        f"scores), got {array.dtype} (shape {array.shape})")
    try:
        fits = np.broadcast_shapes(array.shape, shape) == shape
    except ValueError:
        fits = False
    if not fits:
        raise ValueError(f"{op}: {name} of shape {array.shape} does not broadcast to the "
                         f"attention scores' shape {shape} (..., Tq, Tk)")
    if kind == "b":
        return array.data if isinstance(array, Tensor) else array
    return array


# --8<-- [start:causal_mask]
def causal_mask(t_q: int, t_k: int) -> np.ndarray:
    """Bool `(t_q, t_k)`, True where query `i` may see key `j`: `j <= t_k - t_q + i`.

    With `t_q < t_k` (new queries after `t_k - t_q` cached keys) the diagonal is aligned to the
    end, so the last query sees every key. Example: `causal_mask(2, 3)` is
    `[[True, True, False], [True, True, True]]`.
    """
    return np.tri(t_q, t_k, t_k - t_q, dtype=bool)
# --8<-- [end:causal_mask]


# --8<-- [start:causal_softmax]
class CausalSoftmax(Function):
    r"""Softmax over the visible keys of each query, $j \le i + T_k - T_q$; 0 for the rest.

    Equal to `softmax(masked_fill(S, causal_mask(Tq, Tk) == False, -inf))`, but one fused
    kernel (`nima.kernels.attention`) that reads only each row's visible prefix and needs
    neither a mask array nor a filled copy of the scores. The backward is softmax's,
    $\bar S = y \odot (\bar y - \langle \bar y, y\rangle)$: hidden entries have $y = 0$,
    so their gradient is 0 with no mask either.
    """

    @staticmethod
    def forward(ctx: Context, scores: np.ndarray) -> np.ndarray:
        y = kernels.causal_softmax_forward(scores)  # (..., Tq, Tk)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray) -> np.ndarray:
        (y,) = ctx.saved_tensors
        return kernels.softmax_backward(y, grad)


def causal_softmax(scores: Tensor) -> Tensor:
    """Causal softmax of attention scores `(..., Tq, Tk)`, the diagonal aligned to the end."""
    if scores.ndim < 2 or scores.dtype not in FLOAT_DTYPES:
        raise ValueError(f"causal_softmax: expected float scores (..., Tq, Tk), got "
                         f"{scores.dtype} of shape {scores.shape}")
    return CausalSoftmax.apply(autocast_float32(scores))  # float32 inside nima.autocast
# --8<-- [end:causal_softmax]


# --8<-- [start:scores]
class Scores(Function):
    r"""$S = s\,Q K^\top$ over the last two axes, one op; $\bar Q = s\,\bar S K$,
    $\bar K = s\,\bar S^\top Q$ (each summed over the batch entries it was shared by)."""

    @staticmethod
    def forward(ctx: Context, q: np.ndarray, k: np.ndarray, scale: float) -> np.ndarray:
        scores = batched_matmul(q, k.swapaxes(-1, -2))  # (..., Tq, Tk), no copy of K^T
        scores *= scores.dtype.type(scale)
        ctx.save_for_backward(q, k)
        ctx.scale = scale
        return scores

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray) -> tuple[Any, Any, None]:
        q, k = ctx.saved_tensors
        need_q, need_k = ctx.needs_input_grad[:2]
        grad = grad * grad.dtype.type(ctx.scale)  # $s \bar S$
        gq = batched_matmul(grad, k) if need_q else None  # (..., Tq, d)
        gk = batched_matmul(grad.swapaxes(-1, -2), q) if need_k else None  # (..., Tk, d)
        return gq, gk, None
# --8<-- [end:scores]


def attention_scores(q: Tensor, k: Tensor, scale: float | None = None) -> Tensor:
    r"""$s\,Q K^\top$ for `q` `(..., Tq, d)` and `k` `(..., Tk, d)`: `(..., Tq, Tk)`, with
    $s = 1/\sqrt{d}$ unless `scale` is given."""
    q, k = binary_operands("attention_scores", autocast_lower(q), autocast_lower(k))
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else float(scale)
    return Scores.apply(q, k, scale)


# --8<-- [start:sdpa]
def scaled_dot_product_attention(
    q: Tensor, k: Tensor, v: Tensor, attn_mask: Mask | None = None, is_causal: bool = False,
    dropout_p: float = 0.0, need_weights: bool = False, scale: float | None = None,
    enable_gqa: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    r"""$\operatorname{softmax}(s\,Q K^\top + M)\,V$ for `q` `(..., Tq, d)`, `k` `(..., Tk, d)`,
    `v` `(..., Tk, dv)`, with $s = 1/\sqrt{d}$ (or `scale`); returns `(..., Tq, dv)`.

    As `torch.nn.functional.scaled_dot_product_attention`: a bool `attn_mask` is **True
    where a query may attend**, a float one is added to the scores (e.g. an ALiBi bias); it
    broadcasts to `(..., Tq, Tk)`. `is_causal` lets query `i` see keys `j <= Tk - Tq + i`
    (aligned to the end when `Tq < Tk`, as with a KV cache); unlike PyTorch it may be combined
    with `attn_mask`. `dropout_p` drops attention weights (pass 0 in evaluation).
    `enable_gqa`: `q` may have $g$ times as many heads (axis -3) as `k` and `v`; query heads
    $hg \dots hg + g - 1$ share key/value head $h$ (grouped-query attention). With
    `need_weights`, also returns the weights `(..., Tq, Tk)` before dropout. A query with no
    visible key gets a zero output (not NaN).

    Example: one query, two keys with scores 0 and $\ln 3$ (`q = [[1]]`, `k = [[0], [ln 3]]`,
    d = 1) and values `[[0], [4]]` give weights $[1/4, 3/4]$ and the output `[[3]]`.
    """
    group = _check_qkv(q, k, v, enable_gqa)
    t_q, t_k = q.shape[-2], k.shape[-2]
    shape = (*np.broadcast_shapes(q.shape[:-2], (*k.shape[:-3], q.shape[-3])
                                  if group > 1 else k.shape[:-2]), t_q, t_k)
    mask = None if attn_mask is None else mask_array(
        "scaled_dot_product_attention", "attn_mask", attn_mask, shape)
    if group > 1:
        kv_heads = (*q.shape[:-3], k.shape[-3], group * t_q)  # a group's queries side by side
        q = q.reshape((*kv_heads, q.shape[-1]))  # (..., h_kv, g Tq, d)
    scores = attention_scores(q, k, scale)  # (..., Tq, Tk): $S = s Q K^\top$
    if group > 1:
        scores = scores.reshape(shape)  # (..., h, Tq, Tk)
    if mask is not None and mask.dtype == np.bool_:
        scores = masked_fill(scores, ~mask, -np.inf)  # hidden keys: weight exactly 0
    elif mask is not None:
        scores = scores + mask  # $S + M$: an additive mask or bias
    # each row sums to 1, or is all 0 if it has no visible key
    weights = causal_softmax(scores) if is_causal else softmax(scores, dim=-1)  # (..., Tq, Tk)
    dropped = dropout(weights, dropout_p)
    if group > 1:
        dropped = dropped.reshape((*kv_heads, t_k))  # (..., h_kv, g Tq, Tk)
    out = dropped @ v  # (..., Tq, dv)
    if group > 1:
        out = out.reshape((*shape[:-1], v.shape[-1]))  # (..., h, Tq, dv)
    return (out, weights) if need_weights else out
# --8<-- [end:sdpa]


# --8<-- [start:causal_self_attention]
class CausalSelfAttention(Function):
    r"""$y = \operatorname{merge}_h\bigl(\operatorname{softmax}_\text{causal}(s\,Q_h K_h^\top)
    V_h\bigr)$ from the packed projection `qkv` `(B, T, 3C)`, one op: the fused kernel
    (`nima.kernels.causal_attention`) keeps the weights $P$ for the backward, which returns
    $\overline{\text{qkv}}$ in the same packed layout."""

    @staticmethod
    def forward(ctx: Context, qkv: np.ndarray, n_head: int, scale: float,
                rotary: tuple[np.ndarray, np.ndarray] | None) -> np.ndarray:
        y, p = kernels.causal_attention_forward(qkv, n_head, scale, rotary)
        ctx.save_for_backward(qkv, p)
        ctx.n_head, ctx.scale, ctx.rotary = n_head, scale, rotary
        return y

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray) -> tuple[Any, None, None, None]:
        qkv, p = ctx.saved_tensors
        return (kernels.causal_attention_backward(qkv, p, grad, ctx.n_head, ctx.scale,
                                                  ctx.rotary), None, None, None)


def causal_self_attention(qkv: Tensor, n_head: int, scale: float | None = None,
                          rotary: tuple[np.ndarray, np.ndarray] | None = None) -> Tensor:
    r"""Causal self-attention of `n_head` heads from `qkv` `(B, T, 3C)` — queries, keys and
    values side by side, head $h$ in columns $h d \dots (h+1) d - 1$ of each, $d = C/n_h$ —
    to `(B, T, C)`, the heads' outputs side by side; $s = 1/\sqrt{d}$ unless `scale` is given.
    `rotary = (cos, sin)`, each `(T, d/2)` (`RotaryEmbedding.tables`), rotates the queries and
    keys for their positions first, as RoPE does.

    Equal to splitting the heads out of `qkv` and calling
    `scaled_dot_product_attention(q, k, v, is_causal=True)`, then merging them: what
    `MultiHeadAttention` does with no mask, cache, dropout or ALiBi. Inside `nima.autocast` it
    computes in float32.
    """
    op = "causal_self_attention"
    if not isinstance(qkv, Tensor) or qkv.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{op}: qkv must be a float Tensor, got {type(qkv).__name__}"
                        f"{f' of {qkv.dtype}' if isinstance(qkv, Tensor) else ''}")
    if isinstance(n_head, bool) or not isinstance(n_head, int) or n_head < 1:
        raise ValueError(f"{op}: n_head must be a positive int, got {n_head!r}")
    if qkv.ndim != 3 or qkv.shape[-1] % (3 * n_head):
        raise ValueError(f"{op}: expected qkv of shape (B, T, 3 C) with C divisible by "
                         f"n_head={n_head}, got {qkv.shape}")
    qkv = autocast_float32(qkv)
    if qkv.dtype == np.float16:
        raise TypeError(f"{op}: float16 qkv outside nima.autocast; cast it to float32")
    scale = 1.0 / math.sqrt(qkv.shape[-1] // (3 * n_head)) if scale is None else float(scale)
    return CausalSelfAttention.apply(qkv, n_head, scale, rotary)
# --8<-- [end:causal_self_attention]


def _check_qkv(q: Tensor, k: Tensor, v: Tensor, enable_gqa: bool) -> int:
    """Check the operands; return $g$, the query heads per key/value head (1 without GQA)."""
    op = "scaled_dot_product_attention"
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{op}: {name} must be a Tensor, got {type(t).__name__}")
        if t.ndim < 2 or t.dtype not in FLOAT_DTYPES:
            raise ValueError(f"{op}: {name} must be a float tensor (..., T, d), got {t.dtype} "
                             f"of shape {t.shape}")
    shapes = f"q {q.shape}, k {k.shape}, v {v.shape}"
    if q.shape[-1] != k.shape[-1] or k.shape[-2] != v.shape[-2]:
        raise ValueError(f"{op}: expected q (..., Tq, d), k (..., Tk, d), v (..., Tk, dv); "
                         f"got {shapes}")
    group = 1
    if enable_gqa and q.ndim >= 3 and k.ndim >= 3 and q.shape[-3] != k.shape[-3]:
        if k.shape[-3] != v.shape[-3] or q.shape[-3] % k.shape[-3]:
            raise ValueError(f"{op}: with enable_gqa the query heads (axis -3) must be a "
                             f"multiple of the key/value heads; got {shapes}")
        group = q.shape[-3] // k.shape[-3]
    lead = (lambda t: t.shape[:-3]) if group > 1 else (lambda t: t.shape[:-2])
    try:
        np.broadcast_shapes(lead(q), lead(k), lead(v))
    except ValueError:
        raise ValueError(f"{op}: batch dimensions do not broadcast: {shapes}") from None
    return group
