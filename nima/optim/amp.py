r"""`GradScaler`: dynamic loss scaling for float16 training.

float16 stops at 65504 and its smallest normal number is about $6 \times 10^{-5}$, so small
gradients underflow to zero. Multiplying the loss by a scale $S$ multiplies every gradient by
$S$ (the chain rule is linear), lifting them into range; dividing by $S$ before the step
restores them. Too large an $S$ overflows to inf — so the scaler *watches*: a step whose
gradients hold inf or NaN is skipped and $S$ is halved; after `growth_interval` good steps in a
row, $S$ is doubled. The same algorithm as `torch.amp.GradScaler`:

```python
scaler = GradScaler()
loss = model(x).mean()
scaler.scale(loss).backward()
scaler.unscale_(opt)                 # optional: only to clip the true gradients
clip_grad_norm_(model.parameters(), 1.0)
scaler.step(opt)                     # skipped if a gradient is inf/NaN
scaler.update()                      # back off, or grow after N good steps
opt.zero_grad()
```
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nima._tensor import Tensor
from nima.optim.optimizer import Optimizer
from nima.settings import check_int, check_value


class GradScaler:
    """Scale the loss, unscale and check the gradients, step only when they are finite."""

    def __init__(self, init_scale: float = 2.0**16, growth_factor: float = 2.0,
                 backoff_factor: float = 0.5, growth_interval: int = 2000,
                 enabled: bool = True) -> None:
        if growth_factor <= 1 or not 0 < backoff_factor < 1 or growth_interval < 1:
            raise ValueError("GradScaler: need growth_factor > 1, 0 < backoff_factor < 1, "
                             f"growth_interval >= 1; got {growth_factor}, {backoff_factor}, "
                             f"{growth_interval}")
        self.scale_value = float(init_scale)
        self.growth_factor, self.backoff_factor = growth_factor, backoff_factor
        self.growth_interval, self.enabled = growth_interval, enabled
        self._growth_tracker = 0
        self._found_inf: dict[int, bool] = {}  # id(optimizer) -> inf seen, this iteration

    def get_scale(self) -> float:
        return self.scale_value if self.enabled else 1.0

    def scale(self, loss: Tensor) -> Tensor:
        """`loss * S`; call `backward()` on the result."""
        return loss * self.scale_value if self.enabled else loss

    # --8<-- [start:scaler]
    def unscale_(self, optimizer: Optimizer) -> None:
        """Divide the optimizer's gradients by $S$ in place and record whether any is inf/NaN.
        At most once per optimizer between `update()` calls."""
        if not self.enabled:
            return
        if id(optimizer) in self._found_inf:
            raise RuntimeError("GradScaler.unscale_: already called for this optimizer since "
                               "the last update()")
        found_inf = False
        for group in optimizer.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                # $g \leftarrow g / S$, computed in at least float32: $1/S$ underflows float16
                work = np.promote_types(p.grad.dtype, np.float32)
                p.grad[...] = p.grad.astype(work) * work.type(1.0 / self.scale_value)
                found_inf = found_inf or not bool(np.isfinite(p.grad).all())
        self._found_inf[id(optimizer)] = found_inf

    def step(self, optimizer: Optimizer) -> bool:
        """Unscale (if not done yet) and take the step unless a gradient was inf/NaN; return
        whether the step was taken."""
        if not self.enabled:
            optimizer.step()
            return True
        if id(optimizer) not in self._found_inf:
            self.unscale_(optimizer)
        if self._found_inf[id(optimizer)]:
            return False  # skipped: the weights stay as they were
        optimizer.step()
        return True

    def update(self) -> None:
        r"""Back off ($S \leftarrow S \cdot$ `backoff_factor`) if this iteration overflowed,
        else count a good step and grow $S$ after `growth_interval` of them in a row."""
        if not self.enabled:
            return
        if any(self._found_inf.values()):
            self.scale_value *= self.backoff_factor
            self._growth_tracker = 0
        else:
            self._growth_tracker += 1
            if self._growth_tracker == self.growth_interval:
                self.scale_value *= self.growth_factor
                self._growth_tracker = 0
        self._found_inf.clear()
    # --8<-- [end:scaler]

    def state_dict(self) -> dict[str, Any]:
        return {"scale": self.scale_value, "growth_factor": self.growth_factor,
                "backoff_factor": self.backoff_factor, "growth_interval": self.growth_interval,
                "growth_tracker": self._growth_tracker}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore `state_dict()`, each value checked as the constructor checks it."""
        def number(key: str, **bounds: float) -> float:
            return check_value(f"GradScaler.{key}", state_dict[key], float, bounds)

        values = (number("scale", gt=0.0), number("growth_factor", gt=1.0),
                  number("backoff_factor", gt=0.0, lt=1.0),
                  check_int("GradScaler.growth_interval", state_dict["growth_interval"], ge=1),
                  check_int("GradScaler.growth_tracker", state_dict["growth_tracker"], ge=0))
        (self.scale_value, self.growth_factor, self.backoff_factor, self.growth_interval,
         self._growth_tracker) = values
