r"""`Adam` and `AdamW`, and `param_groups_for_decay` (which parameters get weight decay).

Adam (Kingma & Ba, 2015) keeps running averages of the gradient and of its square,

$$m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t, \qquad v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2,$$

corrects their bias toward zero (both start at 0),
$\hat m_t = m_t / (1-\beta_1^t)$, $\hat v_t = v_t / (1-\beta_2^t)$, and steps
$\theta_t = \theta_{t-1} - \eta\,\hat m_t / (\sqrt{\hat v_t} + \epsilon)$.

`Adam`'s `weight_decay` is an L2 penalty added to the gradient ($g_t + \lambda\theta$), which the
division by $\sqrt{\hat v_t}$ then rescales. `AdamW` (Loshchilov & Hutter, 2019) decouples it:
$\theta \leftarrow \theta - \eta\lambda\theta$ before the Adam step, so every weight decays at the
same rate whatever its gradient history. Both match `torch.optim.Adam` / `AdamW`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nima import kernels
from nima._tensor import Tensor
from nima.optim.optimizer import Optimizer, ParamsLike
from nima.settings import check_int


class Adam(Optimizer):
    """Adam with L2 weight decay in the gradient (as `torch.optim.Adam`).

    `fused`: update each parameter in one pass of the numba kernel (True), with the NumPy
    reference (False), or as the active kernel backend says (None, the default: fused when
    the numba kernels are active). Both give the same numbers; `fused` is not saved in the
    `state_dict`, so checkpoints move freely between the two.
    """

    decoupled = False

    def __init__(self, params: ParamsLike, lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, fused: bool | None = None) -> None:
        if lr < 0 or eps < 0 or weight_decay < 0:
            raise ValueError(f"{type(self).__name__}: lr, eps and weight_decay must be >= 0, got "
                             f"lr={lr}, eps={eps}, weight_decay={weight_decay}")
        if not all(0 <= b < 1 for b in betas):
            raise ValueError(f"{type(self).__name__}: betas must be in [0, 1), got {betas}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps,
                                      weight_decay=weight_decay))
        self.fused = fused

    def _check_state(self, name: str, entry: dict[str, Any]) -> None:
        """A parameter's state is its step count and its two moments."""
        if set(entry) != {"step", "exp_avg", "exp_avg_sq"}:
            raise ValueError(f"{name}: expected step, exp_avg and exp_avg_sq, got "
                             f"{sorted(entry)}")
        check_int(f"{name}.step", entry["step"], ge=0)
        for key in ("exp_avg", "exp_avg_sq"):
            if not isinstance(entry[key], np.ndarray):
                raise ValueError(f"{name}.{key}: expected an array, got "
                                 f"{type(entry[key]).__name__}")

    # --8<-- [start:adam]
    def _update(self, p: Tensor, grad: np.ndarray, group: dict[str, Any],
                state: dict[str, Any]) -> None:
        if not state:
            state["step"] = 0
            state["exp_avg"] = np.zeros_like(p.data)  # $m_0 = 0$
            state["exp_avg_sq"] = np.zeros_like(p.data)  # $v_0 = 0$
        state["step"] += 1
        b1, b2 = group["betas"]
        # the equations: `nima.kernels.adam`, a NumPy reference beside a fused numba kernel
        kernels.adam_update(p.data, grad, state["exp_avg"], state["exp_avg_sq"], group["lr"],
                            b1, b2, group["eps"], group["weight_decay"], state["step"],
                            self.decoupled, self.fused)
    # --8<-- [end:adam]


class AdamW(Adam):
    r"""Adam with decoupled weight decay $\theta \leftarrow \theta - \eta\lambda\theta$
    (default $\lambda = 0.01$, as `torch.optim.AdamW`)."""

    decoupled = True

    def __init__(self, params: ParamsLike, lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, fused: bool | None = None) -> None:
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         fused=fused)


# --8<-- [start:decay_groups]
def param_groups_for_decay(params: Any, weight_decay: float) -> list[dict[str, Any]]:
    """Two parameter groups: `[{"params": decay, "weight_decay": weight_decay},
    {"params": no_decay, "weight_decay": 0.0}]`, of a model's parameters (or an iterable of
    them).

    Each parameter says for itself (`Parameter.decay`, set by the layer that owns it): an
    embedding table does not decay; with no word from its layer, a parameter decays when it has
    at least 2 dimensions — the weight matrices of linear layers — and not when it is a vector
    (biases, norm gains), nanoGPT's rule. Parameters that do not require grad are left out.
    """
    if hasattr(params, "parameters"):
        params = params.parameters()
    params = [p for p in params if p.requires_grad]

    def decays(p: Tensor) -> bool:
        flag = getattr(p, "decay", None)
        return p.ndim >= 2 if flag is None else bool(flag)

    return [
        {"params": [p for p in params if decays(p)], "weight_decay": weight_decay},
        {"params": [p for p in params if not decays(p)], "weight_decay": 0.0},
    ]
# --8<-- [end:decay_groups]
