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
from nima.nn.embedding import Embedding
from nima.nn.module import Module
from nima.nn.normalization import LayerNorm, RMSNorm
from nima.nn.positional import LearnedPositionalEmbedding
from nima.optim.optimizer import Optimizer, ParamsLike


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


NO_DECAY_MODULES: tuple[type[Module], ...] = (
    Embedding, LearnedPositionalEmbedding, LayerNorm, RMSNorm,
)


# --8<-- [start:decay_groups]
def param_groups_for_decay(model: Module, weight_decay: float) -> list[dict[str, Any]]:
    """Two parameter groups: `[{"params": decay, "weight_decay": weight_decay},
    {"params": no_decay, "weight_decay": 0.0}]`.

    A parameter is *not* decayed when it has fewer than 2 dimensions (biases, norm gains) or
    belongs to an embedding or a norm module (`NO_DECAY_MODULES`); every other parameter — the
    weight matrices of linear layers — is. A parameter shared by two modules (a tied embedding
    and output head) is not decayed if any of its owners is in `NO_DECAY_MODULES`.

    nanoGPT splits by `dim() >= 2` alone, so it does decay its (tied) token embedding; Nima
    never decays embeddings. Parameters that do not require grad are
    left out.
    """
    exempt: set[int] = set()
    for module in model.modules():
        for p in module._parameters.values():
            if p is not None and (p.ndim < 2 or isinstance(module, NO_DECAY_MODULES)):
                exempt.add(id(p))
    params = [p for p in model.parameters() if p.requires_grad]
    return [
        {"params": [p for p in params if id(p) not in exempt], "weight_decay": weight_decay},
        {"params": [p for p in params if id(p) in exempt], "weight_decay": 0.0},
    ]
# --8<-- [end:decay_groups]
