r"""`Optimizer`: the base class of every optimizer — parameter groups, `zero_grad`, and a
`state_dict` made of plain arrays and JSON-able scalars.

An optimizer holds `param_groups`, a list of dicts: each has `"params"` (a list of tensors) and
its own hyper-parameters (`"lr"`, `"weight_decay"`, ...), filled from the optimizer's defaults
where the group does not set them — the same layout as `torch.optim`. Per-parameter state (a
momentum buffer, Adam's moments) lives in `state`, keyed by the parameter's `id`.

`state_dict()` keys that state by the parameter's *index* in the order of the groups, as PyTorch
does, so it can be saved without the tensors and loaded into a fresh optimizer built over a fresh
model with the same parameters.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from nima._tensor import Tensor
from nima.settings import check_int, check_known, check_value

ParamsLike = Iterable[Tensor] | Iterable[dict[str, Any]]


class Optimizer:
    """Base class: subclasses set `defaults` and implement `_update(p, grad, group, state)`."""

    def __init__(self, params: ParamsLike, defaults: dict[str, Any]) -> None:
        self.defaults = dict(defaults)
        self.param_groups: list[dict[str, Any]] = []
        self.state: dict[int, dict[str, Any]] = {}
        items = list(params)
        if not items:
            raise ValueError(f"{type(self).__name__}: got an empty parameter list")
        groups = items if isinstance(items[0], dict) else [{"params": items}]
        for group in groups:
            self.add_param_group(group)

    def add_param_group(self, group: dict[str, Any]) -> None:
        """Append a group; hyper-parameters it does not set come from the defaults."""
        params = group["params"]
        params = [params] if isinstance(params, Tensor) else list(params)
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        for p in params:
            if not isinstance(p, Tensor):
                raise TypeError(f"{type(self).__name__}: parameters must be tensors, got "
                                f"{type(p).__name__}")
            if id(p) in seen:
                raise ValueError(f"{type(self).__name__}: a parameter appears in two groups")
            seen.add(id(p))
        unknown = set(group) - set(self.defaults) - {"params"}
        if unknown:
            raise ValueError(f"{type(self).__name__}: unknown group options {sorted(unknown)}")
        self.param_groups.append({**self.defaults, **group, "params": params})

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clear every parameter's gradient: `None` (frees the memory; the default, as in
        PyTorch) or, with `set_to_none=False`, zeros in place."""
        for group in self.param_groups:
            for p in group["params"]:
                if set_to_none:
                    p.grad = None
                elif p.grad is not None:
                    p.grad.fill(0)

    def step(self) -> None:
        """Update every parameter that has a gradient; parameters without one are skipped."""
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                self._update(p, p.grad, group, self.state.setdefault(id(p), {}))

    def _update(self, p: Tensor, grad: np.ndarray, group: dict[str, Any],
                state: dict[str, Any]) -> None:
        raise NotImplementedError

    # ----------------------------------------------------------------------------- state
    def _indexed_params(self) -> list[Tensor]:
        return [p for group in self.param_groups for p in group["params"]]

    def state_dict(self) -> dict[str, Any]:
        """`{"state": {index: {name: array or scalar}}, "param_groups": [{..., "params":
        [index, ...]}]}`: copies, with no tensors, ready for a safetensors + JSON checkpoint."""
        index = {id(p): i for i, p in enumerate(self._indexed_params())}
        state = {
            index[pid]: {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in s.items()}
            for pid, s in self.state.items() if pid in index
        }
        groups = [{**{k: v for k, v in g.items() if k != "params"},
                   "params": [index[id(p)] for p in g["params"]]} for g in self.param_groups]
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore hyper-parameters and state saved by `state_dict()`; the groups must hold the
        same number of parameters with the same shapes, each hyper-parameter must be of the
        kind the optimizer holds (a finite number, a flag, a pair of numbers), and each
        parameter's state what `_update` keeps (`_check_state`). Keys may be ints or strings
        (JSON). Raises `ValueError` (or `TypeError`/`KeyError` for a malformed dict), naming
        what does not fit, before anything is changed."""
        groups = state_dict["param_groups"]
        if len(groups) != len(self.param_groups):
            raise ValueError(f"{type(self).__name__}.load_state_dict: {len(groups)} groups saved,"
                             f" optimizer has {len(self.param_groups)}")
        for saved, group in zip(groups, self.param_groups, strict=True):
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(f"{type(self).__name__}.load_state_dict: a group saved with "
                                 f"{len(saved['params'])} parameters, optimizer has "
                                 f"{len(group['params'])}")
        owner = type(self).__name__
        options = []
        for i, (saved, group) in enumerate(zip(groups, self.param_groups, strict=True)):
            options.append({})
            for key, value in saved.items():
                if key != "params":
                    name = f"{owner}.param_groups[{i}].{key}"
                    check_known(name, key, group)
                    options[-1][key] = _same_kind(name, group[key], value)
        params = self._indexed_params()
        new_state: dict[int, dict[str, Any]] = {}
        for key, s in state_dict["state"].items():
            index = check_int(f"{owner}.state key", int(key), ge=0)
            if index >= len(params):
                raise ValueError(f"{owner}.load_state_dict: state for parameter {index}, the "
                                 f"optimizer has {len(params)}")
            p = params[index]
            entry: dict[str, Any] = {}
            for name, value in s.items():
                if isinstance(value, np.ndarray):
                    if value.shape != p.shape:
                        raise ValueError(f"{owner}.load_state_dict: state "
                                         f"'{name}' of parameter {key} has shape {value.shape}, "
                                         f"parameter has {p.shape}")
                    value = value.astype(p.dtype, copy=True)
                entry[name] = value
            self._check_state(f"{owner}.state[{index}]", entry)
            new_state[id(p)] = entry
        self.state = new_state
        for saved, group in zip(options, self.param_groups, strict=True):
            group.update(saved)

    def _check_state(self, name: str, entry: dict[str, Any]) -> None:
        """Raise `ValueError` unless `entry` is state `_update` can work with; subclasses that
        keep state say what it is."""
        if entry:
            raise ValueError(f"{name}: {type(self).__name__} keeps no state, got "
                             f"{sorted(entry)}")

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, g in enumerate(self.param_groups):
            opts = ", ".join(f"{k}={v}" for k, v in g.items() if k != "params")
            lines.append(f"  group {i}: {len(g['params'])} params, {opts}")
        return "\n".join([*lines, ")"])


def _same_kind(name: str, current: Any, value: Any) -> Any:
    """`value`, checked to be of the kind of the hyper-parameter `current` (a finite number, a
    flag, a tuple of numbers, or None), with tuples restored from JSON lists."""
    if isinstance(current, bool):
        return check_value(name, value, bool)
    if current is None:
        return check_value(name, value, float | None)
    if isinstance(current, int | float):
        return check_value(name, value, float)
    if isinstance(current, tuple):
        return check_value(name, value, tuple[(float,) * len(current)])
    return value
