r"""The Adam / AdamW update of one parameter, in place: a NumPy reference and a fused numba kernel.

For step $t$ with gradient $g$ (plus $\lambda\theta$ for Adam's L2 decay):

$$\theta \leftarrow \theta (1 - \eta\lambda) \;\text{(AdamW only)}, \qquad
m \leftarrow \beta_1 m + (1-\beta_1) g, \qquad v \leftarrow \beta_2 v + (1-\beta_2) g^2,$$

$$\theta \leftarrow \theta - \frac{\eta}{1-\beta_1^t} \cdot
\frac{m}{\sqrt{v}/\sqrt{1-\beta_2^t} + \epsilon}.$$

The NumPy reference spends about ten whole-array passes on it, each a fresh temporary for a
large matrix. The numba kernel works through the parameter in blocks of 1024 elements that stay
in L1, so $\theta, g, m, v$ cross memory once and $\theta, m, v$ are written back once, with
**the same operations in the same order** as the reference, in the parameter's dtype
(and no `fastmath`, so no reassociation or fused multiply-adds): both give the same bits.
`error_model="numpy"` lets a division by zero give inf as in NumPy, instead of a per-element
check that raises `ZeroDivisionError` — that check alone stops LLVM from vectorising.

It runs on one thread. Vectorised, the baby GPT's 0.8M parameters take about 0.6 ms; a
`prange` version measured slower on this shared 2-core machine (a thread-pool launch per
parameter, and a barrier that waits for a core when other work holds it).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

_BLOCK = 1024  # elements per pass of the two loops: 4 arrays x 4 KB stay in L1


def adam_scalars(dtype: np.dtype, lr: float, beta1: float, beta2: float, eps: float,
                 weight_decay: float, step: int, decoupled: bool) -> tuple[np.generic, ...]:
    """The step's constants in the parameter's dtype, computed in float64 first: `(decay,
    l2, b1, 1 - b1, b2, 1 - b2, sqrt(1 - b2^t), eps, lr / (1 - b1^t))`."""
    f = dtype.type
    decay = 1 - lr * weight_decay if decoupled else 1.0
    l2 = 0.0 if decoupled else weight_decay
    return (f(decay), f(l2), f(beta1), f(1 - beta1), f(beta2), f(1 - beta2),
            f(math.sqrt(1 - beta2**step)), f(eps), f(lr / (1 - beta1**step)))


# --8<-- [start:adam_update_numpy]
def adam_update_numpy(param: np.ndarray, grad: np.ndarray, exp_avg: np.ndarray,
                      exp_avg_sq: np.ndarray, lr: float, beta1: float, beta2: float, eps: float,
                      weight_decay: float, step: int, decoupled: bool) -> None:
    """One Adam (or, `decoupled`, AdamW) step of `param`, `exp_avg`, `exp_avg_sq` in place."""
    decay, l2, b1, c1, b2, c2, bc2, e, step_size = adam_scalars(
        param.dtype, lr, beta1, beta2, eps, weight_decay, step, decoupled)
    g = grad.astype(param.dtype, copy=False)
    if decoupled and weight_decay:
        # AdamW, decoupled decay: $\theta \leftarrow \theta (1 - \eta\lambda)$
        param *= decay
    elif weight_decay:
        # Adam, L2 in the gradient: $g \leftarrow g + \lambda\theta$
        g = g + l2 * param
    # $m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t$
    exp_avg *= b1
    exp_avg += c1 * g
    # $v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2$
    exp_avg_sq *= b2
    exp_avg_sq += c2 * (g * g)
    # bias correction: $\hat m_t = m_t/(1-\beta_1^t)$, $\hat v_t = v_t/(1-\beta_2^t)$,
    # folded into the step size and the denominator
    denom = np.sqrt(exp_avg_sq) / bc2 + e
    # $\theta \leftarrow \theta - \eta\,\hat m_t / (\sqrt{\hat v_t} + \epsilon)$
    param -= step_size * (exp_avg / denom)
# --8<-- [end:adam_update_numpy]


# --8<-- [start:adam_update_numba]
@njit(cache=True)
def _moments(p: np.ndarray, g: np.ndarray, m: np.ndarray, v: np.ndarray, l2: float, b1: float,
             c1: float, b2: float, c2: float, l2_in_grad: bool) -> None:
    r"""$m \leftarrow \beta_1 m + (1-\beta_1) g$, $v \leftarrow \beta_2 v + (1-\beta_2) g^2$
    (with $g + \lambda\theta$ for Adam's L2 decay, `l2_in_grad`)."""
    for i in range(p.size):
        gi = g[i] + l2 * p[i] if l2_in_grad else g[i]
        m[i] = m[i] * b1 + c1 * gi
        v[i] = v[i] * b2 + c2 * (gi * gi)


@njit(cache=True, error_model="numpy")  # x / 0 is inf, as NumPy: no branch to raise
def _step(p: np.ndarray, m: np.ndarray, v: np.ndarray, decay: float, bc2: float, eps: float,
          step_size: float) -> None:
    r"""$\theta \leftarrow \theta d - \eta_t\, m / (\sqrt{v}/\sqrt{1-\beta_2^t} + \epsilon)$,
    $d = 1 - \eta\lambda$ for AdamW and exactly 1 (a no-op) for Adam."""
    for i in range(p.size):
        p[i] = p[i] * decay - step_size * (m[i] / (math.sqrt(v[i]) / bc2 + eps))


@njit(cache=True)
def _adam_blocks(p: np.ndarray, g: np.ndarray, m: np.ndarray, v: np.ndarray, decay: float,
                l2: float, b1: float, c1: float, b2: float, c2: float, bc2: float, eps: float,
                step_size: float, l2_in_grad: bool) -> None:
    r"""The update of whole (flat) arrays, every constant in p's dtype and every operation the
    reference's, in its order. Per block of `_BLOCK` elements (which stays in L1), two loops:
    the moments, then the step. One loop writing $\theta$, $m$ and $v$ at once would not
    vectorise (LLVM gives up on proving that four arrays do not overlap); two loops that each
    write less do, 8 float32 lanes at a time. Each loop counts from 0, so numba drops its
    negative-index checks."""
    n = p.size
    for a in range(0, n, _BLOCK):
        b = min(n, a + _BLOCK)
        _moments(p[a:b], g[a:b], m[a:b], v[a:b], l2, b1, c1, b2, c2, l2_in_grad)
        _step(p[a:b], m[a:b], v[a:b], decay, bc2, eps, step_size)


def adam_update_numba(param: np.ndarray, grad: np.ndarray, exp_avg: np.ndarray,
                      exp_avg_sq: np.ndarray, lr: float, beta1: float, beta2: float, eps: float,
                      weight_decay: float, step: int, decoupled: bool) -> None:
    """The same step as `adam_update_numpy`, fused into one pass (numba kernel)."""
    scalars = adam_scalars(param.dtype, lr, beta1, beta2, eps, weight_decay, step, decoupled)
    p, m, v = (a.reshape(-1) for a in (param, exp_avg, exp_avg_sq))  # views: contiguous
    g = np.ascontiguousarray(grad, dtype=param.dtype).reshape(-1)
    _adam_blocks(p, g, m, v, *scalars, not decoupled and weight_decay != 0)
# --8<-- [end:adam_update_numba]
