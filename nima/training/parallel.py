r"""The `Trainer` on several processes: what each rank of a data-parallel job does differently.

`mpiexec -n N python -m nima train CONFIG` (or `nima train CONFIG --nproc N`) starts $N$
trainers on one config. Each holds the whole model; they differ only where `Trainer` asks its
`Ranks`:

1. **The start.** Rank 0 checks and locks the run directory, prepares the data and writes the
   run's files while the others wait; then they build the same trainer from what it prepared
   (resuming the same checkpoint), check that every rank read the same configuration and
   resumed the same step, and take rank 0's weights (`DataParallel.broadcast_parameters`).
2. **The rows.** `training.batch_size` $b$ is the rows *each* rank computes. Every rank's
   batch source (`nima.training.batches`) draws the global batch of $N b$ rows from the
   identically seeded generator, and the rank keeps rows $r b \dots r b + b - 1$
   (`RankBatches`), so $N$ ranks with $b$ see exactly the rows one process sees with $N b$.
   A loss-guided source hears the loss of every row of the global batch, gathered from all
   ranks, so its priorities stay the same everywhere.
3. **The step.** After each rank's backward, one bucketed allreduce turns every rank's
   gradient into the mean over ranks, the one-process gradient of the global batch, before
   clipping on its (global) norm; the loss reported is the mean over ranks too, and the ranks
   agree after each step whether to stop (a Ctrl-C or SIGTERM reaches them at different
   moments; one that comes before the first step waits for it, where a single process would
   stop at once, since the others would wait for the stopped rank in the step's allreduce).
4. **Evaluation.** Each rank evaluates its rows of every evaluation batch; the means over
   ranks are the losses over the whole batches.
5. **The files.** Rank 0 alone holds the run directory: its lock, every checkpoint, metric,
   log line, the plot, the progress bar and the sample. The others write nothing.

Streams (`data.sampling: stream`, and so models with echo or memory layers) and the
encoder-decoder train on one process only (`check_processes`): a stream's state lives in the
rank that reads it, and a batch of pairs is averaged over its target tokens, not its rows.

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
from nima.training.batches import Batches, LossGuidedBatches, row_losses
from nima.training.checkpoint import checkpoint_info, latest_checkpoint
from nima.training.config import Config, ConfigError

__all__ = ["RankBatches", "Ranks", "check_processes", "resume_batch_size", "written_batch"]


def check_processes(config: Config, processes: int) -> None:
    """Refuse, on more than one process, what trains on one only.

    Raises:
        ConfigError: `data.sampling: stream` or `model.kind: seq2seq` on several processes.
    """
    if processes == 1:
        return
    if config.model.kind == "seq2seq":
        raise ConfigError(f"model.kind: seq2seq trains on one process (its loss is a mean over "
                          f"target tokens, not rows); use one process, not {processes}")
    if config.data.sampling == "stream":
        raise ConfigError(f"data.sampling: stream trains on one process (a stream's state "
                          f"lives in the rank that reads it); use uniform or loss_guided, or "
                          f"one process, not {processes}")


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

    def start(self, model: Module, state: dict[str, Any]) -> None:
        """Check that every rank holds the same `state` (JSON-able: the configuration, the step
        resumed), then give every rank rank 0's weights."""
        if self.size > 1:
            self.comm.check_same("the configuration or the step resumed",
                                 json.dumps(state, sort_keys=True))
            self.dp.broadcast_parameters(model)

    def shard(self, batches: Batches) -> Batches:
        """`batches`, a source of global batches, as this rank draws from it: a `RankBatches`
        on several ranks, `batches` itself in a single process."""
        return RankBatches(batches, self) if self.size > 1 else batches

    def rows(self, batch: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
        r"""This rank's rows $r b \dots r b + b - 1$ of a global batch of $N b$ rows (every array
        of the batch cut the same way)."""
        if self.size == 1:
            return batch
        rows = self.dp.rank_rows(len(batch[0]))
        return tuple(a[rows] for a in batch)  # (b, ...) each

    def gather(self, values: np.ndarray) -> np.ndarray:
        """Every rank's `values` of its rows `(b,)`, in rank order: `(N b,)` on every rank."""
        if self.size == 1:
            return values
        b = len(values)
        whole = np.zeros(self.size * b)  # (N b,) float64, this rank's rows filled in
        whole[self.rank * b:(self.rank + 1) * b] = values
        return self.comm.allreduce(whole)  # a sum of disjoint rows: every rank's values

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

    def max(self, value: int) -> int:
        """The largest `value` of any rank, the same on every rank (the stop signal: 0 for
        none, so every rank stops after the same step)."""
        if self.size == 1:
            return value
        return int(self.comm.allreduce(np.array([value], dtype=np.int64), "max")[0])

    def batch_change(self, info: dict[str, Any], batch_size: int) -> list[str]:
        """A note for the log if this job's global batch, `batch_size` rows on each rank, is
        not that of the job that wrote the checkpoint `info` (`checkpoint_info`'s answer)."""
        written = written_batch(info)
        if written is None or written[0] * written[1] == self.size * batch_size:
            return []
        processes, rows = written
        return [f"note: the global batch changes from {processes * rows} rows ({processes} x "
                f"{rows}) to {self.size * batch_size} ({self.size} x {batch_size})"]


# --8<-- [start:rank_batches]
class RankBatches(Batches):
    """A rank's share of a batch source that draws global batches of $N b$ rows: the same
    draw on every rank, of which this rank keeps its $b$ rows (`Ranks.rows`). A loss-guided
    source is told the loss of every row of the global batch (`Ranks.gather`)."""

    def __init__(self, batches: Batches, ranks: Ranks) -> None:
        super().__init__(batches.data, batches.batch_size // ranks.size, batches.block_size)
        self.batches, self.ranks = batches, ranks
        self.group = batches.group

    def next(self) -> tuple[np.ndarray, ...]:
        return self.ranks.rows(self.batches.next())  # (b, ...) of (N b, ...) each

    def record(self, logits: np.ndarray, targets: np.ndarray) -> None:
        if isinstance(self.batches, LossGuidedBatches):
            self.batches.update(self.ranks.gather(row_losses(logits, targets)))  # (N b,)

    def state_dict(self) -> dict[str, Any]:
        return self.batches.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.batches.load_state_dict(state)
# --8<-- [end:rank_batches]


def written_batch(info: dict[str, Any]) -> tuple[int, int] | None:
    """`(processes, batch_size)` of the job that wrote a checkpoint, from its `checkpoint_info`
    (checkpoints of a single process may not record `processes`); None when the checkpoint
    does not say (a hand-edited record: the run's global batch is then not known)."""
    config = info["config"]
    training = config.get("training") if isinstance(config, dict) else None
    written = (info["extra"].get("processes", 1),
               training.get("batch_size") if isinstance(training, dict) else None)
    if all(type(n) is int and n >= 1 for n in written):
        return written
    return None


def resume_batch_size(run_dir: PathLike, processes: int) -> int | None:
    r"""The `training.batch_size` that keeps a run's global batch on `processes` ranks: the
    latest checkpoint's $N b / M$ for $M$ = `processes` (None when the run has no checkpoint,
    or its checkpoint does not say).

    Raises:
        ConfigError: $N b$ rows do not split evenly over $M$ ranks.
    """
    checkpoint = latest_checkpoint(run_dir)
    written = None if checkpoint is None else written_batch(checkpoint_info(checkpoint))
    if written is None:
        return None
    n, b = written
    if (n * b) % processes:
        raise ConfigError(f"training.batch_size: the run's global batch of {n * b} rows ({n} "
                          f"processes x {b}) does not split evenly over {processes} processes; "
                          f"resume on a divisor of {n * b} or set training.batch_size")
    return n * b // processes
