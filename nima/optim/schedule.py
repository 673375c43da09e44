r"""Learning-rate schedules that set each parameter group's `"lr"` from a step count.

A schedule remembers each group's starting `lr` as its *base* learning rate $\eta$ and, at step
$t$, sets `lr` to `lr_at(t)` — a pure function of $t$ — so plotting a schedule is
`[s.lr_at(t) for t in range(n)]`, and resuming only needs the step. Construction applies step 0;
call `step()` once after each `optimizer.step()`:

```python
opt = AdamW(model.parameters(), lr=1e-3)
sched = WarmupCosine(opt, warmup=100, total=2000, min_lr=1e-4)
for it in range(2000):
    ...  # forward, backward
    opt.step(); opt.zero_grad(); sched.step()
```
"""

from __future__ import annotations

import math
from typing import Any

from nima.optim.optimizer import Optimizer
from nima.settings import check_int, check_value


class LRScheduler:
    """Base class: subclasses implement `_lr(base_lr, step)`."""

    def __init__(self, optimizer: Optimizer) -> None:
        self.optimizer = optimizer
        self.base_lrs = [float(g["lr"]) for g in optimizer.param_groups]
        self.last_step = 0
        self._apply()

    def _lr(self, base_lr: float, step: int) -> float:
        raise NotImplementedError

    def lr_at(self, step: int, group: int = 0) -> float:
        """The learning rate of parameter group `group` at step `step` (changes nothing)."""
        return self._lr(self.base_lrs[group], step)

    def get_last_lr(self) -> list[float]:
        """The learning rates last set, one per group."""
        return [float(g["lr"]) for g in self.optimizer.param_groups]

    def step(self) -> None:
        """Advance one step and set every group's `lr`."""
        self.last_step += 1
        self._apply()

    def _apply(self) -> None:
        for group, base in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            group["lr"] = self._lr(base, self.last_step)

    def state_dict(self) -> dict[str, Any]:
        return {"last_step": self.last_step, "base_lrs": list(self.base_lrs)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore `state_dict()`: a step count and one finite base rate >= 0 per group."""
        name = type(self).__name__
        step = check_int(f"{name}.last_step", state_dict["last_step"], ge=0)
        n = len(self.optimizer.param_groups)
        lrs = check_value(f"{name}.base_lrs", state_dict["base_lrs"], tuple[(float,) * n],
                          {"ge": 0.0})
        self.last_step, self.base_lrs = step, list(lrs)
        self._apply()


# --8<-- [start:warmup_cosine]
class WarmupCosine(LRScheduler):
    r"""Linear warmup, then cosine decay to `min_lr`, then constant (nanoGPT's `get_lr`):

    $$\eta_t = \begin{cases}
    \eta\,\dfrac{t+1}{w+1} & t < w \\[4pt]
    \eta_{\min} + \tfrac12\bigl(1 + \cos(\pi r)\bigr)(\eta - \eta_{\min}),
    \; r = \dfrac{t-w}{T-w} & w \le t \le T \\[4pt]
    \eta_{\min} & t > T
    \end{cases}$$

    with $w$ = `warmup` and $T$ = `total`. The warmup starts just above 0 (not at 0, so step 0
    still learns) and reaches $\eta$ at $t = w$.
    """

    def __init__(self, optimizer: Optimizer, warmup: int, total: int, min_lr: float) -> None:
        if not 0 <= warmup < total:
            raise ValueError(f"WarmupCosine: need 0 <= warmup < total, got warmup={warmup}, "
                             f"total={total}")
        self.warmup, self.total, self.min_lr = warmup, total, min_lr
        super().__init__(optimizer)

    def _lr(self, base_lr: float, step: int) -> float:
        if step < self.warmup:
            return base_lr * (step + 1) / (self.warmup + 1)
        if step > self.total:
            return self.min_lr
        ratio = (step - self.warmup) / (self.total - self.warmup)  # 0 -> 1
        coeff = 0.5 * (1.0 + math.cos(math.pi * ratio))  # 1 -> 0
        return self.min_lr + coeff * (base_lr - self.min_lr)
# --8<-- [end:warmup_cosine]


class Linear(LRScheduler):
    r"""Linear interpolation of the factor from `start_factor` to `end_factor` over `total`
    steps, then constant: $\eta_t = \eta\,(s + (e - s)\min(t, T)/T)$."""

    def __init__(self, optimizer: Optimizer, total: int, start_factor: float = 1.0,
                 end_factor: float = 0.0) -> None:
        if total <= 0:
            raise ValueError(f"Linear: total must be > 0, got {total}")
        self.total, self.start_factor, self.end_factor = total, start_factor, end_factor
        super().__init__(optimizer)

    def _lr(self, base_lr: float, step: int) -> float:
        frac = min(step, self.total) / self.total
        return base_lr * (self.start_factor + (self.end_factor - self.start_factor) * frac)


class Constant(LRScheduler):
    r"""$\eta_t = \eta$: the base learning rate at every step (a schedule that does nothing,
    so a training loop can always call `step()`)."""

    def _lr(self, base_lr: float, step: int) -> float:
        return base_lr


class Noam(LRScheduler):
    r"""The Transformer paper's schedule (Vaswani et al., 2017), base lr as a factor:

    $$\eta_t = \eta\, d_\text{model}^{-1/2}\,\min\bigl(s^{-1/2},\; s\,w^{-3/2}\bigr),
    \qquad s = t + 1,$$

    linear warmup for $w$ steps, then decay as $1/\sqrt{s}$; the peak, at $s = w$, is
    $\eta/\sqrt{d_\text{model} w}$. Counting from $s = t + 1$ keeps step 0 finite.
    """

    def __init__(self, optimizer: Optimizer, d_model: int, warmup: int) -> None:
        if d_model <= 0 or warmup <= 0:
            raise ValueError(f"Noam: d_model and warmup must be > 0, got {d_model}, {warmup}")
        self.d_model, self.warmup = d_model, warmup
        super().__init__(optimizer)

    def _lr(self, base_lr: float, step: int) -> float:
        s = step + 1
        return base_lr * self.d_model**-0.5 * min(s**-0.5, s * self.warmup**-1.5)
