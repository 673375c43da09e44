r"""Cross-entropy from logits, fused with its log-softmax: numba kernels and NumPy references.

For row $i$ of logits $x \in \mathbb{R}^{N \times C}$ with target class $t_i$ and label smoothing
$\varepsilon$ (PyTorch's definition: the target distribution is
$(1-\varepsilon)\,\mathrm{onehot}(t_i) + \varepsilon / C$):

$$\ell_i = (1-\varepsilon)\bigl(\operatorname{lse}(x_i) - x_{i,t_i}\bigr)
         + \varepsilon\Bigl(\operatorname{lse}(x_i) - \tfrac{1}{C}\textstyle\sum_j x_{ij}\Bigr),$$

and with $p_i = \operatorname{softmax}(x_i)$ and the upstream gradient $g_i = \partial L/\partial
\ell_i$,

$$\frac{\partial L}{\partial x_{ij}} = g_i\Bigl(p_{ij} - (1-\varepsilon)[j = t_i]
         - \frac{\varepsilon}{C}\Bigr), \qquad p_{ij} = e^{x_{ij} - \operatorname{lse}(x_i)}.$$

The forward pass returns the per-row losses and saves $\operatorname{lse}(x_i)$, so the backward
pass recomputes $p$ in one fused pass instead of storing an $N \times C$ probability matrix.

**Ignored rows and masking.** A row whose target equals `ignore_index` has loss $0$ and gradient
$0$, even if its logits or its upstream gradient hold NaN (the loss does not depend on them). A
row with a NaN logit, or a $+\infty$ one ($\infty - \infty$ in the shift), otherwise has a NaN
loss, lse and gradient. A fully masked row (all logits $-\infty$) has no distribution: its
$\operatorname{lse} = -\infty$, its loss is $+\infty$ (the target is impossible) unless the row is
ignored, and its gradient is $0$ rather than NaN. A $-\infty$ logit with label smoothing makes the
smoothing term $+\infty$, as in PyTorch. Targets outside $[0, C)$ are rejected by the dispatcher
(`nima.kernels.cross_entropy_forward`) before either implementation runs.

**The numba kernels** make one parallel task per row (`prange` over rows), each a call to a
serial, vectorised row function. Forward: one exp-sum pass over the row (no writes; a max pass
first only when the row's first entry is no safe shift, see `row_logsumexp`), plus NumPy's row
means when $\varepsilon > 0$. Backward:
one fused pass writing $g_i(p_{ij} - \varepsilon/C)$, then a fix-up of the target entry.
"""

import numpy as np
from numba import njit, prange

from nima.kernels.fastexp import fast_exp
from nima.kernels.rows import ROW_FASTMATH, logsumexp_numpy, row_logsumexp
from nima.kernels.threads import launch, parallel_kernel


