r"""Batched matrix multiply (GEMM) $C_b = A_b B_b$: a register-tiled numba kernel, NumPy reference.

$$C_{b,ij} = \sum_{k} A_{b,ik} B_{b,kj}, \qquad A: (B, M, K),\; B: (B, K, N),\; C: (B, M, N).$$

The dispatcher is `nima.kernels.matmul` (this module is `gemm` so that the two names cannot
shadow each other). 2-D operands are one batch. Inputs may have any strides (the autograd backward
passes transposed views such as `a.transpose(0, 2, 1)`); the result is a new C-contiguous array.

**The micro-kernel** (`_tile`). numba vectorises only innermost loops (LLVM's loop vectoriser;
numba turns the SLP vectoriser off, and there are no SIMD intrinsics), so a register tile is
written as scalar code around an innermost loop that LLVM can turn into vector instructions. The
tile holds an $8 \times 4$ block of $A$ in 32 scalars and sweeps along eight rows of $C$:
$C_{i,:} \mathrel{+}= \sum_{q<4} A_{i,k+q} B_{k+q,:}$. Each step of the sweep (16 float32
columns, one 512-bit zmm register) is 4 loads of $B$ and 32 fused multiply-adds into 8 rows of
$C$, which are loaded and stored once per 4 steps of $k$. It reads $A$ one scalar at a time, so
$A$ may have any strides: the weight gradient's $X^\top$ goes in as a view.

**Blocking around it** (`_matmul_kernel`), from measurements on an AMD EPYC Zen 4 (AVX-512,
32 KiB L1d and 1 MiB L2 per core), one thread, float32:

* *panels of B*: $N$ is cut into panels of at most `_PANEL_BYTES` per row (1536 float32). A
  panel is a contiguous copy of those columns of $B$, zero-padded to a whole number of vectors,
  made once per call; a C-contiguous $B$ one panel wide is used as it is. The copy is what
  decides the width: at (2048, 384) @ (384, 1152) one 1152-wide panel ran 1.12x PyTorch where
  two copied 576-wide ones ran 0.99x, although eight rows of $C$ (36 KiB) then spill from L1 to
  L2 on every sweep. Panels whose rows would be a multiple of 4 KiB apart are cut narrower:
  1024³ ran 0.84x PyTorch as one panel and 1.05x as two of 512;
* *4 KiB aliasing*: rows of $C$ whose stride is a multiple of 4 KiB over one to three rows
  (N = 512 or 1536 float32) make the core stall loads on stores to another row at the same
  4 KiB offset: (768, 128) @ (128, 512) ran at 64 GFLOP/s in place and at 105 with N = 528.
  Such tiles, and every tile of a multi-panel product, go through a buffer whose row stride
  avoids it, then are copied into $C$;
* *blocks of k*: a task sweeps `_K_BLOCK` = 256 rows of a panel at a time with all its tiles,
  so that block (768 KiB of a 768-wide panel) is read from L2 rather than once per tile from
  L3: with 768-wide panels, 0.86 -> 0.88x PyTorch at (384, 2048) @ (2048, 1536) and
  0.91 -> 1.02x at (2048, 1536) @ (1536, 384); 128 and 512 rows did as well.

One `prange` runs over (batch, panel, block of `_TASK_ROWS` rows), so a batch of small matrices
such as $(48, 64, 32) \times (48, 32, 64)$ spreads over the cores as one large product does.
"""

import numpy as np
from numba import njit, prange

from nima.kernels.threads import PRODUCT, launch, parallel_kernel

_FASTMATH = {"reassoc", "contract"}  # vectorised sums and FMA; no assumption about inf/NaN
_PANEL_BYTES = 6144  # widest row of a panel of B: 1536 float32 (see above)
_TASK_ROWS = 64  # rows of C per parallel task: 12 tasks for the baby GPT's 768 rows
_ALIAS_ROWS = 3  # rows this close at a multiple of 4 KiB apart stall the tile (see above)
_K_BLOCK = 256  # rows of a panel of B swept by all tiles of a task before the next block
# below this many rows of C, with B a transposed weight (`x @ W.T`, decoding one token), dot
# products along k read W as it is; the tile would need W^T copied into a panel first, and at
# (1, 128) @ (128, 384) that copy was 80 of the product's 90 us
_FEW_ROWS = 16


