r"""Reverse-mode automatic differentiation: `Function`, the graph it records, and the engine.

An op is a `Function` subclass with two static methods side by side:

* `forward(ctx, *inputs)` computes the output from plain NumPy arrays and saves what the
  backward needs with `ctx.save_for_backward(...)`;
* `backward(ctx, grad)` receives $\bar y = \partial L / \partial y$ and returns the
  vector–Jacobian products $\bar x_i = \bar y \, \partial y / \partial x_i$, one per input.

`Function.apply` runs the forward on the inputs' arrays and, when grad mode is on and an input
requires grad, records the node (the `Context`) on the output tensor. With grad mode off it
records nothing and keeps nothing: the forward gets a context whose `save_for_backward`
discards what it is given, so inference pays for the arithmetic and little else.

`backward` walks the recorded graph once in reverse topological order — with an explicit
worklist, so a chain of 100,000 ops needs no recursion — applying the chain rule

$$\bar x = \sum_{y \,\in\, \text{consumers}(x)} \bar y \, \frac{\partial y}{\partial x}.$$

Gradients of broadcast inputs are summed back to the input's shape here, once, for every op
(see `unbroadcast`), so no op has to remember to do it.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any

import numpy as np

from nima._tensor import Tensor


# --8<-- [start:grad_mode]
class _ThreadMode(threading.local):
    """Grad mode, one per thread (as in PyTorch): a thread that decodes under `no_grad` leaves
    another thread's training untouched. A new thread starts with grad mode on."""

    grad_enabled = True


_mode = _ThreadMode()


def is_grad_enabled() -> bool:
    """True when ops record the graph for `backward` (the default) in this thread."""
    return _mode.grad_enabled


class _GradMode(contextlib.ContextDecorator):
    """Set this thread's grad mode inside a `with` block or a decorated function, then restore
    it."""

    enabled: bool

    def __enter__(self) -> None:
        self._previous = _mode.grad_enabled
        _mode.grad_enabled = self.enabled

    def __exit__(self, *exc: object) -> None:
        _mode.grad_enabled = self._previous

    def _recreate_cm(self) -> _GradMode:
        """A fresh instance per decorated call, so recursive calls each restore their own mode."""
        return type(self)()


class no_grad(_GradMode):
    """Do not record the graph: `with nima.no_grad(): ...` or `@nima.no_grad()`."""

    enabled = False


class enable_grad(_GradMode):
    """Record the graph again, e.g. inside a `no_grad` block."""

    enabled = True
# --8<-- [end:grad_mode]


class Context:
    """A recorded node: the `Function` that made a tensor, its inputs, and what backward needs.

    `needs_input_grad[i]` tells the backward whether input `i` wants a gradient, so it can skip
    work; `parents` are the inputs themselves (tensors or plain values). Ops may also store
    plain attributes on it (`ctx.dim = dim`).
    """

    function: type[Function]
    parents: tuple[Any, ...]
    needs_input_grad: list[bool]
    saved_tensors: tuple[Any, ...] | None = ()

    def save_for_backward(self, *values: Any) -> None:
        """Keep arrays (or anything else) for `backward`; freed after it runs."""
        self.saved_tensors = values


class _Unrecorded(Context):
    """The context of a forward that nothing will differentiate (grad mode off, or no input
    requires grad): it keeps nothing, so no array outlives the forward because of it."""

    def save_for_backward(self, *values: Any) -> None:
        pass


# --8<-- [start:function]
class Function:
    """Base class of every differentiable op; subclasses define `forward` and `backward`."""

    @staticmethod
    def forward(ctx: Context, *args: Any, **kwargs: Any) -> np.ndarray:
        raise NotImplementedError

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray) -> Any:
        raise NotImplementedError

    @classmethod
    def apply(cls, *args: Any, **kwargs: Any) -> Tensor:
        """Run `forward` on the arrays inside `args`; record the node if a gradient is needed."""
        arrays = [a.data if isinstance(a, Tensor) else a for a in args]
        if not _mode.grad_enabled:  # nothing will be differentiated: record nothing
            return Tensor._from_array(_run(cls, _Unrecorded(), arrays, kwargs), False)
        needs = [isinstance(a, Tensor) and a.requires_grad for a in args]
        if True not in needs:
            return Tensor._from_array(_run(cls, _Unrecorded(), arrays, kwargs), False)
        ctx = Context()
        ctx.needs_input_grad = needs
        result = Tensor._from_array(_run(cls, ctx, arrays, kwargs), True)
        ctx.function = cls
        ctx.parents = args
        result._ctx = ctx
        return result
# --8<-- [end:function]


def _run(cls: type[Function], ctx: Context, arrays: list[Any], kwargs: dict[str, Any]) -> Any:
    """`cls.forward`, with a shape error prefixed by the op's name and its input shapes."""
    try:
        return cls.forward(ctx, *arrays, **kwargs)
    except ValueError as e:
        shapes = ", ".join(str(a.shape) for a in arrays if isinstance(a, np.ndarray))
        raise ValueError(f"{cls.__name__.lower()}: {e} (input shapes: {shapes})") from e


