r"""`autocast`: run a forward pass in mixed precision, float16 where it is safe, float32 where not.

Inside `with nima.autocast():` (in the thread that entered it) the ops follow one of three
rules (the same split as `torch.autocast`); outside it nothing changes, bit for bit:

* **to float16:** `matmul` (so `Linear`, attention's $QK^\top$ and $PV$) — the bulk of the
  FLOPs, which a GPU's tensor cores multiply several times faster in float16;
* **to float32:** `softmax`, `log_softmax`, `cross_entropy`, `layer_norm`, `rms_norm`, `gelu`,
  `sum`, `mean`, `var`, `logsumexp` and attention's causal softmax — exponentials, long sums
  and divisions by small numbers lose too much in float16's 11-bit significand (and NumPy's
  float16 `tanh` is ~12x slower than its float32 one);
* **promote:** a binary elementwise op (`+`, `*`, ...) on one float16 and one float32 tensor
  casts the float16 one to float32.

Only float32 tensors are lowered to float16 and only float16 ones raised; float64 is never
touched. Every cast is a differentiable `Cast` node whose backward casts the gradient back, so
**each gradient arrives in the dtype of its tensor**: parameters (float32 "master weights") get
float32 gradients, while the activations that were float16 in the forward get float16
gradients in the backward — that is where small gradients underflow to zero, and why
`nima.optim.GradScaler` multiplies the loss first.

A float16 matmul is *stored* in float16 but *computed* in float32: the operands are widened,
multiplied by the float32 kernel (or BLAS), and the product rounded to float16. NumPy's own
float16 matmul has no BLAS behind it: a `(768, 128) @ (128, 384)` product took 0.3 s here, ~20x
the widen-multiply-round route. So on a CPU autocast
buys no arithmetic speed — it only adds the casts; see `docs/optim.md` for the measurement.

The rule for mixing dtypes is deliberately narrow: a float16/float32 pair is promoted *only*
inside `autocast`, where such pairs are expected (a float32 residual stream plus a float16
layer output). Everywhere else, and for float32/float64 always, mixing dtypes is an error, as
it is without autocast (silent promotion to float64 doubles a model's cost).

```python
scaler = nima.optim.GradScaler()
with nima.autocast():
    logits, loss = model(x, y)        # logits float16, loss float32
scaler.scale(loss).backward()         # parameter grads float32
scaler.step(opt)
scaler.update()
```
"""

from __future__ import annotations

import contextlib
import threading

import numpy as np

FLOAT16 = np.dtype(np.float16)
FLOAT32 = np.dtype(np.float32)


# --8<-- [start:autocast]
class _ThreadAutocast(threading.local):
    """The lower-precision dtype while autocast is on in this thread (None: off), so one
    thread's mixed-precision training never changes another thread's arithmetic."""

    dtype: np.dtype | None = None


_state = _ThreadAutocast()


def autocast_dtype() -> np.dtype | None:
    """The dtype matmuls are lowered to while `autocast` is on in this thread; None when off."""
    return _state.dtype


def promotes(a: np.dtype, b: np.dtype) -> bool:
    """True if a binary op may promote dtypes `a` and `b` (a float16/float32 pair, in autocast)."""
    return _state.dtype is not None and {a, b} == {FLOAT16, FLOAT32}


class autocast(contextlib.ContextDecorator):
    """Mixed precision inside a `with` block or a decorated function, as `torch.autocast`.

    Args:
        enabled: False runs the block exactly as without autocast (so a config flag can
            switch it: `with nima.autocast(enabled=cfg.mixed_precision): ...`); it also turns
            autocast off inside an enclosing autocast block.
        dtype: the lower precision; only float16 (NumPy has no bfloat16).
    """

    def __init__(self, enabled: bool = True, dtype: np.dtype | type = np.float16) -> None:
        if np.dtype(dtype) != FLOAT16:
            raise ValueError(f"autocast: dtype must be float16 (NumPy has no bfloat16), "
                             f"got {np.dtype(dtype)}")
        self.enabled = bool(enabled)

    def __enter__(self) -> autocast:
        self._previous = _state.dtype
        _state.dtype = FLOAT16 if self.enabled else None
        return self

    def __exit__(self, *exc: object) -> None:
        _state.dtype = self._previous

    def _recreate_cm(self) -> autocast:
        """A fresh instance per decorated call, so nested calls each restore their own state."""
        return type(self)(self.enabled)
# --8<-- [end:autocast]
