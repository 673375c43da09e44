r"""Entropy-aware temperature: pick each step's temperature from a target entropy.

A fixed temperature is too hot where the model is unsure (it babbles) and too cold where it is
sure (it loops). Entropy-aware sampling instead fixes how uncertain each step should be: a target
entropy $H^\star$ in bits, and solves, per row and per step, for the temperature $T$ whose tempered
distribution has that entropy. With $\beta = 1/T$ and $p = \operatorname{softmax}(\beta z)$,

$$H(\beta) = -\sum_i p_i \log_2 p_i
= \frac{1}{\ln 2}\Big(\log \sum_i e^{\beta z_i} - \beta \sum_i p_i z_i\Big), \qquad
\frac{dH}{d\beta} = -\frac{\beta}{\ln 2}\operatorname{Var}_p(z) \le 0,$$

so $H$ falls as $\beta$ grows: it rises monotonically with $T$, from the entropy of the
argmax (0 bits, $T \to 0$) to $\log_2 V$ (uniform, $T \to \infty$). One root, found by
safeguarded Newton on $\beta$ inside the bracket $[1/T_{\max}, 1/T_{\min}]$ (a bisection step
whenever Newton would leave the bracket). If $H^\star$ is out of reach the bound is returned:
$T_{\min}$ when even $T_{\min}$ is too uncertain, $T_{\max}$ when even $T_{\max}$ is too sure.
"""

from __future__ import annotations

import numpy as np

from nima.generation.processors import softmax

__all__ = ["check_entropy_target", "entropy_bits", "entropy_temperature"]

LN2 = np.log(2.0)


# --8<-- [start:entropy_bits]
def entropy_bits(probs: np.ndarray) -> np.ndarray:
    r"""$H(p) = -\sum_i p_i \log_2 p_i$ of each row of `probs` `(B, V)` -> `(B,)`, with
    $0 \log 0 = 0$."""
    p = np.asarray(probs, dtype=np.float64)
    plogp = p * np.log2(np.where(p > 0, p, 1.0))  # (B, V); 0 where p = 0
    return 0.0 - plogp.sum(axis=-1)  # not `-sum`: a one-hot row gives 0.0, never -0.0
# --8<-- [end:entropy_bits]


def _entropy_and_slope(z: np.ndarray, beta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r"""$H(\beta)$ in bits and $dH/d\beta$ for logits `z` `(B, V)` at `beta` `(B,)`."""
    p = softmax(z * beta[:, None])  # (B, V)
    zf = np.where(p > 0, z, 0.0)  # (B, V): keeps 0 * (-inf) out of the sums
    mean = (p * zf).sum(axis=-1)  # (B,): $E_p[z]$
    var = np.maximum((p * zf * zf).sum(axis=-1) - mean**2, 0.0)  # (B,): $\operatorname{Var}_p(z)$
    return entropy_bits(p), -beta * var / LN2


def check_entropy_target(target: float, min_temp: float, max_temp: float) -> None:
    """Raise a ValueError unless `target >= 0` bits and `0 < min_temp <= max_temp`."""
    if not np.isfinite(target) or target < 0:
        raise ValueError(f"entropy_temperature: target entropy must be >= 0 bits, got {target!r}")
    if not (0 < min_temp <= max_temp < np.inf):
        raise ValueError(f"entropy_temperature: need 0 < min_temp <= max_temp, got "
                         f"min_temp={min_temp!r}, max_temp={max_temp!r}")


# --8<-- [start:entropy_temperature]
def entropy_temperature(logits: np.ndarray, target: float, min_temp: float, max_temp: float,
                        *, tol: float = 1e-4, max_iter: int = 50) -> np.ndarray:
    r"""The temperature $T \in [T_{\min}, T_{\max}]$ of each row with
    $H(\operatorname{softmax}(z/T)) = H^\star$ bits, or the bound nearest to it when $H^\star$ is
    out of reach.

    Args:
        logits: `(B, V)` next-token logits (entries may be $-\infty$).
        target: $H^\star$ in bits, $\ge 0$.
        min_temp: $T_{\min} > 0$, the coldest temperature allowed.
        max_temp: $T_{\max} \ge T_{\min}$, the hottest.
        tol: stop once every row's entropy is within `tol` bits of the target.
        max_iter: at most this many Newton/bisection steps.

    Returns:
        `(B,)` temperatures.

    Raises:
        ValueError: on a negative target, non-positive or inverted bounds, or logits not `(B, V)`.
    """
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim != 2:
        raise ValueError(f"entropy_temperature: logits must be (B, V), got {z.shape}")
    check_entropy_target(target, min_temp, max_temp)
    B = z.shape[0]
    z = z - np.max(z, axis=-1, keepdims=True)  # (B, V): same softmax, no overflow
    lo = np.full(B, 1.0 / max_temp)  # $\beta$ of the hottest allowed temperature: highest H
    hi = np.full(B, 1.0 / min_temp)  # $\beta$ of the coldest: lowest H
    h_lo, _ = _entropy_and_slope(z, lo)
    h_hi, _ = _entropy_and_slope(z, hi)
    beta = np.where(h_lo <= target, lo, hi)  # out of reach: clamp to the nearer bound
    inside = (h_hi < target) & (target < h_lo)
    b = np.clip(1.0, lo, hi)  # start at T = 1 (or the nearer bound)
    for _ in range(max_iter):
        if not inside.any():
            break
        h, slope = _entropy_and_slope(z, b)
        err = h - target  # > 0: too uncertain, so raise $\beta$ (cool down)
        done = np.abs(err) <= tol
        lo = np.where(err > 0, b, lo)
        hi = np.where(err > 0, hi, b)
        with np.errstate(divide="ignore", invalid="ignore"):
            newton = b - err / slope  # $\beta - (H - H^\star) / H'(\beta)$
        ok = np.isfinite(newton) & (newton > lo) & (newton < hi)
        b = np.where(done, b, np.where(ok, newton, 0.5 * (lo + hi)))
        beta = np.where(inside, b, beta)
        inside &= ~done
    return 1.0 / beta
# --8<-- [end:entropy_temperature]
