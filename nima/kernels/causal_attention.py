r"""Causal self-attention from the packed projection, forward and backward, fused.

A GPT block's attention projects $x$ to one array `qkv` `(B, T, 3C)`: queries in columns
$[0, C)$, keys in $[C, 2C)$, values in $[2C, 3C)$, head $h$ in columns $h d \dots (h+1) d - 1$
of each, $d = C / n_h$. For every batch row and head, with $s = 1/\sqrt{d}$:

$$S = s\,Q K^\top, \qquad P_{ij} = \frac{e^{S_{ij}}}{\sum_{j' \le i} e^{S_{ij'}}}
\;(j \le i), \quad P_{ij} = 0 \;(j > i), \qquad O = P V,$$

and the heads' outputs $O$ side by side are `y` `(B, T, C)`. With rotary position embedding, $Q$
and $K$ are first rotated for their positions (`nima.kernels.rotation`; `cos`, `sin` `(T, d/2)`),
and their gradients rotated back at the end. The backward, from $\bar O$ (the head's columns of
$\bar y$):

$$\bar V = P^\top \bar O, \quad \bar P = \bar O V^\top, \quad
\bar S_{ij} = P_{ij}\Bigl(\bar P_{ij} - \sum_{j'} P_{ij'} \bar P_{ij'}\Bigr), \quad
\bar Q = s\,\bar S K, \quad \bar K = s\,\bar S^\top Q,$$

written into the same columns of $\overline{\text{qkv}}$. It is exactly what
`scaled_dot_product_attention(q, k, v, is_causal=True)` computes on the heads split out of `qkv`
(the NumPy reference does it that way); one op instead of the split, the transposes, the scores,
the causal softmax, the product with $V$ and the merge, each with its own pass, copy and node.

**The numba kernel** runs one `prange` task per (batch row, head). A task copies its head's
$Q, K, V$ into small contiguous buffers ($K^\top$ forward and $V^\top$ backward, so that a row
of scores is a vector loop over keys), computes the scores of query $i$ over its $i + 1$
visible keys only — half the products of the square — takes their softmax with the causal
softmax's row function, and accumulates $O_i = \sum_{j \le i} P_{ij} V_j$ — four channels or
four keys per sweep, as the matrix product's tile takes four steps of $k$ at a time. $P$ is
kept for the backward, which walks the same triangle. So a NaN reaches exactly what depends on
it: the outputs are NaN where the reference's are, but where the reference's full products
meet a NaN query with the zero weights after the diagonal, $0 \cdot \text{NaN}$ also makes the
gradients of keys that query never saw NaN; here they stay finite. Everything a task touches
fits in the L1 and L2 caches at the baby GPT's $T = 64$, $d = 32$.
"""

import numpy as np
from numba import njit, prange

from nima.kernels.attention import causal_softmax_forward_numpy, causal_softmax_row
from nima.kernels.rotation import rotate_pairs
from nima.kernels.rows import ROW_FASTMATH
from nima.kernels.softmax import softmax_backward_numpy
from nima.kernels.threads import PRODUCT, launch, parallel_kernel