# --8<-- [start:cross_entropy_forward_numpy]
def cross_entropy_forward_numpy(
    logits: np.ndarray,
    targets: np.ndarray,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-row losses (N,) and log-sum-exps (N,) of logits (N, C) (NumPy reference)."""
    lse = logsumexp_numpy(logits)[:, 0]  # (N,)
    valid = targets != ignore_index  # (N,)
    picked = np.take_along_axis(logits, np.where(valid, targets, 0)[:, None], axis=1)[:, 0]
    with np.errstate(invalid="ignore"):  # -inf - -inf in fully masked rows, replaced below
        losses = (1 - label_smoothing) * (lse - picked)
        if label_smoothing > 0:
            losses += label_smoothing * (lse - logits.mean(axis=1))
    losses = np.where(np.isneginf(lse), np.inf, losses)
    return np.where(valid, losses, 0).astype(logits.dtype), lse
# --8<-- [end:cross_entropy_forward_numpy]


# --8<-- [start:cross_entropy_forward_numba]
@njit(cache=True, fastmath=ROW_FASTMATH)
def _cross_entropy_forward_row(
    r: np.ndarray, t: int, ignore_index: int, smoothing: float, mean: float
) -> tuple[float, float]:
    """(loss, lse) of one row, from `row_logsumexp` and the row's `mean` (used if smoothing)."""
    lse = row_logsumexp(r)
    if t == ignore_index:
        return r.dtype.type(0), lse
    if lse == -np.inf:
        return r.dtype.type(np.inf), lse
    return (r.dtype.type(1) - smoothing) * (lse - r[t]) + smoothing * (lse - mean), lse


@parallel_kernel()
def _cross_entropy_forward_rows(
    logits: np.ndarray,
    targets: np.ndarray,
    ignore_index: int,
    smoothing: float,
    means: np.ndarray,
    losses: np.ndarray,
    lse: np.ndarray,
) -> None:
    """`prange` over rows, each one `_cross_entropy_forward_row`."""
    for i in prange(logits.shape[0]):
        losses[i], lse[i] = _cross_entropy_forward_row(
            logits[i], targets[i], ignore_index, smoothing, means[i]
        )


def cross_entropy_forward_numba(
    logits: np.ndarray,
    targets: np.ndarray,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-row losses (N,) and log-sum-exps (N,) of logits (N, C) (numba kernel).

    The row means that label smoothing needs come from NumPy, in a pass of their own: a sum
    loop inside the row function, even one never run, made the kernel 40% slower at C = 65.
    """
    logits = np.ascontiguousarray(logits)
    losses = np.empty(logits.shape[0], dtype=logits.dtype)
    lse = np.empty_like(losses)
    smoothing = logits.dtype.type(label_smoothing)
    means = logits.mean(axis=1) if label_smoothing > 0 else np.zeros_like(losses)
    launch(_cross_entropy_forward_rows, logits.size, logits, targets, ignore_index, smoothing,
           means, losses, lse)
    return losses, lse
# --8<-- [end:cross_entropy_forward_numba]


# --8<-- [start:cross_entropy_backward_numpy]
def cross_entropy_backward_numpy(
    logits: np.ndarray,
    targets: np.ndarray,
    lse: np.ndarray,
    grad_losses: np.ndarray,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
) -> np.ndarray:
    """dL/dlogits (N, C) from the saved log-sum-exps (N,) (NumPy reference)."""
    n_classes = logits.shape[1]
    dead = (targets == ignore_index) | np.isneginf(lse)  # rows whose gradient is 0
    shift = np.where(dead, np.inf, lse)[:, None]  # (N, 1): finite dead rows give exp(-inf) = 0
    with np.errstate(invalid="ignore"):  # inf - inf in a dead row, zeroed below
        dlogits = np.exp(logits - shift) - label_smoothing / n_classes  # (N, C)
    rows = np.flatnonzero(~dead)
    dlogits[rows, targets[rows]] -= 1 - label_smoothing
    dlogits *= grad_losses.astype(logits.dtype)[:, None]
    dlogits[dead] = 0  # whatever a dead row's logits and upstream gradient hold, NaN included
    return dlogits.astype(logits.dtype, copy=False)
# --8<-- [end:cross_entropy_backward_numpy]


# --8<-- [start:cross_entropy_backward_numba]
@njit(cache=True, fastmath=ROW_FASTMATH)
def _cross_entropy_backward_row(
    r: np.ndarray, t: int, lse: float, g: float, ignore_index: int, smoothing: float,
    out: np.ndarray,
) -> None:
    r"""One row of the gradient: one fused pass $g e^{x - \mathrm{lse}} - g\varepsilon/C$, then
    $g(1-\varepsilon)$ off the target entry.

    Zeros if the row is ignored or fully masked. A non-finite $g$ takes a slower pass in which
    $g$ multiplies last, as in the reference, so $\pm\infty \cdot (p - 1)$ stays infinite
    instead of becoming $\infty - \infty$ (measured: the split costs nothing on finite rows,
    where recomputing $p_t$ instead cost 12% at C = 65).
    """
    if t == ignore_index or lse == -np.inf:
        out[:] = 0
        return
    off = smoothing / r.dtype.type(r.shape[0])
    if np.isfinite(g):  # the fast form: one fused multiply-add per entry
        g_off = g * off
        for j in range(r.shape[0]):
            out[j] = g * fast_exp(r[j] - lse) - g_off
        out[t] -= g * (r.dtype.type(1) - smoothing)
        return
    for j in range(r.shape[0]):  # g multiplies last, as in the reference: no inf - inf
        out[j] = g * (fast_exp(r[j] - lse) - off)
    out[t] = g * (fast_exp(r[t] - lse) - off - (r.dtype.type(1) - smoothing))


@parallel_kernel()
def _cross_entropy_backward_rows(
    logits: np.ndarray,
    targets: np.ndarray,
    lse: np.ndarray,
    grad_losses: np.ndarray,
    ignore_index: int,
    smoothing: float,
    dlogits: np.ndarray,
) -> None:
    """`prange` over rows, each one `_cross_entropy_backward_row`."""
    for i in prange(logits.shape[0]):
        _cross_entropy_backward_row(
            logits[i], targets[i], lse[i], grad_losses[i], ignore_index, smoothing, dlogits[i]
        )


def cross_entropy_backward_numba(
    logits: np.ndarray,
    targets: np.ndarray,
    lse: np.ndarray,
    grad_losses: np.ndarray,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
) -> np.ndarray:
    """dL/dlogits (N, C) from the saved log-sum-exps (N,) (numba kernel)."""
    logits = np.ascontiguousarray(logits)
    dlogits = np.empty_like(logits)
    smoothing = logits.dtype.type(label_smoothing)
    grad_losses = np.ascontiguousarray(grad_losses, dtype=logits.dtype)
    lse = np.ascontiguousarray(lse, dtype=logits.dtype)
    launch(_cross_entropy_backward_rows, logits.size, logits, targets, lse, grad_losses,
           ignore_index, smoothing, dlogits)
    return dlogits
# --8<-- [end:cross_entropy_backward_numba]
