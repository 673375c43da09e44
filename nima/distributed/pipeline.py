r"""Pipeline parallelism (GPipe): consecutive blocks on consecutive ranks, the batch in pieces.

Rank $s$ of $P$ holds stage $s$ — a contiguous run of the model's blocks — and passes its
output to rank $s + 1$. With the whole batch at once, only one stage works at a time. GPipe
cuts the batch into $m$ micro-batches: stage $s$ runs the forward of micro-batch $i$ while
stage $s+1$ runs micro-batch $i - 1$. After all $m$ forwards, the backwards flow the other
way, each stage receiving $\partial L / \partial(\text{its output})$ and sending
$\partial L / \partial(\text{its input})$ back. The gradients add up over micro-batches in each
parameter's `.grad`, so with $L = \frac1m \sum_i L_i$ the step is exactly the one-process step.

**The bubble.** With a forward taking $t_f$ and a backward $t_b$ on every stage, the last
stage starts its first forward after $P - 1$ forward slots of waiting, and the first stage
finishes its last backward $P - 1$ backward slots after the last stage did. A step takes
$(m + P - 1)(t_f + t_b)$, of which each stage works $m (t_f + t_b)$; the idle fraction is

$$\text{bubble} = \frac{(m + P - 1) - m}{m + P - 1} = \frac{P - 1}{m + P - 1},$$

small once $m \gg P$ — at the price of keeping the activations of all $m$ micro-batches until
their backward (what later schedules such as 1F1B reduce).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from nima import functional as F
from nima._tensor import Tensor
from nima.distributed.comm import DTYPES, Communicator, check_buffer, world
from nima.nn.module import Module
from nima.nn.parameter import Parameter

__all__ = ["GPTStage", "Pipeline", "Span", "bubble_fraction", "recv_array", "send_array"]

MAX_NDIM = 8
HEADER = 2 + MAX_NDIM  # dtype code, ndim, shape (padded with zeros)


# --8<-- [start:bubble_fraction]
def bubble_fraction(stages: int, micro_batches: int) -> float:
    r"""GPipe's idle fraction $(P - 1) / (m + P - 1)$ for $P$ stages and $m$ micro-batches."""
    if stages < 1 or micro_batches < 1:
        raise ValueError(f"bubble_fraction: stages and micro_batches must be >= 1, got "
                         f"{stages}, {micro_batches}")
    return (stages - 1) / (micro_batches + stages - 1)
# --8<-- [end:bubble_fraction]


# --8<-- [start:send_recv_array]
def send_array(comm: Communicator, array: np.ndarray, dest: int, tag: int = 0) -> None:
    """Send `array` to `dest`, preceded by a small header with its dtype and shape, so the
    receiver can allocate it without knowing them in advance."""
    array = check_buffer("send_array", np.ascontiguousarray(array), writable=False)
    if array.ndim > MAX_NDIM:
        raise ValueError(f"send_array: at most {MAX_NDIM} dimensions, got shape {array.shape}")
    header = np.zeros(HEADER, dtype=np.int64)
    header[:2] = DTYPES.index(array.dtype), array.ndim
    header[2:2 + array.ndim] = array.shape
    comm.send(header, dest, tag)
    comm.send(array, dest, tag)


def recv_array(comm: Communicator, source: int, tag: int = 0) -> np.ndarray:
    """Receive an array sent by `send_array` from `source`."""
    header = comm.recv(np.empty(HEADER, dtype=np.int64), source, tag)
    dtype, ndim = DTYPES[int(header[0])], int(header[1])
    return comm.recv(np.empty(tuple(int(n) for n in header[2:2 + ndim]), dtype=dtype),
                     source, tag)
# --8<-- [end:send_recv_array]


@dataclass
class Span:
    """One piece of work on this rank: the forward or backward of micro-batch `micro`, from
    `start` to `end` seconds after the step began."""

    kind: str
    micro: int
    start: float
    end: float


