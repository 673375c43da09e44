"""`Parameter`: a tensor that a `Module` learns.

Assigning a `Parameter` to an attribute of a `Module` registers it, so it shows up in
`parameters()`, `named_parameters()` and `state_dict()` — the same habit as `torch.nn.Parameter`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nima._tensor import Tensor


class Parameter(Tensor):
    """A leaf tensor that requires grad by default and is registered by `Module`."""

    __slots__ = ()

    def __init__(self, data: Any, requires_grad: bool = True) -> None:
        data = data.data if isinstance(data, Tensor) else data
        array = np.asarray(data)
        if array.dtype.kind != "f":
            array = array.astype(np.float32)
        super().__init__(array, requires_grad=requires_grad)

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()
