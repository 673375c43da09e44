r"""Causal softmax for attention scores: the causal mask fused into the softmax kernel.

For scores $S$ of shape `(..., Tq, Tk)`, query row $i$ may see keys $j \le i + \text{shift}$,
$\text{shift} = T_k - T_q$ (the diagonal aligned to the end, as with a KV cache):

$$y_{ij} = \frac{e^{S_{ij} - m_i}}{\sum_{j' \le i + \text{shift}} e^{S_{ij'} - m_i}}
\quad (j \le i + \text{shift}), \qquad y_{ij} = 0 \text{ otherwise},$$

with $m_i$ a shift that keeps the exponentials finite (the first visible entry, or their maximum:
see `row_exp`). It equals the softmax of the scores with the
future filled with $-\infty$ — which is exactly what the NumPy reference computes — without
building the mask or the filled copy, and each row reads only its visible prefix. A row with no
visible key (or whose visible entries are all $-\infty$, e.g. padding) gives zeros, like
`softmax_forward`. $-\infty$ entries inside the prefix (a padding or user mask applied before)
get weight 0. A NaN (or $+\infty$, through $\infty - \infty$) among the visible entries makes
the whole row NaN, hidden entries included, as in the reference; the hidden part is never read.

The backward needs no kernel of its own: it is the ordinary softmax backward
`kernels.softmax_backward`, $dx = y \odot (dy - \langle dy, y\rangle)$, and hidden entries,
where $y = 0$, get 0.

The dispatcher, which checks the scores and defaults the shift, is
`nima.kernels.causal_softmax_forward`.

**The numba kernel** runs one `prange` task per row of the scores viewed as 2-D `(R, Tk)`; row
$r$ is query $i = r \bmod T_q$, so it knows its own prefix length without an index array.
Measured in `benchmarks/bench_attention.py`: against `masked_fill` + `softmax_forward`, it saves
a full pass to build the filled copy forward and another through `masked_fill`'s backward.
"""

import numpy as np
from numba import njit, prange

from nima.kernels.rows import ROW_FASTMATH, as_rows, row_exp
from nima.kernels.softmax import softmax_forward_numpy
from nima.kernels.threads import launch, parallel_kernel


# --8<-- [start:causal_softmax_forward_numpy]
def causal_softmax_forward_numpy(x: np.ndarray, shift: int) -> np.ndarray:
    """Softmax over keys `j <= i + shift` of query row `i`; zeros elsewhere (NumPy reference)."""
    t_q, t_k = x.shape[-2:]
    visible = np.tri(t_q, t_k, shift, dtype=bool)  # (Tq, Tk)
    return softmax_forward_numpy(np.where(visible, x, -np.inf))
# --8<-- [end:causal_softmax_forward_numpy]


# --8<-- [start:causal_softmax_forward_numba]
@njit(cache=True, fastmath=ROW_FASTMATH)
def causal_softmax_row(r: np.ndarray, n_visible: int, out: np.ndarray) -> None:
    """One row: softmax of `r[:n_visible]`, zeros after; all NaN if the visible sum is NaN."""
    out[n_visible:] = 0
    if n_visible <= 0:
        return
    c, s = row_exp(r[:n_visible], out[:n_visible])
    if c == -np.inf:
        out[:n_visible] = 0
        return
    if np.isnan(s):  # a visible NaN or +inf: the reference's filled row is NaN everywhere
        out[:] = s
        return
    inv_s = r.dtype.type(1) / s
    for j in range(n_visible):
        out[j] *= inv_s


@parallel_kernel()
def _causal_softmax_rows(x: np.ndarray, t_q: int, shift: int, y: np.ndarray) -> None:
    """`prange` over rows; row `r` is query `r % t_q` and sees `r % t_q + shift + 1` keys."""
    t_k = x.shape[1]
    for r in prange(x.shape[0]):
        n_visible = min(max(r % t_q + shift + 1, 0), t_k)
        causal_softmax_row(x[r], n_visible, y[r])


def causal_softmax_forward_numba(x: np.ndarray, shift: int) -> np.ndarray:
    """Softmax over keys `j <= i + shift` of query row `i`; zeros elsewhere (numba kernel)."""
    x2 = as_rows(x)
    y = np.empty_like(x2)
    launch(_causal_softmax_rows, x2.size, x2, x.shape[-2], shift, y)
    return y.reshape(x.shape)
# --8<-- [end:causal_softmax_forward_numba]