def _split_numpy(x: np.ndarray, n_head: int) -> np.ndarray:
    """`(B, T, n_head d)` -> `(B, n_head, T, d)`, a view."""
    b, t, width = x.shape
    return x.reshape(b, t, n_head, width // n_head).transpose(0, 2, 1, 3)


def _merge_numpy(o: np.ndarray) -> np.ndarray:
    """`(B, n_head, T, d)` -> `(B, T, n_head d)`."""
    b, n_head, t, d = o.shape
    return np.ascontiguousarray(o.transpose(0, 2, 1, 3)).reshape(b, t, n_head * d)


def _heads_numpy(qkv: np.ndarray, n_head: int, cos: np.ndarray,
                 sin: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """q, k (rotated, if `cos` has rows) and v, each `(B, n_head, T, d)`."""
    q, k, v = (_split_numpy(x, n_head) for x in np.split(qkv, 3, axis=-1))
    if len(cos):
        q, k = rotate_pairs(q, cos, sin), rotate_pairs(k, cos, sin)
    return q, k, v


# --8<-- [start:causal_attention_numpy]
def causal_attention_forward_numpy(qkv: np.ndarray, n_head: int, scale: float, cos: np.ndarray,
                                   sin: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`(y (B, T, C), P (B, n_head, T, T))` from `qkv` `(B, T, 3C)`; queries and keys rotated
    by `cos`, `sin` `(T, d/2)` unless they have no rows (NumPy reference)."""
    q, k, v = _heads_numpy(qkv, n_head, cos, sin)
    p = causal_softmax_forward_numpy((q @ k.swapaxes(-1, -2)) * qkv.dtype.type(scale), 0)
    return _merge_numpy(p @ v), p


def causal_attention_backward_numpy(qkv: np.ndarray, p: np.ndarray, dy: np.ndarray,
                                    n_head: int, scale: float, cos: np.ndarray,
                                    sin: np.ndarray) -> np.ndarray:
    r"""$\overline{\text{qkv}}$ `(B, T, 3C)` from $P$ and $\bar y$ (NumPy reference)."""
    q, k, v = _heads_numpy(qkv, n_head, cos, sin)
    do = _split_numpy(dy, n_head)
    dv = p.swapaxes(-1, -2) @ do
    ds = softmax_backward_numpy(p, do @ v.swapaxes(-1, -2)) * qkv.dtype.type(scale)
    dq, dk = ds @ k, ds.swapaxes(-1, -2) @ q
    if len(cos):  # the rotation's transpose: the same rotation, backwards
        dq, dk = rotate_pairs(dq, cos, -sin), rotate_pairs(dk, cos, -sin)
    return np.concatenate([_merge_numpy(dq), _merge_numpy(dk), _merge_numpy(dv)], axis=-1)
# --8<-- [end:causal_attention_numpy]


# --8<-- [start:causal_attention_forward_numba]
@njit(cache=True)
def _head_columns(task: int, n_head: int, width: int) -> tuple[int, int, int, int, int, int]:
    """Task `task`'s batch row and head, the first columns of its head's queries, keys and
    values in `qkv` (width `3C`), and the head size `d`."""
    c = width // 3
    d = c // n_head
    h = task % n_head
    return task // n_head, h, h * d, c + h * d, 2 * c + h * d, d


@njit(cache=True, fastmath=ROW_FASTMATH)
def _rotated_copy(x: np.ndarray, cos: np.ndarray, sin: np.ndarray, inverse: bool,
                  out: np.ndarray) -> None:
    """`out` = `x` `(T, d)`, each row's pairs rotated by its angles (by minus them if
    `inverse`), or a plain copy if `cos` has no rows."""
    t, d = x.shape
    if cos.shape[0] == 0:
        out[:, :] = x
        return
    half = d // 2
    for j in range(t):
        for c in range(half):
            cs, sn = cos[j, c], -sin[j, c] if inverse else sin[j, c]
            a, b = x[j, c], x[j, c + half]
            out[j, c] = a * cs - b * sn
            out[j, c + half] = a * sn + b * cs


@njit(cache=True, fastmath=ROW_FASTMATH)
def _head_forward(q: np.ndarray, k: np.ndarray, v: np.ndarray, cos: np.ndarray,
                  sin: np.ndarray, scale: float, p: np.ndarray, o: np.ndarray) -> None:
    """One head: `p` `(T, T)` and `o` `(T, d)` from its `q`, `k`, `v` `(T, d)` (any strides)."""
    t, d = q.shape
    qc, kc = np.empty((t, d), q.dtype), np.empty((t, d), q.dtype)
    _rotated_copy(q, cos, sin, False, qc)
    _rotated_copy(k, cos, sin, False, kc)
    vc = np.ascontiguousarray(v)
    kt = kc.T.copy()  # (d, T): a row of scores is a vector loop over keys
    s, out = np.empty(t, q.dtype), np.empty(d, q.dtype)
    d4 = d - d % 4
    for i in range(t):
        n = i + 1  # the keys query i sees
        s[:n] = 0
        for c in range(0, d4, 4):  # $S_{i,:n} = s \sum_c Q_{ic} K^\top_{c,:n}$: 4 channels a sweep
            a0, a1 = qc[i, c] * scale, qc[i, c + 1] * scale
            a2, a3 = qc[i, c + 2] * scale, qc[i, c + 3] * scale
            for j in range(n):
                s[j] += a0 * kt[c, j] + a1 * kt[c + 1, j] + a2 * kt[c + 2, j] + a3 * kt[c + 3, j]
        for c in range(d4, d):
            a = qc[i, c] * scale
            for j in range(n):
                s[j] += a * kt[c, j]
        causal_softmax_row(s, n, p[i])  # $P_{i,:}$, zeros after key i
        w = p[i]
        n4 = n - n % 4
        out[:] = 0
        for j in range(0, n4, 4):  # $O_i = \sum_{j \le i} P_{ij} V_j$: 4 keys a sweep
            w0, w1, w2, w3 = w[j], w[j + 1], w[j + 2], w[j + 3]
            for c in range(d):
                out[c] += w0 * vc[j, c] + w1 * vc[j + 1, c] + w2 * vc[j + 2, c] + w3 * vc[j + 3, c]
        for j in range(n4, n):
            for c in range(d):
                out[c] += w[j] * vc[j, c]
        o[i, :] = out


@parallel_kernel()
def _forward_heads(qkv: np.ndarray, n_head: int, scale: float, cos: np.ndarray,
                   sin: np.ndarray, p: np.ndarray, y: np.ndarray) -> None:
    """`prange` over (batch row, head); each task writes its head's `p` and columns of `y`."""
    for task in prange(qkv.shape[0] * n_head):
        bi, h, q0, k0, v0, d = _head_columns(task, n_head, qkv.shape[2])
        _head_forward(qkv[bi, :, q0 : q0 + d], qkv[bi, :, k0 : k0 + d], qkv[bi, :, v0 : v0 + d],
                      cos, sin, scale, p[bi, h], y[bi, :, q0 : q0 + d])


def causal_attention_forward_numba(qkv: np.ndarray, n_head: int, scale: float, cos: np.ndarray,
                                   sin: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`(y (B, T, C), P (B, n_head, T, T))` from `qkv` `(B, T, 3C)` (numba kernel)."""
    qkv = np.ascontiguousarray(qkv)
    b, t, width = qkv.shape
    y = np.empty((b, t, width // 3), qkv.dtype)
    p = np.empty((b, n_head, t, t), qkv.dtype)
    work = b * t * t * width // 3  # multiply-adds of S and O over the triangle, about
    launch(_forward_heads, work, qkv, n_head, qkv.dtype.type(scale), cos, sin, p, y,
           grain=PRODUCT)
    return y, p
# --8<-- [end:causal_attention_forward_numba]


# --8<-- [start:causal_attention_backward_numba]
@njit(cache=True, fastmath=ROW_FASTMATH)
def _head_backward(q: np.ndarray, k: np.ndarray, v: np.ndarray, cos: np.ndarray,
                   sin: np.ndarray, p: np.ndarray, do: np.ndarray, scale: float,
                   dq: np.ndarray, dk: np.ndarray, dv: np.ndarray) -> None:
    r"""One head: $\bar Q, \bar K, \bar V$ `(T, d)` from $P$ `(T, T)` and $\bar O$ `(T, d)`."""
    t, d = q.shape
    qc, kc = np.empty((t, d), q.dtype), np.empty((t, d), q.dtype)
    _rotated_copy(q, cos, sin, False, qc)
    _rotated_copy(k, cos, sin, False, kc)
    doc = np.ascontiguousarray(do)
    vt = v.T.copy()  # (d, T)
    gq, gk, gv = (np.zeros((t, d), q.dtype), np.zeros((t, d), q.dtype),
                  np.zeros((t, d), q.dtype))
    dp, ds = np.empty(t, q.dtype), np.empty(t, q.dtype)
    d4 = d - d % 4
    for i in range(t):
        n = i + 1
        dp[:n] = 0
        for c in range(0, d4, 4):  # $\bar P_{i,:n} = \bar O_i V^\top$: 4 channels a sweep
            a0, a1, a2, a3 = doc[i, c], doc[i, c + 1], doc[i, c + 2], doc[i, c + 3]
            for j in range(n):
                dp[j] += a0 * vt[c, j] + a1 * vt[c + 1, j] + a2 * vt[c + 2, j] + a3 * vt[c + 3, j]
        for c in range(d4, d):
            a = doc[i, c]
            for j in range(n):
                dp[j] += a * vt[c, j]
        w = p[i]
        dot = q.dtype.type(0)
        for j in range(n):
            dot += w[j] * dp[j]
        for j in range(n):  # $s \bar S_{i,:n}$
            ds[j] = w[j] * (dp[j] - dot) * scale
        n4 = n - n % 4
        for j in range(0, n4, 4):  # $\bar Q_i = s \sum_j \bar S_{ij} K_j$: 4 keys a sweep
            a0, a1, a2, a3 = ds[j], ds[j + 1], ds[j + 2], ds[j + 3]
            for c in range(d):
                gq[i, c] += (a0 * kc[j, c] + a1 * kc[j + 1, c] + a2 * kc[j + 2, c]
                             + a3 * kc[j + 3, c])
        for j in range(n4, n):
            a = ds[j]
            for c in range(d):
                gq[i, c] += a * kc[j, c]
        # row i's terms of $\bar K_j$ and $\bar V_j$ (see the module docstring)
        for j in range(n):
            a, wj = ds[j], w[j]
            for c in range(d):
                gk[j, c] += a * qc[i, c]
                gv[j, c] += wj * doc[i, c]
    _rotated_copy(gq, cos, sin, True, dq)  # back through the rotation
    _rotated_copy(gk, cos, sin, True, dk)
    dv[:, :] = gv


@parallel_kernel()
def _backward_heads(qkv: np.ndarray, p: np.ndarray, dy: np.ndarray, n_head: int, scale: float,
                    cos: np.ndarray, sin: np.ndarray, dqkv: np.ndarray) -> None:
    """`prange` over (batch row, head); each task writes its head's columns of `dqkv`."""
    for task in prange(qkv.shape[0] * n_head):
        bi, h, q0, k0, v0, d = _head_columns(task, n_head, qkv.shape[2])
        _head_backward(qkv[bi, :, q0 : q0 + d], qkv[bi, :, k0 : k0 + d],
                       qkv[bi, :, v0 : v0 + d], cos, sin, p[bi, h], dy[bi, :, q0 : q0 + d],
                       scale, dqkv[bi, :, q0 : q0 + d], dqkv[bi, :, k0 : k0 + d],
                       dqkv[bi, :, v0 : v0 + d])


def causal_attention_backward_numba(qkv: np.ndarray, p: np.ndarray, dy: np.ndarray,
                                    n_head: int, scale: float, cos: np.ndarray,
                                    sin: np.ndarray) -> np.ndarray:
    r"""$\overline{\text{qkv}}$ `(B, T, 3C)` from $P$ and $\bar y$ (numba kernel)."""
    qkv, dy = np.ascontiguousarray(qkv), np.ascontiguousarray(dy)
    b, t, width = qkv.shape
    dqkv = np.empty_like(qkv)
    work = 2 * b * t * t * width // 3
    launch(_backward_heads, work, qkv, np.ascontiguousarray(p), dy, n_head,
           qkv.dtype.type(scale), cos, sin, dqkv, grain=PRODUCT)
    return dqkv
# --8<-- [end:causal_attention_backward_numba]