class Pipeline:
    r"""GPipe over `comm`: this rank runs `stage`, stage number `comm.rank` of `comm.size`.

    Args:
        stage: this rank's part of the model. The first stage receives the batch's inputs;
            every other one a float tensor from the stage before; the last one's output goes
            to `loss_fn`.
        comm: the ranks of the pipeline, in stage order; default `world()`.
        tied: parameters the first and the last stage share (a tied embedding and output
            head): both pass the same list, and after the backward each adds the other's
            gradient, so both copies take the same step.
        loss_fn: `loss_fn(output, targets)` on the last stage; default `F.cross_entropy`.

    After `step`, `spans` records when this rank worked and `elapsed` how long the step took.
    """

    def __init__(self, stage: Module, comm: Communicator | None = None,
                 tied: Sequence[Parameter] = (),
                 loss_fn: Callable[[Tensor, np.ndarray], Tensor] = F.cross_entropy) -> None:
        self.stage, self.comm, self.loss_fn = stage, world() if comm is None else comm, loss_fn
        self.tied = list(tied)
        self.first, self.last = self.comm.rank == 0, self.comm.rank == self.comm.size - 1
        self.spans: list[Span] = []
        self.elapsed = 0.0

    # --8<-- [start:step]
    def step(self, inputs: np.ndarray | None, targets: np.ndarray | None,
             micro_batches: int) -> float:
        r"""Forward and backward of one batch in `micro_batches` equal micro-batches (rows
        split in order). Leaves in every parameter of the stage the gradient of the batch's
        mean loss $\frac1m \sum_i L_i$ (added to what `.grad` held) and returns that loss, on
        every rank. `inputs` are needed on the first stage, `targets` on the last; other
        ranks may pass None."""
        m, rank, comm = micro_batches, self.comm.rank, self.comm
        if isinstance(m, bool) or not isinstance(m, int) or m < 1:
            raise ValueError(f"Pipeline.step: micro_batches must be a positive int, got {m!r}")
        xs = self._split("inputs", inputs, m) if self.first else None
        ys = self._split("targets", targets, m) if self.last else None
        self.spans = []
        comm.barrier()  # the step starts at the same moment on every stage
        t0 = time.perf_counter()
        kept: list[tuple[Tensor | None, Tensor]] = []
        loss_sum = 0.0
        for i in range(m):  # all forwards: receive, compute, pass on
            x = None if self.first else Tensor(recv_array(comm, rank - 1), requires_grad=True)
            start = time.perf_counter()
            out = self.stage(xs[i] if self.first else x)  # (b, T, C) or logits (b, T, V)
            if self.last:
                out = self.loss_fn(out, ys[i]) / m  # $L_i / m$
                loss_sum += out.item()
            self.spans.append(Span("forward", i, start - t0, time.perf_counter() - t0))
            if not self.last:
                send_array(comm, out.data, rank + 1)
            kept.append((x, out))
        for i in reversed(range(m)):  # all backwards, last micro-batch first
            x, out = kept.pop()
            grad = None if self.last else recv_array(comm, rank + 1)  # dL/d(output)
            start = time.perf_counter()
            out.backward(grad)
            self.spans.append(Span("backward", i, start - t0, time.perf_counter() - t0))
            if not self.first:
                send_array(comm, x.grad, rank - 1)  # dL/d(input): the previous stage's output
        self._sum_tied()
        self.elapsed = time.perf_counter() - t0
        return float(comm.bcast(np.array([loss_sum]), root=comm.size - 1)[0])
    # --8<-- [end:step]

    def _split(self, name: str, array: np.ndarray | None, m: int) -> list[np.ndarray]:
        if array is None or len(array) % m or len(array) < m:
            got = None if array is None else f"{len(array)} rows"
            raise ValueError(f"Pipeline.step: stage {self.comm.rank} needs {name} whose rows "
                             f"split into {m} equal micro-batches, got {got}")
        return np.split(np.asarray(array), m)

    def _sum_tied(self) -> None:
        """First and last stage add each other's gradient of the parameters they share."""
        if self.comm.size == 1 or not (self.first or self.last):
            return
        peer = self.comm.size - 1 if self.first else 0
        for p in self.tied:
            mine = np.zeros_like(p.data) if p.grad is None else np.ascontiguousarray(p.grad)
            theirs = self.comm.sendrecv(mine, peer, np.empty_like(mine), peer)
            p.grad = mine + theirs  # the same sum, in the same order, on both stages

    def counted_parameters(self) -> list[Parameter]:
        """This stage's parameters for the global gradient norm (`nima.distributed.
        clip_grad_norm_`'s `counted`): all of them, except that the last stage leaves the tied
        ones to the first."""
        skip = {id(p) for p in self.tied} if self.last and not self.first else set()
        return [p for p in self.stage.parameters() if id(p) not in skip]

    def busy_fraction(self) -> float:
        """The share of the last step this rank spent computing (1 minus its bubble)."""
        return sum(s.end - s.start for s in self.spans) / self.elapsed if self.elapsed else 0.0


class GPTStage(Module):
    """Stage `stage` of `n_stages` of a `nima.models.GPT`: blocks `L * stage // n_stages` up to
    `L * (stage + 1) // n_stages`; the first stage also embeds the tokens, the last applies the
    final norm and the output head. The modules are the model's own (shared, not copied).

    `tied_parameters()` lists what the first and last stage share when the head is tied to
    the token embedding; pass it to `Pipeline(tied=...)`.
    """

    def __init__(self, model: Module, stage: int, n_stages: int) -> None:
        super().__init__()
        L = len(model.blocks)
        if not 1 <= n_stages <= L or not 0 <= stage < n_stages:
            raise ValueError(f"GPTStage: stage {stage} of {n_stages} does not fit a model of "
                             f"{L} blocks (need 0 <= stage < n_stages <= {L})")
        self.first, self.last = stage == 0, stage == n_stages - 1
        self.block_range = (L * stage // n_stages, L * (stage + 1) // n_stages)
        self.blocks = model.blocks[slice(*self.block_range)]
        self.n_stages = n_stages
        if self.first:  # registered, so that this stage's parameters include them
            self.wte, self.wpe, self.drop = model.wte, model.wpe, model.drop
        if self.last:
            self.ln_f, self.lm_head = model.ln_f, model.lm_head
        self.tie_weights = model.config.tie_weights
        object.__setattr__(self, "model", model)  # not a submodule: its embed and head run here

    # --8<-- [start:gpt_stage]
    def forward(self, x: Tensor | np.ndarray) -> Tensor:
        if self.first:  # x: (b, T) token ids, through the GPT's own embedding
            x = self.model.embed(self.model.token_ids(x)[0])  # (b, T, C)
        for block in self.blocks:
            x = block(x)  # (b, T, C)
        if self.last:
            x = self.model.head(x)  # (b, T, V) logits: the GPT's own final norm and head
        return x
    # --8<-- [end:gpt_stage]

    def tied_parameters(self) -> list[Parameter]:
        """The head's weight on the first and last stage when it is the token embedding's."""
        if self.tie_weights and self.n_stages > 1 and (self.first or self.last):
            return [self.wte.weight if self.first else self.lm_head.weight]
        return []

    def extra_repr(self) -> str:
        lo, hi = self.block_range
        return f"blocks {lo}..{hi - 1}, first={self.first}, last={self.last}"
