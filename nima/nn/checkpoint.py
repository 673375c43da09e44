r"""Gradient checkpointing: trade compute for memory by recomputing a forward in the backward.

Backward needs the intermediate results of the forward (a softmax's output, a layer's input to
its matmul, ...), so a recorded graph keeps them all alive until `backward()` runs. For a
transformer block that is a dozen arrays of `(B, T, d)` or `(B, nh, T, T)` per layer, which
dominates the memory of training.

`checkpoint(fn, *args)` keeps only `fn`'s *inputs*:

1. **forward** runs `fn` under `no_grad`, so nothing inside it is recorded or kept;
2. **backward** runs `fn` again on the saved inputs, this time recording its graph, and
   backpropagates the incoming gradient $\bar y$ through that fresh graph. The gradients of
   the parameters `fn` uses accumulate into their `.grad` as in any backward; the gradients of
   the inputs are handed back to the outer graph.

Memory for the activations inside `fn` drops from "all layers at once" to "one layer at a time";
the price is one extra forward per checkpointed call (about a third more compute for a model
whose backward costs twice its forward).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from nima import random
from nima._tensor import Tensor
from nima.autograd import Context, Function, enable_grad, is_grad_enabled, no_grad


# --8<-- [start:checkpoint_function]
class Checkpoint(Function):
    r"""$y = f(x_1, \dots, x_n)$ without keeping $f$'s intermediates.

    Forward: $y = f(x)$ under `no_grad`; save $x$ and the random-generator state (so dropout
    inside $f$ draws the same masks when recomputed).

    Backward: recompute $y' = f(x')$ with grad on, from fresh leaves $x'$ sharing $x$'s arrays;
    `y'.backward(ȳ)` sends $\bar y$ through the recomputed graph, which leaves
    $\bar\theta \mathrel{+}= \bar y\,\partial y/\partial\theta$ in every parameter $\theta$ of $f$
    and $\bar x = \bar y\,\partial y/\partial x$ in `x'.grad` — returned to the outer graph.
    """

    @staticmethod
    def forward(ctx: Context, fn: Callable[..., Tensor], *arrays: Any,
                args: tuple[Any, ...]) -> np.ndarray:
        ctx.save_for_backward(fn, random.get_state(), args)  # the inputs: all that is kept
        with no_grad():
            out = fn(*args)  # the original tensors: nothing is recorded
        if not isinstance(out, Tensor):
            raise TypeError(f"checkpoint: fn must return a single Tensor, got {type(out).__name__}")
        return out.data

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray) -> tuple[np.ndarray | None, ...]:
        fn, rng_state, args = ctx.saved_tensors
        inputs = [Tensor(p.data, requires_grad=True) if need else p  # fresh leaves x'
                  for p, need in zip(args, ctx.needs_input_grad[1:], strict=True)]
        current_state = random.get_state()
        random.set_state(rng_state)  # the same dropout masks as the forward
        try:
            with enable_grad():
                out = fn(*inputs)  # y' = f(x'), recorded this time
        finally:
            random.set_state(current_state)
        if isinstance(out, Tensor) and out.requires_grad:
            out.backward(grad)  # θ.grad += ȳ ∂y/∂θ, x'.grad = ȳ ∂y/∂x
        grads = [x.grad if need else None
                 for x, need in zip(inputs, ctx.needs_input_grad[1:], strict=True)]
        return (None, *grads)
# --8<-- [end:checkpoint_function]


# --8<-- [start:checkpoint]
def checkpoint(fn: Callable[..., Tensor], *args: Any) -> Tensor:
    r"""`fn(*args)`, with its intermediates recomputed in the backward instead of stored.

    `fn` must return one `Tensor` and be deterministic given Nima's random state (dropout is:
    the state is saved and restored around the recomputation). `args` may mix tensors and
    other values; only tensors get gradients.

    The checkpointed node is recorded only if some tensor in `args` requires grad (the same
    rule as every op, and PyTorch's reentrant checkpoint's). When none does — say a first
    layer fed raw data — `fn` runs normally, graph and all, so that the gradients of its
    parameters are still right; only the memory saving is lost. Under `no_grad` it simply
    calls `fn`.

    Example: `y = checkpoint(block, x)` gives the same `y`, `x.grad` and `block`'s parameter
    gradients as `y = block(x)`, keeping only `x` until the backward.
    """
    if not callable(fn):
        raise TypeError(f"checkpoint: fn must be callable, got {type(fn).__name__}")
    needs_grad = any(isinstance(a, Tensor) and a.requires_grad for a in args)
    if not is_grad_enabled() or not needs_grad:
        return fn(*args)
    return Checkpoint.apply(fn, *args, args=args)
# --8<-- [end:checkpoint]

