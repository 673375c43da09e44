r"""`SGD`: stochastic gradient descent with momentum, Nesterov momentum and weight decay.

The update follows PyTorch's documented formulas (`torch.optim.SGD`), with $g_t$ the gradient,
$\mu$ the momentum, $\tau$ the dampening and $\lambda$ the weight decay:

$$g_t \leftarrow g_t + \lambda\theta_{t-1}, \qquad
b_t = \begin{cases} g_t & t = 1 \\ \mu b_{t-1} + (1-\tau) g_t & t > 1 \end{cases}$$

$$\theta_t = \theta_{t-1} - \eta\,\begin{cases} g_t + \mu b_t & \text{Nesterov} \\
b_t & \text{otherwise} \end{cases}$$

Note the learning rate multiplies the buffer, not the gradient going into it (Sutskever et al.
put it inside); the two agree while the learning rate is constant.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nima._tensor import Tensor
from nima.optim.optimizer import Optimizer, ParamsLike


class SGD(Optimizer):
    """SGD: `SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)`."""

    def __init__(self, params: ParamsLike, lr: float = 1e-3, momentum: float = 0.0,
                 dampening: float = 0.0, weight_decay: float = 0.0,
                 nesterov: bool = False) -> None:
        if lr < 0 or momentum < 0 or weight_decay < 0:
            raise ValueError(f"SGD: lr, momentum and weight_decay must be >= 0, got lr={lr}, "
                             f"momentum={momentum}, weight_decay={weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("SGD: nesterov needs momentum > 0 and dampening = 0")
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov))

    def _check_state(self, name: str, entry: dict[str, Any]) -> None:
        """A parameter's state is its momentum buffer, once momentum has run."""
        if set(entry) - {"momentum_buffer"}:
            raise ValueError(f"{name}: expected momentum_buffer, got {sorted(entry)}")
        if not isinstance(entry.get("momentum_buffer", np.zeros(0)), np.ndarray):
            raise ValueError(f"{name}.momentum_buffer: expected an array")

    # --8<-- [start:sgd]
    def _update(self, p: Tensor, grad: np.ndarray, group: dict[str, Any],
                state: dict[str, Any]) -> None:
        dtype = p.data.dtype  # hyper-parameters cast to it, so float32 stays float32
        lr, mu = dtype.type(group["lr"]), dtype.type(group["momentum"])
        g = grad.astype(dtype, copy=False)
        if group["weight_decay"]:
            # L2 penalty as a gradient term: $g \leftarrow g + \lambda\theta$
            g = g + dtype.type(group["weight_decay"]) * p.data
        if mu:
            buf = state.get("momentum_buffer")
            if buf is None:
                # $b_1 = g_1$
                buf = state["momentum_buffer"] = g.copy()
            else:
                # $b_t = \mu b_{t-1} + (1-\tau) g_t$
                buf *= mu
                buf += dtype.type(1 - group["dampening"]) * g
            # Nesterov looks ahead: $g + \mu b_t$; plain momentum steps along $b_t$
            g = g + mu * buf if group["nesterov"] else buf
        # $\theta \leftarrow \theta - \eta g$
        p.data -= lr * g
    # --8<-- [end:sgd]
