r"""Batched matrix multiply (GEMM) $C_b = A_b B_b$: register-tiled numba kernels, NumPy reference.

$$C_{b,ij} = \sum_{k} A_{b,ik} B_{b,kj}, \qquad A: (B, M, K),\; B: (B, K, N),\; C: (B, M, N).$$

The dispatcher is `nima.kernels.matmul` (this module is `gemm` so that the two names cannot
shadow each other). 2-D operands are one batch. Inputs may have any strides (the autograd backward
passes transposed views such as `a.transpose(0, 2, 1)`); the kernels copy an operand only when it
does not already have the layout their inner loop needs. The result is a new C-contiguous array.

**Why two micro-kernels.** numba vectorises only innermost loops (LLVM's loop vectoriser; there is
no SLP vectoriser and no SIMD intrinsics), so a register tile must be written as scalar code whose
innermost loop LLVM can turn into vector instructions. There are two ways to do that:

* *outer product* (`_matmul_outer_kernel`, used when $N \le 768$): hold an $8 \times 4$ block of
  $A$ in 32 scalars and sweep along the rows of $C$:
  $C_{i,:} \mathrel{+}= \sum_{q<4} A_{i,k+q} B_{k+q,:}$ for eight rows $i$ at once. The inner loop
  runs along $j$, unit stride in $B$ and $C$: 32 fused multiply-adds per 4 loads of $B$ and 8
  load/stores of $C$. It needs no horizontal reductions, so it is the fast one when $K$ is small
  (attention: $K = 32$), but it streams rows of $C$ through L1, which stops paying once a row is
  long. It reads $A$ only as scalars, so $A$ may have any strides: a transposed view such as
  the weight gradient's $X^\top$ goes in without a copy;
* *inner product* (`_matmul_inner_kernel`, $N > 768$): a $4 \times 4$ block of $C$ in 16 scalar
  accumulators, $C_{ij} = \langle A_{i,:}, B^\top_{j,:} \rangle$, with $B$ transposed so both
  operands are unit stride in $k$. LLVM vectorises each of the 16 sums along $k$ (that is what
  the `reassoc` fast-math flag allows) and keeps them in registers; the loop body is 8 loads for
  16 fused multiply-adds and nothing is stored until the end, but each of the 16 sums ends with
  a horizontal reduction, which only amortises over a long $K$.

Both kernels split the work into tasks of (batch, row block[, column block]) under one `prange`,
so a batch of small matrices such as $(48, 64, 32) \times (48, 32, 64)$ spreads over both cores
just like one large product does.
"""

import numpy as np
from numba import njit, prange

from nima.kernels.threads import GEMM_GRAIN, launch

_FASTMATH = {"reassoc", "contract"}  # vectorised dot products and FMA; no assumption about inf/NaN
# widest C row the outer-product kernel takes: 8 rows of 768 float32 are 24 KB, inside the 32 KB
# L1; measured 1.1-1.8x faster than the inner kernel from N = 384 to 768 (2x with a transposed
# A, which the inner kernel must copy), and 2.5x slower at N = 1024, where the rows spill
_OUTER_MAX_N = 768
_INNER_COLS = 64  # columns of C per inner-product task: a 64-row panel of B^T stays in L2
# below this many rows of C, copying a transposed B for the outer kernel costs more than the
# product: decoding's (1, 128) @ W.T spent 80 of its 90 us copying the (384, 128) weight
_FEW_ROWS = 16


