r"""The `Trainer` on several processes: what each rank of a data-parallel job does differently.

`mpiexec -n N python -m nima train CONFIG` (or `nima train CONFIG --nproc N`) starts $N$
trainers on one config. Each holds the whole model; they differ only where `Trainer` asks its
`Ranks`:

1. **The start.** Every rank checks that it read the same configuration, then takes rank 0's
   weights (`DataParallel.broadcast_parameters`).
2. **The rows.** `training.batch_size` $b$ is the rows *each* rank computes. Every rank draws
   the global batch of $N b$ rows from the identically seeded sampler and keeps rows
   $r b \dots r b + b - 1$ (`RankRows`), so $N$ ranks with $b$ see exactly the rows one
   process sees with $N b$.
3. **The step.** After each rank's backward, one bucketed allreduce turns every rank's
   gradient into the mean over ranks, the one-process gradient of the global batch, before
   clipping on its (global) norm; the loss reported is the mean over ranks too, and the ranks
   agree on whether to stop after the step (a Ctrl-C reaches them at different moments).
4. **Evaluation.** Each rank evaluates its rows of every evaluation batch; the means over
   ranks are the losses over the whole batches.
5. **The files.** Rank 0 alone holds the run directory: it prepares the data and the
   directory while the others wait, then writes every checkpoint, metric, log line, the plot,
   the progress bar and the sample. The others write nothing.

With dropout, every rank draws its own masks from a generator seeded by (seed, step, rank),
so masks differ between ranks (as they would between the rows of one process) and a resumed
job on as many ranks replays them. Only runs without dropout equal the single process to
float32 rounding.

In a single process every method here does nothing, and the `Trainer` runs exactly as it does
without `mpiexec`.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from nima import random as nima_random
from nima._tensor import Tensor
from nima.distributed import Communicator, DataParallel, world
from nima.nn.module import Module
from nima.serialization import PathLike
from nima.training.checkpoint import checkpoint_info, latest_checkpoint
from nima.training.config import ConfigError

__all__ = ["RankRows", "Ranks", "resume_batch_size", "written_batch"]


# --8<-- [start:rank_rows]
class RankRows:
    """A rank's view of a dataset: `get_batch(b, ...)` draws the global batch of $N b$ rows
    from the generator it is given — the same draw on every rank — and returns this rank's
    $b$ of them (every array of the batch cut the same way)."""

    def __init__(self, data: Any, dp: DataParallel) -> None:
        self.data, self.dp = data, dp

    def __len__(self) -> int:
        return len(self.data)

    def get_batch(self, batch_size: int, *args: Any) -> tuple[np.ndarray, ...]:
        batch = self.data.get_batch(batch_size * self.dp.comm.size, *args)  # (N b, ...) each
        rows = self.dp.rank_rows(len(batch[0]))
        return tuple(a[rows] for a in batch)  # (b, ...) each
# --8<-- [end:rank_rows]


class Ranks:
    """The trainer's side of a data-parallel job (see the module's docstring).

    Args:
        comm: the ranks training together; default `world()` (one process without `mpiexec`).
    """

    def __init__(self, comm: Communicator | None = None) -> None:
        self.dp = DataParallel(world() if comm is None else comm)
        self.comm = self.dp.comm
        self.rank, self.size = self.comm.rank, self.comm.size

    def __repr__(self) -> str:
        return f"Ranks(rank={self.rank}, size={self.size})"

    @property
    def writes(self) -> bool:
        """Whether this rank writes the run's files: rank 0 alone."""
        return self.rank == 0

    @contextlib.contextmanager
    def first(self) -> Iterator[None]:
        """Rank 0 runs the block first; the others run it once rank 0 is through, and find
        what it wrote (the prepared data, a repaired run directory) in place."""
        if self.rank != 0:
            self.comm.barrier()
        yield
        if self.rank == 0:
            self.comm.barrier()

    def check_same(self, what: str, value: Any) -> None:
        """Raise `DistributedError` on every rank unless `value` (JSON-able) is the same on all
        of them; nothing in a single process."""
        if self.size > 1:
            self.comm.check_same(what, json.dumps(value, sort_keys=True))

    # --8<-- [start:start]
    def start(self, model: Module, config: dict[str, Any]) -> None:
        """Check that every rank read the same `config`, then give every rank rank 0's weights."""
        if self.size > 1:
            self.check_same("the configuration", config)
            self.dp.broadcast_parameters(model)

    def shard(self, data: Any) -> Any:
        """`data` as this rank draws its batches from it: a `RankRows` on several ranks, `data`
        itself in a single process."""
        return RankRows(data, self.dp) if self.size > 1 else data
    # --8<-- [end:start]

    # --8<-- [start:step]
    def seed_dropout(self, seed: int, step: int) -> None:
        """On several ranks, reseed Nima's generator (dropout's) from (seed, step, rank)."""
        if self.size > 1:
            rng = np.random.default_rng([seed, step, self.rank])
            nima_random.set_state(rng.bit_generator.state)

    def allreduce_gradients(self, params: Iterable[Tensor]) -> None:
        r"""Every gradient becomes its mean over ranks, $\bar g = \frac1N \sum_r g_r$: the
        gradient of the global batch (`DataParallel.allreduce_gradients`)."""
        if self.size > 1:
            self.dp.allreduce_gradients(params)

    def mean(self, value: float) -> float:
        r"""$\frac1N \sum_r$ `value`$_r$, the same on every rank: a mean over each rank's rows
        becomes the mean over all of them."""
        return self.dp.reduce_mean(value) if self.size > 1 else value

    def batch_change(self, info: dict[str, Any], batch_size: int) -> str | None:
        """A note for the log if this job's global batch, `batch_size` rows on each rank, is
        not that of the job that wrote the checkpoint `info` (`load_checkpoint`'s answer)."""
        processes, rows = written_batch(info)
        if processes * rows == self.size * batch_size:
            return None
        return (f"the global batch changes from {processes * rows} rows ({processes} x {rows}) "
                f"to {self.size * batch_size} ({self.size} x {batch_size})")

    def any(self, flag: bool) -> bool:
        """True on every rank if `flag` is true on any of them."""
        if self.size == 1:
            return bool(flag)
        return bool(self.comm.allreduce(np.array([int(bool(flag))], dtype=np.int64), "max")[0])
    # --8<-- [end:step]


# --8<-- [start:resume_batch]
def written_batch(info: dict[str, Any]) -> tuple[int, int]:
    """`(processes, batch_size)` of the job that wrote a checkpoint, from its `checkpoint_info`
    (checkpoints of a single process may not record `processes`)."""
    return int(info["extra"].get("processes", 1)), int(info["config"]["training"]["batch_size"])


def resume_batch_size(run_dir: PathLike, processes: int) -> int | None:
    r"""The `training.batch_size` that keeps a run's global batch on `processes` ranks: the
    latest checkpoint's $N b / M$ for $M$ = `processes` (None when the run has no checkpoint).

    Raises:
        ConfigError: $N b$ rows do not split evenly over $M$ ranks.
    """
    checkpoint = latest_checkpoint(run_dir)
    if checkpoint is None:
        return None
    n, b = written_batch(checkpoint_info(checkpoint))
    if (n * b) % processes:
        raise ConfigError(f"training.batch_size: the run's global batch of {n * b} rows ({n} "
                          f"processes x {b}) does not split evenly over {processes} processes; "
                          f"resume on a divisor of {n * b} or set training.batch_size")
    return n * b // processes
# --8<-- [end:resume_batch]
