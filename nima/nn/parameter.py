"""`Parameter`: a tensor that a `Module` learns.

Assigning a `Parameter` to an attribute of a `Module` registers it, so it shows up in
`parameters()`, `named_parameters()` and `state_dict()` — the same habit as `torch.nn.Parameter`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nima._tensor import Tensor


class Parameter(Tensor):
    """A leaf tensor that requires grad by default and is registered by `Module`.

    `decay` says whether weight decay should apply to it, for the optimizer to read
    (`nima.optim.param_groups_for_decay`): True or False as the layer that owns it decides
    (an embedding table says False), or None for nanoGPT's rule by shape — matrices decay,
    vectors (biases, norm gains) do not.
    """

    __slots__ = ("decay",)

    def __init__(self, data: Any, requires_grad: bool = True, decay: bool | None = None) -> None:
        data = data.data if isinstance(data, Tensor) else data
        array = np.asarray(data)
        if array.dtype.kind != "f":
            array = array.astype(np.float32)
        super().__init__(array, requires_grad=requires_grad)
        self.decay = decay

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()
