r"""A block applied $R$ times with shared weights (Universal Transformer), optionally halting
each position adaptively (ACT), and a schedule that deepens the recursion during training.

**Recursion** (Dehghani et al., 2019). One block $f$ — attention and feed-forward with their
residuals — is applied again and again to its own output, with a learned *step embedding*
$e_r$ telling it which step it is on:

$$h^0 = x, \qquad h^r = f\bigl(h^{r-1} + e_r\bigr), \quad r = 1, \dots, R.$$

Depth costs compute, not parameters: $R$ steps of one block have the weights of one layer.

**Adaptive computation time** (Graves, 2016). A halting unit reads each position's state and
gives a probability $p^r_t = \sigma(w^\top (h^{r-1}_t + e_r) + c)$. Position $t$ runs until the
probabilities add up to $1 - \epsilon$ (`threshold`), or until step $R$:

$$N_t = \min\Bigl\{n : \textstyle\sum_{r \le n} p^r_t > 1 - \epsilon\Bigr\}, \qquad
R_t = 1 - \sum_{r < N_t} p^r_t,$$

and its output is the mixture of its states with weights $p^1_t, \dots, p^{N_t - 1}_t, R_t$
(they sum to 1), $y_t = \sum_{r < N_t} p^r_t h^r_t + R_t h^{N_t}_t$. The **ponder cost**
$\rho_t = N_t + R_t$ is added to the loss, times a small weight $\tau$: $N_t$ is a step
function, so the gradient flows through $R_t$ and pushes the model to halt earlier. Every
position is still transformed at every step (a halted position's later states no longer
count), so attention always finds every key; once every position has halted, the remaining
steps are skipped.

**Progressive depth** (`ProgressiveDepth`): training starts shallow and raises $R$ in equal
stages, so the first steps are cheap and each new step starts from a block that already works.

Auxiliary losses: after a forward with ACT, `aux_loss` holds $\tau\,\bar\rho$ (a Tensor in the
graph, to be added to the training loss) and `ponder` the mean $\bar\rho$ as a float.
"""

from __future__ import annotations

import numpy as np

from nima._tensor import Tensor
from nima.nn import init
from nima.nn.cache import CacheGroup, DecodingCache
from nima.nn.linear import Linear
from nima.nn.module import Module
from nima.nn.parameter import Parameter
from nima.ops.elementwise import sigmoid


class RecursiveCache(CacheGroup):
    """The decoding state of a `RecursiveBlock`: one state of the block per recursion step
    (each step attends to the keys of its own step)."""

    @property
    def steps(self) -> list[DecodingCache]:
        return self.parts


