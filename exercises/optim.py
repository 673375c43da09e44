r"""Exercises of the Optimizers page (docs/optim.md)."""

import numpy as np

from exercises import close
from nima.nn import Parameter
from nima.optim import SGD, AdamW, WarmupCosine


def adamw_step(p: np.ndarray, g: np.ndarray, m: np.ndarray, v: np.ndarray, t: int, lr: float,
               betas: tuple[float, float], eps: float,
               weight_decay: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""One AdamW step.

    Given the weights `p`, their gradient `g`, the moments `m`, `v` after $t - 1$ steps and the
    step number `t` (from 1), return the new `(p, m, v)`: decay the weights,
    $\theta \leftarrow \theta - \eta\lambda\theta$ (decoupled: not through the gradient);
    update $m$, $v$; correct their bias with $1 - \beta^t$; step
    $\theta \leftarrow \theta - \eta\, \hat m / (\sqrt{\hat v} + \epsilon)$.
    """
    raise NotImplementedError


def check_adamw_step(adamw_step) -> None:
    """Runs five steps of `nima.optim.AdamW` on a float64 parameter with a different gradient
    each step, and compares your weights after every step."""
    rng = np.random.default_rng(0)
    w = Parameter(rng.standard_normal((3, 4)))
    opt = AdamW([w], lr=0.01, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.1)
    p, m, v = w.data.copy(), np.zeros((3, 4)), np.zeros((3, 4))
    for t in range(1, 6):
        g = rng.standard_normal((3, 4)) * 10.0 ** (t - 3)
        w.grad = g.copy()
        opt.step()
        p, m, v = adamw_step(p, g, m, v, t, 0.01, (0.9, 0.99), 1e-8, 0.1)
        close(p, w.data, f"the weights after step {t}", rtol=1e-9, atol=1e-12)


def warmup_cosine(step: int, lr: float, warmup: int, total: int, min_lr: float) -> float:
    r"""nanoGPT's schedule.

    Return the learning rate at `step` (from 0): a linear warmup $\eta\,(t+1)/(w+1)$ for
    $t < w$, then a half cosine from $\eta$ at $t = w$ down to $\eta_{\min}$ at $t = T$
    (`total`), then $\eta_{\min}$.
    """
    raise NotImplementedError


def check_warmup_cosine(warmup_cosine) -> None:
    """Compares with `WarmupCosine.lr_at` at every step of two schedules and beyond their
    end."""
    for lr, warmup, total, min_lr in [(1e-3, 100, 2000, 1e-4), (0.5, 0, 10, 0.0)]:
        schedule = WarmupCosine(SGD([Parameter(np.zeros(1))], lr=lr), warmup=warmup,
                                total=total, min_lr=min_lr)
        for step in range(total + 20):
            close(warmup_cosine(step, lr, warmup, total, min_lr), schedule.lr_at(step),
                  f"the rate at step {step} of ({lr}, {warmup}, {total}, {min_lr})", rtol=1e-12,
                  atol=1e-15)

