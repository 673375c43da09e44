r"""Exercises of tutorial 09, optimizers and schedules compared."""

import numpy as np

from exercises import close
from nima.nn import Parameter
from nima.optim import SGD, Noam


def momentum_path(p0: np.ndarray, grads: list[np.ndarray], lr: float, mu: float,
                  nesterov: bool) -> list[np.ndarray]:
    r"""SGD with momentum, PyTorch's way.

    Starting from `p0`, apply one step per gradient in `grads` and return the weights after
    each step. The buffer starts as $b_1 = g_1$, then $b_t = \mu b_{t-1} + g_t$; the step is
    $\theta \leftarrow \theta - \eta\,b_t$, or with Nesterov
    $\theta \leftarrow \theta - \eta\,(g_t + \mu b_t)$.
    """
    raise NotImplementedError


def check_momentum_path(momentum_path) -> None:
    """Feeds the same gradients to `nima.optim.SGD(momentum=0.9)`, with and without Nesterov,
    and compares the weights after every step."""
    rng = np.random.default_rng(0)
    grads = [rng.standard_normal(3) for _ in range(6)]
    for nesterov in (False, True):
        p = Parameter(np.array([1.0, -2.0, 0.5]))
        opt = SGD([p], lr=0.1, momentum=0.9, nesterov=nesterov)
        expected = []
        for g in grads:
            p.grad = g.copy()
            opt.step()
            expected.append(p.data.copy())
        got = momentum_path(np.array([1.0, -2.0, 0.5]), [g.copy() for g in grads], 0.1, 0.9,
                            nesterov)
        for t, (mine, theirs) in enumerate(zip(got, expected, strict=True), 1):
            close(mine, theirs, f"the weights after step {t} (nesterov={nesterov})")


def noam(step: int, lr: float, d_model: int, warmup: int) -> float:
    r"""The Transformer paper's schedule.

    Return $\eta\, d_\text{model}^{-1/2} \min(s^{-1/2}, s\,w^{-3/2})$ with $s$ = `step` + 1.
    """
    raise NotImplementedError


def check_noam(noam) -> None:
    """Compares with `nima.optim.Noam.lr_at` over the warm-up and the decay."""
    schedule = Noam(SGD([Parameter(np.zeros(1))], lr=2.0), d_model=128, warmup=100)
    for step in range(0, 400, 7):
        close(noam(step, 2.0, 128, 100), schedule.lr_at(step), f"the rate at step {step}",
              rtol=1e-12)
