r"""Data parallelism: every rank holds the whole model and computes on its own rows of the batch.

A training step of one process over a global batch of $M = N b$ rows minimises the mean loss
$L = \frac1M \sum_{g=0}^{M-1} \ell_g$. Give rank $r$ the rows $g = r b, \dots, r b + b - 1$
(`rank_rows`); its own mean loss is $L_r = \frac1b \sum_{i<b} \ell_{rb+i}$, and

$$L = \frac1N \sum_{r=0}^{N-1} L_r \qquad\Longrightarrow\qquad
\nabla_\theta L = \frac1N \sum_{r=0}^{N-1} \nabla_\theta L_r ,$$

so after each rank's backward, one allreduce of the gradients divided by $N$
(`allreduce_gradients`) gives every rank the gradient of the one-process step. Starting from
the same weights (`broadcast_parameters`), every rank then clips the same gradient and takes
the same optimizer step, and the weights stay identical on all ranks without ever being sent
again. The ranks must draw the *same* global rows: seed every rank's batch sampler alike, let
each draw the whole global batch, and keep its slice — drawing is cheap, and the result then
does not depend on $N$ (so a run may continue on a different number of processes).

Gradient accumulation over $A$ micro-batches splits each micro-batch the same way and
allreduces once, after the last one. Clipping needs nothing more: after the allreduce the
gradient on every rank *is* the global one, so `nima.optim.clip_grad_norm_` measures the
global norm. The equality needs every row to count equally in the loss: it holds for GPT
windows, where every position has a target; with ignored targets (`-100`) the per-rank means
would weigh tokens differently.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

from nima._tensor import Tensor
from nima.distributed.comm import Communicator, world
from nima.nn.module import Module

__all__ = ["DataParallel", "FlatBuffer"]


# --8<-- [start:flat_buffer]
class FlatBuffer:
    r"""Arrays of one dtype laid end to end in one 1-D array `data`: array $i$ occupies
    `data[offsets[i]:offsets[i + 1]]`, so one message carries all of them."""

    def __init__(self, shapes: Sequence[tuple[int, ...]], dtype: np.dtype) -> None:
        sizes = [math.prod(shape) for shape in shapes]
        self.offsets = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)])
        self.data = np.empty(int(self.offsets[-1]), dtype=dtype)  # (total,)

    def pack(self, arrays: Sequence[np.ndarray | None]) -> np.ndarray:
        """Copy `arrays` in (None as zeros); returns `data`."""
        for i, a in enumerate(arrays):
            segment = self.data[self.offsets[i]:self.offsets[i + 1]]
            segment[...] = 0 if a is None else a.reshape(-1)
        return self.data

    def unpack(self, arrays: Sequence[np.ndarray | None]) -> None:
        """Copy `data` back out into `arrays`, in place (None is skipped)."""
        for i, a in enumerate(arrays):
            if a is not None:
                a[...] = self.data[self.offsets[i]:self.offsets[i + 1]].reshape(a.shape)
# --8<-- [end:flat_buffer]


def _by_dtype(arrays: Sequence[np.ndarray]) -> dict[np.dtype, list[int]]:
    """Indices of `arrays` grouped by dtype, in order of first appearance."""
    groups: dict[np.dtype, list[int]] = {}
    for i, a in enumerate(arrays):
        groups.setdefault(a.dtype, []).append(i)
    return groups


def _unique(items: Iterable[Tensor]) -> list[Tensor]:
    """`items` without repeats (by identity: a tied parameter is reduced once)."""
    seen: set[int] = set()
    return [t for t in items if not (id(t) in seen or seen.add(id(t)))]


class DataParallel:
    """The data-parallel side of a training loop: same weights, own rows, averaged gradients.

    Args:
        comm: the ranks to work with; default `world()`.
        bucket_mb: the largest allreduce, in MB: the gradients travel in one flat buffer, cut
            into buckets of at most this size (25 MB, as PyTorch's DDP: the baby GPT's 3.2 MB
            of gradients are one message).

    Example:
        >>> dp = DataParallel()
        >>> dp.broadcast_parameters(model)               # rank 0's initial weights everywhere
        >>> x, y = data.get_batch(dp.comm.size * b, T, rng)   # the same global rows on all
        >>> rows = dp.rank_rows(len(x))                  # this rank's b of them
        >>> _, loss = model(x[rows], y[rows]); loss.backward()
        >>> dp.allreduce_gradients(model.parameters())   # the one-process gradient
        >>> clip_grad_norm_(model.parameters(), 1.0); opt.step()
    """

    def __init__(self, comm: Communicator | None = None, bucket_mb: float = 25.0) -> None:
        if not bucket_mb > 0:
            raise ValueError(f"DataParallel: bucket_mb must be positive, got {bucket_mb!r}")
        self.comm = world() if comm is None else comm
        self.bucket_bytes = int(bucket_mb * 2**20)
        self._layout: tuple | None = None  # the parameter list the buffers below were made for
        self._buffers: list[tuple[list[int], FlatBuffer]] = []

    def __repr__(self) -> str:
        return (f"DataParallel(rank={self.comm.rank}, size={self.comm.size}, "
                f"bucket_mb={self.bucket_bytes / 2**20:g})")

    # --8<-- [start:broadcast_parameters]
    def broadcast_parameters(self, model: Module, root: int = 0) -> None:
        """Overwrite every parameter and persistent buffer of `model` with rank `root`'s, in
        place (optimizers and tied weights keep pointing at the same arrays).

        Raises:
            DistributedError: the models differ between ranks (names, shapes or dtypes).
        """
        named = list({id(a): (name, a) for name, a in model.state_dict().items()}.values())
        self.comm.check_same("the model's parameters and buffers",
                             ";".join(f"{n}:{a.dtype}{a.shape}" for n, a in named))
        arrays = [a for _, a in named]
        for dtype, indices in _by_dtype(arrays).items():
            group = [arrays[i] for i in indices]
            flat = FlatBuffer([a.shape for a in group], dtype)
            self.comm.bcast(flat.pack(group), root)  # one message per dtype
            flat.unpack(group)
    # --8<-- [end:broadcast_parameters]

    # --8<-- [start:rank_rows]
    def rank_rows(self, global_rows: int) -> slice:
        r"""This rank's rows of a global batch of `global_rows` rows: with $b$ = `global_rows`
        / size, rank $r$ takes rows $r b \dots r b + b - 1$ — contiguous blocks, in rank order.

        Raises:
            ValueError: `global_rows` is not a positive multiple of the number of ranks.
        """
        size = self.comm.size
        if isinstance(global_rows, bool) or not isinstance(global_rows, int | np.integer) \
                or global_rows < size or global_rows % size:
            raise ValueError(f"rank_rows: a global batch of {global_rows!r} rows does not split "
                             f"evenly over {size} ranks; use a positive multiple of {size}")
        b = int(global_rows) // size
        return slice(self.comm.rank * b, (self.comm.rank + 1) * b)
    # --8<-- [end:rank_rows]

    # --8<-- [start:allreduce_gradients]
    def allreduce_gradients(self, params: Iterable[Tensor]) -> None:
        r"""Replace every gradient by its mean over ranks, $\bar g = \frac1N \sum_r g_r$.

        The gradients are copied into one flat buffer per dtype (made once, reused every step),
        reduced in buckets of at most `bucket_mb` — a handful of messages, not one per
        parameter — divided by $N$ and copied back. A parameter without a gradient on this
        rank is sent as zeros and stays without one (every rank runs the same model, so they
        agree on which parameters have one).

        Raises:
            DistributedError: the parameter lists differ between ranks (checked once per list).
        """
        params = _unique(params)
        layout = tuple((id(p), p.shape, p.dtype.str) for p in params)
        if layout != self._layout:
            self.comm.check_same("the parameters' shapes and dtypes",
                                 ";".join(f"{p.dtype}{p.shape}" for p in params))
            self._buffers = [(indices, FlatBuffer([params[i].shape for i in indices], dtype))
                             for dtype, indices in _by_dtype([p.data for p in params]).items()]
            self._layout = layout
        for indices, flat in self._buffers:
            grads = [params[i].grad for i in indices]
            data = flat.pack(grads)  # (total,): every gradient of this dtype, end to end
            step = max(1, self.bucket_bytes // data.itemsize)
            for start in range(0, data.size, step):
                self.comm.allreduce(data[start:start + step])  # $\sum_r g_r$, one bucket
            data /= self.comm.size  # $\frac1N \sum_r g_r$
            flat.unpack(grads)
    # --8<-- [end:allreduce_gradients]

    def reduce_mean(self, value: float) -> float:
        r"""$\frac1N \sum_r$ `value`$_r$ on every rank: a loss evaluated on each rank's rows
        becomes the loss over all of them (rows split evenly)."""
        total = self.comm.allreduce(np.array([value], dtype=np.float64))
        return float(total[0]) / self.comm.size