class RecursiveBlock(Module):
    r"""`block` applied `depth` times with shared weights and a step embedding; ACT optional.

    Args:
        block: any module with `forward(x, cache=None)` on `(B, T, d_model)` (and
            `new_cache(max_len)` for decoding), e.g. a transformer block with its residuals.
        d_model: the width $d$.
        max_depth: the most steps; sizes `step_embedding`, Parameter `(max_depth, d_model)`.
        depth: the steps taken now, $1 \le R \le$ `max_depth` (default `max_depth`); settable,
            e.g. by `ProgressiveDepth`.
        act: halt adaptively (adds `halt`, a `Linear(d_model, 1)` whose bias starts at 1, so
            $p \approx 0.73$ and positions halt after about two steps at first).
        threshold: $1 - \epsilon$, where the halting probabilities stop a position.
        ponder_weight: $\tau$, the weight of the ponder cost in `aux_loss`.
    """

    def __init__(self, block: Module, d_model: int, max_depth: int, *, depth: int | None = None,
                 act: bool = False, threshold: float = 0.99, ponder_weight: float = 0.01) -> None:
        super().__init__()
        name = "RecursiveBlock"
        if max_depth < 1:
            raise ValueError(f"{name}: max_depth must be >= 1, got {max_depth}")
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"{name}: threshold must be in (0, 1], got {threshold}")
        if ponder_weight < 0:
            raise ValueError(f"{name}: ponder_weight must be >= 0, got {ponder_weight}")
        self.block, self.d_model, self.max_depth = block, d_model, max_depth
        self.act, self.threshold, self.ponder_weight = act, threshold, ponder_weight
        self.depth = max_depth if depth is None else depth
        self.step_embedding = init.normal_(
            Parameter(np.empty((max_depth, d_model), dtype=np.float32)), std=0.02)  # (R, d)
        if act:
            self.halt = Linear(d_model, 1)
            init.ones_(self.halt.bias)
        self.aux_loss: Tensor | None = None
        self.ponder: float | None = None

    @property
    def depth(self) -> int:
        """The number of steps $R$ the block is applied."""
        return self._depth

    @depth.setter
    def depth(self, value: int) -> None:
        if not 1 <= value <= self.max_depth:
            raise ValueError(f"RecursiveBlock: depth must be in [1, max_depth={self.max_depth}], "
                             f"got {value}")
        object.__setattr__(self, "_depth", int(value))

    def new_cache(self, max_len: int | None = None) -> RecursiveCache:
        """An empty decoding state: one of the block's per step (up to `max_depth`), each for
        sequences of at most `max_len` positions."""
        return RecursiveCache([self.block.new_cache(max_len) for _ in range(self.max_depth)])

    def forward(self, x: Tensor, cache: RecursiveCache | None = None) -> Tensor:
        """`x` `(B, T, d)` -> `(B, T, d)`; with a `cache`, `x` holds only the new tokens."""
        if x.ndim != 3 or x.shape[-1] != self.d_model:
            raise ValueError(f"RecursiveBlock: expected x of shape (B, T, {self.d_model}), "
                             f"got {x.shape}")
        if self.act:
            return self._adaptive(x, cache)
        # --8<-- [start:recursion]
        h = x
        for r in range(self.depth):
            # $h^r = f(h^{r-1} + e_r)$: the same block, told which step it is on
            h = self.block(h + self.step_embedding[r], cache=_step(cache, r))  # (B, T, d)
        return h
        # --8<-- [end:recursion]

    # --8<-- [start:act]
    def _adaptive(self, x: Tensor, cache: RecursiveCache | None) -> Tensor:
        """Graves's ACT over the recursion steps, per position (see the module docstring)."""
        B, T, _ = x.shape
        running = np.ones((B, T), dtype=bool)  # not halted yet
        steps = np.zeros((B, T), dtype=x.dtype)  # $N_t$ so far
        total = Tensor(np.zeros((B, T), dtype=x.dtype))  # $\sum p$ of the steps that continued
        remainder = Tensor(np.zeros((B, T), dtype=x.dtype))  # $R_t$ once halted
        h, y = x, None
        for r in range(self.depth):
            h = h + self.step_embedding[r]
            p = sigmoid(self.halt(h)).squeeze(-1)  # (B, T): $p^r_t$
            halts = running & ((total.data + p.data > self.threshold) | (r == self.depth - 1))
            goes_on = running & ~halts
            rest = (1 - total) * halts  # (B, T): $R_t = 1 - \sum_{r < N_t} p^r_t$ where halting
            weight = p * goes_on + rest  # (B, T): $p^r_t$, $R_t$ at the last step, 0 after
            total, remainder = total + p * goes_on, remainder + rest
            steps += running
            h = self.block(h, cache=_step(cache, r))  # (B, T, d): $h^r$
            term = weight.unsqueeze(-1) * h  # (B, T, d)
            y = term if y is None else y + term
            running = goes_on
            if cache is None and not running.any():  # later states would get weight 0
                break
        ponder = (remainder + steps).mean()  # $\bar\rho$, mean of $N_t + R_t$
        self.ponder = float(ponder.data)
        self.aux_loss = ponder * self.ponder_weight
        return y
    # --8<-- [end:act]

    def extra_repr(self) -> str:
        act = f", act=True, threshold={self.threshold}" if self.act else ""
        return f"d_model={self.d_model}, depth={self.depth}, max_depth={self.max_depth}{act}"


def _step(cache: RecursiveCache | None, r: int) -> DecodingCache | None:
    return None if cache is None else cache.steps[r]


# --8<-- [start:progressive]
class ProgressiveDepth:
    r"""Recursion depth that grows in equal stages over the first `steps` training steps:

    $$R(s) = \min\Bigl(\text{end},\; \text{start} + \Bigl\lfloor \frac{s\,(\text{end} -
    \text{start} + 1)}{\text{steps}} \Bigr\rfloor\Bigr).$$

    Example: `ProgressiveDepth(1, 4, steps=1000)` gives depth 1 for steps 0–249, 2 for
    250–499, 3 for 500–749 and 4 from 750 on.
    """

    def __init__(self, start: int, end: int, steps: int) -> None:
        name = "ProgressiveDepth"
        if start < 1:
            raise ValueError(f"{name}: start must be >= 1, got {start}")
        if end < start:
            raise ValueError(f"{name}: end must be >= start={start}, got {end}")
        if steps < 1:
            raise ValueError(f"{name}: steps must be >= 1, got {steps}")
        self.start, self.end, self.steps = start, end, steps

    def __call__(self, step: int) -> int:
        """The depth at training step `step` (0-based)."""
        if step < 0:
            raise ValueError(f"ProgressiveDepth: step must be >= 0, got {step}")
        return min(self.end, self.start + step * (self.end - self.start + 1) // self.steps)

    def apply(self, model: Module, step: int) -> int:
        """Set the depth of every `RecursiveBlock` in `model` for step `step`; return it."""
        depth = self(step)
        for module in model.modules():
            if isinstance(module, RecursiveBlock):
                module.depth = depth
        return depth

    def __repr__(self) -> str:
        return f"ProgressiveDepth(start={self.start}, end={self.end}, steps={self.steps})"
# --8<-- [end:progressive]