# --8<-- [start:matmul_numpy]
def matmul_numpy(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(B, M, K) @ (B, K, N) -> (B, M, N), or 2-D (NumPy/OpenBLAS reference)."""
    return np.ascontiguousarray(np.matmul(a, b))
# --8<-- [end:matmul_numpy]


# --8<-- [start:matmul_tile]
@njit(cache=True, fastmath=_FASTMATH)
def _tile(A: np.ndarray, B: np.ndarray, C: np.ndarray) -> None:
    r"""$C_{:8,:n} \mathrel{+}= A_{:8,:} B$ for B (K, n): an $8 \times 4$ register tile of A.

    Per 4 steps of $k$: load the $8 \times 4$ block of A into 32 scalars, then one loop along
    the rows of C, which LLVM vectorises: 4 loads of B, then 4 fused multiply-adds into each of
    the 8 rows of C. A may have any strides; the rows of B and C are unit stride.
    """
    kdim, n = B.shape
    k4 = kdim - kdim % 4
    for k in range(0, k4, 4):
        a00, a01, a02, a03 = A[0, k], A[0, k + 1], A[0, k + 2], A[0, k + 3]
        a10, a11, a12, a13 = A[1, k], A[1, k + 1], A[1, k + 2], A[1, k + 3]
        a20, a21, a22, a23 = A[2, k], A[2, k + 1], A[2, k + 2], A[2, k + 3]
        a30, a31, a32, a33 = A[3, k], A[3, k + 1], A[3, k + 2], A[3, k + 3]
        a40, a41, a42, a43 = A[4, k], A[4, k + 1], A[4, k + 2], A[4, k + 3]
        a50, a51, a52, a53 = A[5, k], A[5, k + 1], A[5, k + 2], A[5, k + 3]
        a60, a61, a62, a63 = A[6, k], A[6, k + 1], A[6, k + 2], A[6, k + 3]
        a70, a71, a72, a73 = A[7, k], A[7, k + 1], A[7, k + 2], A[7, k + 3]
        for j in range(n):
            b0, b1, b2, b3 = B[k, j], B[k + 1, j], B[k + 2, j], B[k + 3, j]
            C[0, j] += a00 * b0 + a01 * b1 + a02 * b2 + a03 * b3
            C[1, j] += a10 * b0 + a11 * b1 + a12 * b2 + a13 * b3
            C[2, j] += a20 * b0 + a21 * b1 + a22 * b2 + a23 * b3
            C[3, j] += a30 * b0 + a31 * b1 + a32 * b2 + a33 * b3
            C[4, j] += a40 * b0 + a41 * b1 + a42 * b2 + a43 * b3
            C[5, j] += a50 * b0 + a51 * b1 + a52 * b2 + a53 * b3
            C[6, j] += a60 * b0 + a61 * b1 + a62 * b2 + a63 * b3
            C[7, j] += a70 * b0 + a71 * b1 + a72 * b2 + a73 * b3
    for k in range(k4, kdim):  # K not a multiple of 4
        for r in range(8):
            a = A[r, k]
            for j in range(n):
                C[r, j] += a * B[k, j]
# --8<-- [end:matmul_tile]


# --8<-- [start:matmul_blocks]
@njit(cache=True)
def _aliases(row_bytes: int) -> bool:
    """Whether rows `row_bytes` apart land within a cache line of the same 4 KiB offset as a
    row at most `_ALIAS_ROWS` rows away."""
    for r in range(1, _ALIAS_ROWS + 1):
        offset = r * row_bytes % 4096
        if offset < 64 or offset > 4096 - 64:
            return True
    return False


@njit(cache=True)
def _row_block(A: np.ndarray, B: np.ndarray, C: np.ndarray, i0: int, i1: int, j0: int,
               in_place: bool) -> None:
    """C[i0:i1, j0:j0+w] = A[i0:i1] @ B for one panel B (K, w): blocks of `_K_BLOCK` rows of B,
    each swept by the tiles of eight rows.

    The tiles accumulate in C itself when `in_place` (B spans all of C's columns and C's stride
    does not alias) and the rows are a multiple of 8; otherwise in a buffer D whose row stride
    avoids aliasing, copied into C at the end. A partial last tile reads rows of A zero-padded
    to 8; the padding reaches only rows of D that are not copied out.
    """
    kdim = A.shape[1]
    width = B.shape[1]
    rows = i1 - i0
    buffered = not in_place or rows % 8 != 0
    if buffered:
        stride = width + 16
        while _aliases(stride * C.itemsize):
            stride += 16
        D = np.empty((rows + -rows % 8, stride), C.dtype)
    else:
        D = C[i0:i1]
    D[:] = 0
    if rows % 8:
        Ap = np.zeros((D.shape[0], kdim), A.dtype)
        for r in range(rows):
            for k in range(kdim):
                Ap[r, k] = A[i0 + r, k]
    else:
        Ap = A[i0:i1]
    for k0 in range(0, kdim, _K_BLOCK):
        Bk = B[k0 : k0 + _K_BLOCK]  # stays in L2 while all the tiles sweep it
        for i in range(0, D.shape[0], 8):
            _tile(Ap[i : i + 8, k0 : k0 + _K_BLOCK], Bk, D[i : i + 8])
    if buffered:
        w = min(width, C.shape[1] - j0)  # columns of C this panel covers
        for r in range(rows):
            row, d = C[i0 + r, j0 : j0 + w], D[r]
            for j in range(w):
                row[j] = d[j]


@parallel_kernel()
def _matmul_kernel(a: np.ndarray, panels: np.ndarray, c: np.ndarray) -> None:
    """C = A @ B with B cut into panels (B, P, K, w); c C-contiguous (B, M, N).

    `prange` over (batch, panel, block of `_TASK_ROWS` rows of C), row blocks innermost, so the
    tasks a thread runs in a row share a panel of B.
    """
    nb, m, _ = a.shape
    n = c.shape[2]
    count, width = panels.shape[1], panels.shape[3]
    in_place = count == 1 and width == n and not _aliases(n * c.itemsize)
    row_blocks = (m + _TASK_ROWS - 1) // _TASK_ROWS
    for task in prange(nb * count * row_blocks):
        bi = task // (count * row_blocks)
        p = task // row_blocks % count
        i0 = task % row_blocks * _TASK_ROWS
        i1 = min(i0 + _TASK_ROWS, m)
        _row_block(a[bi], panels[bi, p], c[bi], i0, i1, p * width, in_place)
# --8<-- [end:matmul_blocks]


def _panel_width(n: int, count: int) -> int:
    """Columns per panel when N is cut into `count` panels: N itself, or equal whole vectors."""
    width = -(-n // count)
    return n if count == 1 else width + -width % 16


@parallel_kernel(fastmath=_FASTMATH)
def _dots_kernel(a: np.ndarray, bt: np.ndarray, c: np.ndarray) -> None:
    """C = A @ Bt^T for a few rows of A: $C_{ij} = \\langle A_{i,:}, B^\\top_{j,:}\\rangle$, one
    dot product per element, unit stride in both along k (LLVM vectorises each sum).

    `prange` over (batch, column of C); a, bt, c C-contiguous 3-D.
    """
    nb, m, kdim = a.shape
    n = bt.shape[1]
    for task in prange(nb * n):
        bi, j = task // n, task % n
        for i in range(m):
            s = c.dtype.type(0)
            for k in range(kdim):
                s += a[bi, i, k] * bt[bi, j, k]
            c[bi, i, j] = s


# --8<-- [start:matmul_numba]
def matmul_numba(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(B, M, K) @ (B, K, N) -> (B, M, N), or 2-D (numba kernel).

    B is one panel when its rows are at most `_PANEL_BYTES` and not a multiple of 4 KiB long
    (copied by NumPy if it is not C-contiguous); otherwise it is copied into panels of equal
    width, a multiple of 16 columns. A few rows times a transposed B take dot products instead
    (`_dots_kernel`), which need no copy of B.
    """
    if a.ndim == 2:
        return matmul_numba(a[None], b[None])[0]
    nb, m, kdim = a.shape
    n = b.shape[2]
    c = np.empty((nb, m, n), dtype=a.dtype)
    work = nb * m * n * kdim  # multiply-adds
    if c.size == 0 or kdim == 0:
        c[...] = 0
        return c
    bt = b.transpose(0, 2, 1)
    if m < _FEW_ROWS and bt.flags.c_contiguous:
        launch(_dots_kernel, work, np.ascontiguousarray(a), bt, c, grain=PRODUCT)
        return c
    count = -(-n * b.itemsize // _PANEL_BYTES)
    while _panel_width(n, count) * b.itemsize % 4096 == 0:
        count += 1  # rows of a panel a multiple of 4 KiB apart share L1 sets: 1024^3 ran 20% slower
    if count == 1:
        # NumPy's copy is the fast way to make a transposed view (dY @ W^T) contiguous
        panels = np.ascontiguousarray(b)[:, None]  # (B, 1, K, N)
    else:  # panels[:, p] = b[:, :, p*width:(p+1)*width], zero past column N
        width = _panel_width(n, count)
        panels = np.zeros((nb, -(-n // width), kdim, width), dtype=b.dtype)
        for p in range(panels.shape[1]):
            cols = b[:, :, p * width : (p + 1) * width]
            panels[:, p, :, : cols.shape[2]] = cols
    launch(_matmul_kernel, work, a, panels, c, grain=PRODUCT)
    return c
# --8<-- [end:matmul_numba]