# --8<-- [start:matmul_numpy]
def matmul_numpy(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(B, M, K) @ (B, K, N) -> (B, M, N), or 2-D (NumPy/OpenBLAS reference)."""
    return np.ascontiguousarray(np.matmul(a, b))
# --8<-- [end:matmul_numpy]


# --8<-- [start:matmul_outer_kernel]
@njit(cache=True, fastmath=_FASTMATH)
def _outer_rows(A: np.ndarray, B: np.ndarray, C: np.ndarray, i0: int, i1: int) -> None:
    """Rows `i0:i1` of C = A @ B one row at a time (edge rows); inner loop along a row of C."""
    for i in range(i0, i1):
        C[i, :] = 0
        for k in range(A.shape[1]):
            aik = A[i, k]
            for j in range(B.shape[1]):
                C[i, j] += aik * B[k, j]


@njit(cache=True, fastmath=_FASTMATH)
def _outer_block(A: np.ndarray, B: np.ndarray, C: np.ndarray, i0: int) -> None:
    r"""Rows `i0:i0+8` of C = A @ B with an $8 \times 4$ register tile of A.

    Per 4 steps of $k$: load the $8 \times 4$ block of A into 32 scalars, then one loop along
    the rows of C, which LLVM vectorises: 4 loads of B, then 4 fused multiply-adds into each of
    the 8 rows of C.
    """
    kdim, n = B.shape
    k4 = kdim - kdim % 4
    C[i0 : i0 + 8, :] = 0
    A0, A1, A2, A3 = A[i0], A[i0 + 1], A[i0 + 2], A[i0 + 3]
    A4, A5, A6, A7 = A[i0 + 4], A[i0 + 5], A[i0 + 6], A[i0 + 7]
    for k in range(0, k4, 4):
        a00, a01, a02, a03 = A0[k], A0[k + 1], A0[k + 2], A0[k + 3]
        a10, a11, a12, a13 = A1[k], A1[k + 1], A1[k + 2], A1[k + 3]
        a20, a21, a22, a23 = A2[k], A2[k + 1], A2[k + 2], A2[k + 3]
        a30, a31, a32, a33 = A3[k], A3[k + 1], A3[k + 2], A3[k + 3]
        a40, a41, a42, a43 = A4[k], A4[k + 1], A4[k + 2], A4[k + 3]
        a50, a51, a52, a53 = A5[k], A5[k + 1], A5[k + 2], A5[k + 3]
        a60, a61, a62, a63 = A6[k], A6[k + 1], A6[k + 2], A6[k + 3]
        a70, a71, a72, a73 = A7[k], A7[k + 1], A7[k + 2], A7[k + 3]
        for j in range(n):
            b0, b1, b2, b3 = B[k, j], B[k + 1, j], B[k + 2, j], B[k + 3, j]
            C[i0, j] += a00 * b0 + a01 * b1 + a02 * b2 + a03 * b3
            C[i0 + 1, j] += a10 * b0 + a11 * b1 + a12 * b2 + a13 * b3
            C[i0 + 2, j] += a20 * b0 + a21 * b1 + a22 * b2 + a23 * b3
            C[i0 + 3, j] += a30 * b0 + a31 * b1 + a32 * b2 + a33 * b3
            C[i0 + 4, j] += a40 * b0 + a41 * b1 + a42 * b2 + a43 * b3
            C[i0 + 5, j] += a50 * b0 + a51 * b1 + a52 * b2 + a53 * b3
            C[i0 + 6, j] += a60 * b0 + a61 * b1 + a62 * b2 + a63 * b3
            C[i0 + 7, j] += a70 * b0 + a71 * b1 + a72 * b2 + a73 * b3
    for k in range(k4, kdim):  # K not a multiple of 4
        for r in range(8):
            aik = A[i0 + r, k]
            for j in range(n):
                C[i0 + r, j] += aik * B[k, j]


@njit(parallel=True, cache=True)
def _matmul_outer_kernel(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> None:
    """C = A @ B by outer-product register tiles; a, b, c C-contiguous 3-D.

    `prange` over (batch, block of 8 rows of C); a full block is `_outer_block`, the last,
    partial one `_outer_rows`.
    """
    nb, m, _ = a.shape
    row_blocks = (m + 7) // 8
    for task in prange(nb * row_blocks):
        bi, i0 = task // row_blocks, (task % row_blocks) * 8
        if i0 + 8 <= m:
            _outer_block(a[bi], b[bi], c[bi], i0)
        else:
            _outer_rows(a[bi], b[bi], c[bi], i0, m)


# --8<-- [end:matmul_outer_kernel]


# --8<-- [start:matmul_inner_kernel]
@njit(cache=True, fastmath=_FASTMATH)
def _inner_dots(
    A: np.ndarray, Bt: np.ndarray, C: np.ndarray, i0: int, i1: int, j0: int, j1: int
) -> None:
    """C[i0:i1, j0:j1] one dot product at a time (edge tiles); each dot vectorised along k."""
    for i in range(i0, i1):
        for j in range(j0, j1):
            s = A.dtype.type(0)
            for k in range(A.shape[1]):
                s += A[i, k] * Bt[j, k]
            C[i, j] = s


@njit(cache=True, fastmath=_FASTMATH)
def _inner_tiles(A: np.ndarray, Bt: np.ndarray, C: np.ndarray, i0: int, j0: int, j1: int) -> int:
    r"""C[i0:i0+4, j0:j1] by $4 \times 4$ tiles as far as they fit; returns the first column left.

    16 scalar accumulators and one loop over $k$, which LLVM vectorises into 16 vector FMA
    chains fed by 8 unit-stride loads per step; C is written once, after the loop.
    """
    x0, x1, x2, x3 = A[i0], A[i0 + 1], A[i0 + 2], A[i0 + 3]
    C0, C1, C2, C3 = C[i0], C[i0 + 1], C[i0 + 2], C[i0 + 3]
    j = j0
    while j + 4 <= j1:
        y0, y1, y2, y3 = Bt[j], Bt[j + 1], Bt[j + 2], Bt[j + 3]
        c00 = c01 = c02 = c03 = c10 = c11 = c12 = c13 = A.dtype.type(0)
        c20 = c21 = c22 = c23 = c30 = c31 = c32 = c33 = A.dtype.type(0)
        for k in range(A.shape[1]):
            u0, u1, u2, u3 = x0[k], x1[k], x2[k], x3[k]
            v0, v1, v2, v3 = y0[k], y1[k], y2[k], y3[k]
            c00, c01, c02, c03 = c00 + u0 * v0, c01 + u0 * v1, c02 + u0 * v2, c03 + u0 * v3
            c10, c11, c12, c13 = c10 + u1 * v0, c11 + u1 * v1, c12 + u1 * v2, c13 + u1 * v3
            c20, c21, c22, c23 = c20 + u2 * v0, c21 + u2 * v1, c22 + u2 * v2, c23 + u2 * v3
            c30, c31, c32, c33 = c30 + u3 * v0, c31 + u3 * v1, c32 + u3 * v2, c33 + u3 * v3
        C0[j], C0[j + 1], C0[j + 2], C0[j + 3] = c00, c01, c02, c03
        C1[j], C1[j + 1], C1[j + 2], C1[j + 3] = c10, c11, c12, c13
        C2[j], C2[j + 1], C2[j + 2], C2[j + 3] = c20, c21, c22, c23
        C3[j], C3[j + 1], C3[j + 2], C3[j + 3] = c30, c31, c32, c33
        j += 4
    return j


@njit(cache=True, fastmath=_FASTMATH)
def _inner_block(
    A: np.ndarray, Bt: np.ndarray, C: np.ndarray, i0: int, j0: int, j1: int
) -> None:
    """C[i0:i0+4, j0:j1]: `_inner_tiles` as far as 4x4 tiles fit, `_inner_dots` for the rest."""
    m = A.shape[0]
    j_left = _inner_tiles(A, Bt, C, i0, j0, j1) if i0 + 4 <= m else j0
    _inner_dots(A, Bt, C, i0, min(i0 + 4, m), j_left, j1)


@njit(parallel=True, cache=True)
def _matmul_inner_kernel(a: np.ndarray, bt: np.ndarray, c: np.ndarray) -> None:
    r"""C = A @ Bt.T by $4 \times 4$ inner-product register tiles; a, bt, c C-contiguous 3-D.

    `prange` over (batch, block of 64 columns, block of 4 rows): consecutive tasks share the
    64-row panel of Bt, which stays in L2. Each task is one `_inner_block`.
    """
    nb, m, _ = a.shape
    n = bt.shape[1]
    row_blocks = (m + 3) // 4
    col_blocks = (n + _INNER_COLS - 1) // _INNER_COLS
    for task in prange(nb * col_blocks * row_blocks):
        bi = task // (col_blocks * row_blocks)
        j0 = (task // row_blocks) % col_blocks * _INNER_COLS
        i0 = (task % row_blocks) * 4
        j1 = min(j0 + _INNER_COLS, n)
        _inner_block(a[bi], bt[bi], c[bi], i0, j0, j1)
# --8<-- [end:matmul_inner_kernel]


# --8<-- [start:matmul_numba]
def matmul_numba(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(B, M, K) @ (B, K, N) -> (B, M, N), or 2-D (numba kernels).

    Picks the outer-product kernel for rows of C up to 768 wide, the inner-product one beyond.
    """
    if a.ndim == 2:
        return matmul_numba(a[None], b[None])[0]
    nb, m, kdim = a.shape
    n = b.shape[2]
    c = np.empty((nb, m, n), dtype=a.dtype)
    work = nb * m * n * kdim  # multiply-adds
    bt = b.transpose(0, 2, 1)
    if c.size == 0 or kdim == 0:
        c[...] = 0
    elif m < _FEW_ROWS and bt.flags.c_contiguous:
        # a few rows times a transposed weight (`x @ W.T`, decoding one token): B^T is W
        # itself, so the inner kernel takes it as it is, where the outer one would copy W
        launch(_matmul_inner_kernel, work, np.ascontiguousarray(a), bt, c, grain=GEMM_GRAIN)
    elif n <= _OUTER_MAX_N:
        # `a` as it is: the outer kernel reads A one scalar at a time, so any strides do, and
        # the weight gradient's $X^\top \bar Y$ (a transposed view) needs no copy
        launch(_matmul_outer_kernel, work, a, np.ascontiguousarray(b), c, grain=GEMM_GRAIN)
    else:
        launch(_matmul_inner_kernel, work, np.ascontiguousarray(a), np.ascontiguousarray(bt), c,
               grain=GEMM_GRAIN)
    return c
# --8<-- [end:matmul_numba]
