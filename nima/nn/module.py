"""`Module`: the base class of every layer and model, with PyTorch's habits.

Assigning a `Parameter` or a `Module` to an attribute registers it, so a model is a tree:
`named_parameters()` walks it (dotted names such as `blocks.0.attn.qkv.weight`), `state_dict()`
snapshots it, `load_state_dict()` restores it with errors that name what is missing, unexpected
or mis-shaped, and `train()`/`eval()` flip the mode of every submodule (dropout reads it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import numpy as np

from nima._tensor import Tensor
from nima.autograd import no_grad
from nima.nn.parameter import Parameter


class LoadResult(NamedTuple):
    """What `load_state_dict(strict=False)` could not match."""

    missing_keys: list[str]
    unexpected_keys: list[str]


class HookHandle:
    """Removes the hook it was returned for: `handle.remove()`, or at the end of a `with`."""

    _next_id = 0

    def __init__(self, hooks: dict[int, Any]) -> None:
        self.hooks, self.id = hooks, HookHandle._next_id
        HookHandle._next_id += 1

    def remove(self) -> None:
        self.hooks.pop(self.id, None)

    def __enter__(self) -> HookHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


class Module:
    """Base class for layers: define `__init__` (assign submodules and parameters) and
    `forward`; call the module like a function."""

    training: bool

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", {})
        object.__setattr__(self, "_buffers", {})
        object.__setattr__(self, "_non_persistent", set())
        object.__setattr__(self, "_modules", {})
        object.__setattr__(self, "_forward_pre_hooks", {})
        object.__setattr__(self, "training", True)

    # ----------------------------------------------------------------------------- registration
    # --8<-- [start:registration]
    def __setattr__(self, name: str, value: Any) -> None:
        if "_parameters" not in self.__dict__:
            raise AttributeError(
                f"cannot assign '{name}' before Module.__init__() ran: call super().__init__() "
                f"first in {type(self).__name__}.__init__"
            )
        params, buffers, modules = self._parameters, self._buffers, self._modules
        if isinstance(value, Parameter):
            buffers.pop(name, None), modules.pop(name, None)
            params[name] = value
        elif isinstance(value, Module):
            params.pop(name, None), buffers.pop(name, None)
            modules[name] = value
        elif name in buffers and (value is None or isinstance(value, Tensor)):
            buffers[name] = value  # a buffer stays a buffer when replaced
        else:
            params.pop(name, None), buffers.pop(name, None), modules.pop(name, None)
        object.__setattr__(self, name, value)
    # --8<-- [end:registration]

    def __delattr__(self, name: str) -> None:
        for registry in (self._parameters, self._buffers, self._modules):
            registry.pop(name, None)
        object.__delattr__(self, name)

    def register_buffer(self, name: str, tensor: Tensor | None, persistent: bool = True) -> None:
        """A tensor that belongs to the module's state but is not learned (a cached table, a
        running statistic); in `state_dict()` unless `persistent=False`."""
        if tensor is not None and (not isinstance(tensor, Tensor) or isinstance(tensor, Parameter)):
            raise TypeError(f"register_buffer: {type(self).__name__}.{name} must be a Tensor "
                            f"(not a Parameter) or None, got {type(tensor).__name__}")
        if "." in name or name in self._parameters or name in self._modules:
            raise KeyError(f"register_buffer: {type(self).__name__} cannot register {name!r} "
                           f"(a '.' in the name, or already a parameter or submodule)")
        object.__setattr__(self, name, tensor)
        self._buffers[name] = tensor
        if persistent:
            self._non_persistent.discard(name)
        else:
            self._non_persistent.add(name)

    def register_parameter(self, name: str, param: Parameter | None) -> None:
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"register_parameter: {type(self).__name__}.{name} must be a "
                            f"Parameter or None, got {type(param).__name__}")
        if param is None:
            object.__setattr__(self, name, None)
            self._parameters[name] = None
        else:
            setattr(self, name, param)

    # ----------------------------------------------------------------------------- calling
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} has no forward()")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self._forward_pre_hooks:
            for hook in list(self._forward_pre_hooks.values()):
                changed = hook(self, args)
                if changed is not None:
                    args = changed if isinstance(changed, tuple) else (changed,)
        return self.forward(*args, **kwargs)

    def register_forward_pre_hook(self, hook: Callable[[Module, tuple[Any, ...]], Any]
                                  ) -> HookHandle:
        """Call `hook(module, args)` before every `forward`, as PyTorch does; if it returns
        something other than None, that replaces the positional arguments (a tuple, or one
        value). Returns a handle whose `remove()` unregisters it (also a context manager)."""
        handle = HookHandle(self._forward_pre_hooks)
        self._forward_pre_hooks[handle.id] = hook
        return handle

    # ----------------------------------------------------------------------------- the tree
    def named_children(self) -> Iterator[tuple[str, Module]]:
        yield from self._modules.items()

    def children(self) -> Iterator[Module]:
        for _, module in self.named_children():
            yield module

    # --8<-- [start:walks]
    def named_modules(self, prefix: str = "",
                      remove_duplicate: bool = True) -> Iterator[tuple[str, Module]]:
        """This module and every submodule, depth first; a module reachable under several
        names comes once (under the first) unless `remove_duplicate=False`."""
        seen: set[int] = set()
        stack = [(prefix, self)]
        while stack:
            name, module = stack.pop()
            if remove_duplicate and id(module) in seen:
                continue
            seen.add(id(module))
            yield name, module
            children = list(module.named_children())
            for child_name, child in reversed(children):
                stack.append((f"{name}.{child_name}" if name else child_name, child))

    def modules(self) -> Iterator[Module]:
        for _, module in self.named_modules():
            yield module

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        """(dotted name, parameter) pairs; a parameter shared by two modules (weight tying)
        comes once, under the first name met."""
        seen: set[int] = set()
        for module_name, module in self.named_modules(prefix):
            for name, param in module._parameters.items():
                if param is None or id(param) in seen:
                    continue
                seen.add(id(param))
                yield (f"{module_name}.{name}" if module_name else name), param
    # --8<-- [end:walks]

    def parameters(self) -> Iterator[Parameter]:
        for _, param in self.named_parameters():
            yield param

    def named_buffers(self) -> Iterator[tuple[str, Tensor]]:
        for module_name, module in self.named_modules():
            for name, buf in module._buffers.items():
                if buf is not None:
                    yield (f"{module_name}.{name}" if module_name else name), buf

    def num_parameters(self, trainable_only: bool = False) -> int:
        """How many numbers the model learns (shared parameters counted once)."""
        return sum(p.size for p in self.parameters() if p.requires_grad or not trainable_only)

    # ----------------------------------------------------------------------------- state
    # --8<-- [start:state_dict]
    def state_dict(self) -> dict[str, np.ndarray]:
        """Every parameter and persistent buffer by dotted name, as arrays sharing memory with
        the model. A tied parameter (or shared module) appears under each of its names, as in
        PyTorch."""
        state: dict[str, np.ndarray] = {}
        for module_name, module in self.named_modules(remove_duplicate=False):
            dot = f"{module_name}." if module_name else ""
            for name, param in module._parameters.items():
                if param is not None:
                    state[dot + name] = param.data
            for name, buf in module._buffers.items():
                if buf is not None and name not in module._non_persistent:
                    state[dot + name] = buf.data
        return state

    def load_state_dict(self, state_dict: dict[str, Any], strict: bool = True) -> LoadResult:
        """Copy values into the model's own arrays (so tied parameters stay tied).

        Shape mismatches always raise; with `strict=True` (the default) missing and unexpected
        keys raise too, naming them; with `strict=False` they are returned.
        """
        own = {}
        for module_name, module in self.named_modules(remove_duplicate=False):
            dot = f"{module_name}." if module_name else ""
            for name, t in module._parameters.items():
                if t is not None:
                    own[dot + name] = t
            for name, t in module._buffers.items():
                if t is not None and name not in module._non_persistent:
                    own[dot + name] = t
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        mismatched = [
            f"{k}: checkpoint {np.shape(state_dict[k])} vs model {own[k].shape}"
            for k in own if k in state_dict and np.shape(state_dict[k]) != own[k].shape
        ]
        problems = []
        if mismatched:
            problems.append("shape mismatch for " + "; ".join(mismatched))
        if strict and missing:
            problems.append(f"missing keys {missing}")
        if strict and unexpected:
            problems.append(f"unexpected keys {unexpected}")
        if problems:
            raise ValueError(f"load_state_dict for {type(self).__name__}: " + ", ".join(problems))
        for key, target in own.items():
            if key in state_dict:
                value = state_dict[key]
                target.data[...] = np.asarray(value.data if isinstance(value, Tensor) else value)
        return LoadResult(missing, unexpected)
    # --8<-- [end:state_dict]

    # ----------------------------------------------------------------------------- modes
    # --8<-- [start:modes]
    def train(self, mode: bool = True) -> Module:
        """Training mode for this module and every submodule (dropout active)."""
        for module in self.modules():
            object.__setattr__(module, "training", mode)
        return self

    def eval(self) -> Module:
        """Evaluation mode: `train(False)`."""
        return self.train(False)
    # --8<-- [end:modes]

    def zero_grad(self) -> None:
        """Forget accumulated gradients (`.grad = None`), before the next backward."""
        for param in self.parameters():
            param.grad = None

    def requires_grad_(self, requires_grad: bool = True) -> Module:
        """Freeze (`False`) or unfreeze every parameter."""
        for param in self.parameters():
            param.requires_grad_(requires_grad)
        return self

    # --8<-- [start:apply]
    def apply(self, fn: Callable[[Module], None]) -> Module:
        """Call `fn` on every submodule, then on this one (as PyTorch does, e.g. for init)."""
        for module in reversed(list(self.modules())):
            fn(module)
        return self
    # --8<-- [end:apply]

    def to(self, dtype: Any) -> Module:
        """Cast every parameter and buffer to `dtype` in place (the objects stay the same, so
        optimizers and tied weights keep pointing at them)."""
        dtype = np.dtype(dtype)
        with no_grad():
            for module in self.modules():
                for t in (*module._parameters.values(), *module._buffers.values()):
                    if t is not None and t.data.dtype.kind == "f":
                        t.data = t.data.astype(dtype)
                        t.grad = None
        return self

    def double(self) -> Module:
        return self.to(np.float64)

    def float(self) -> Module:
        return self.to(np.float32)

    # ----------------------------------------------------------------------------- repr
    def extra_repr(self) -> str:
        """One line of settings shown in the repr, e.g. `in_features=4, out_features=2`."""
        return ""

    def __repr__(self) -> str:
        lines = [f"({name}): " + _indent(repr(child)) for name, child in self.named_children()]
        head = f"{type(self).__name__}({self.extra_repr()}"
        if not lines:
            return head + ")"
        return head + "\n  " + "\n  ".join(lines) + "\n)"


def _indent(text: str) -> str:
    return text.replace("\n", "\n  ")