# --8<-- [start:unbroadcast]
def unbroadcast(grad: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    r"""Sum `grad` back to `shape`, undoing NumPy broadcasting.

    Broadcasting copies an input along new leading axes and along axes of size 1; the copies
    all feed the loss, so their gradients add up: $\bar x = \sum_{\text{copies}} \bar y$.

    Example: `x` of shape `(3, 1)` broadcast to `(2, 3, 4)` gets
    `grad.sum(axis=0).sum(axis=-1, keepdims=True)`.
    """
    if grad.shape == shape:
        return grad
    extra = grad.ndim - len(shape)
    axes = tuple(range(extra)) + tuple(
        i + extra for i, n in enumerate(shape) if n == 1 and grad.shape[i + extra] != 1
    )
    return grad.sum(axis=axes).reshape(shape)
# --8<-- [end:unbroadcast]


# --8<-- [start:backward]
def backward(root: Tensor, gradient: Any = None, retain_graph: bool = False) -> None:
    r"""Accumulate $\partial\,\text{root} / \partial\,\text{leaf}$ into every leaf's `.grad`.

    First counts, for every tensor, the edges through which gradient will flow back into it;
    then, from the root, calls each node's `backward` once all of those have arrived, with their
    sum — a worklist, not recursion, so deep graphs are fine — and frees the saved arrays
    unless `retain_graph=True`.
    """
    if not root.requires_grad:
        raise RuntimeError(
            "backward: the tensor does not require grad and has no graph "
            "(create its inputs with requires_grad=True, outside no_grad)"
        )
    if gradient is None:
        if root.data.size != 1:
            raise RuntimeError(
                f"backward: gradient can be implied only for a scalar output, got shape "
                f"{root.shape}; pass gradient= an array of that shape"
            )
        gradient = np.ones_like(root.data)
    else:
        gradient = np.asarray(gradient.data if isinstance(gradient, Tensor) else gradient,
                              dtype=root.data.dtype)
        if gradient.shape != root.shape:
            raise ValueError(
                f"backward: gradient shape {gradient.shape} does not match output shape "
                f"{root.shape}"
            )

    pending = _count_consumers(root)
    grads: dict[int, np.ndarray] = {id(root): gradient}
    given = {id(gradient)}  # arrays someone else holds: the caller's, or a .grad already set
    ready = [root]
    while ready:
        node = ready.pop()
        grad = grads.pop(id(node), None)  # None: every consumer sent None (a zero gradient)
        ctx = node._ctx
        if grad is not None and (ctx is None or node._retains_grad):
            if node.grad is None:  # the first gradient: keep the engine's own array as is
                node.grad = grad if _owned(grad, given) else grad.copy()
                given.add(id(node.grad))
            else:
                node.grad = node.grad + grad
        if ctx is None:
            continue
        input_grads = () if grad is None else ctx.function.backward(ctx, grad)
        if type(input_grads) is not tuple:
            input_grads = (input_grads,)
        if len(input_grads) < len(ctx.parents):
            input_grads += (None,) * (len(ctx.parents) - len(input_grads))
        for parent, need, g in zip(ctx.parents, ctx.needs_input_grad, input_grads, strict=False):
            if not need:
                continue
            key = id(parent)
            if g is not None:
                if g.shape != parent.data.shape:
                    g = unbroadcast(g, parent.data.shape)
                grads[key] = grads[key] + g if key in grads else g
            left = pending[key] - 1
            pending[key] = left
            if not left:  # released even without a gradient, so its inputs are too
                ready.append(parent)
        if not retain_graph:
            ctx.saved_tensors = None


def _owned(grad: np.ndarray, given: set[int]) -> bool:
    """True if `grad` may become a `.grad` without a copy: an array of its own (not a view), made
    during this backward and not yet stored anywhere. Anything else is copied, so that an
    in-place update of one `.grad` (clipping, unscaling) never changes another array."""
    return grad.base is None and grad.flags.writeable and id(grad) not in given


def _count_consumers(root: Tensor) -> dict[int, int]:
    """For every tensor below `root`, how many recorded edges lead out of it toward `root`.

    A tensor is processed only once all of them have delivered their gradient (Kahn's algorithm
    on the reversed graph), so each node's backward runs exactly once, with the full sum.
    """
    pending: dict[int, int] = {}
    stack = [root]
    while stack:
        ctx = stack.pop()._ctx
        if ctx is None:
            continue
        if ctx.saved_tensors is None:
            raise RuntimeError(
                f"backward: trying to go through the graph a second time: the buffers of "
                f"'{ctx.function.__name__}' were freed by the first backward(); "
                f"pass retain_graph=True to the first call if you need to"
            )
        for parent, need in zip(ctx.parents, ctx.needs_input_grad, strict=False):
            if need:
                key = id(parent)
                if key in pending:
                    pending[key] += 1
                else:
                    pending[key] = 1
                    stack.append(parent)
    return pending
# --8<-- [end:backward]
