r"""Exercises of the Data parallelism page (docs/data_parallel.md)."""

import numpy as np

import nima
from exercises import close, equal
from nima.distributed import DataParallel, SingleProcess
from nima.models import GPT, GPTConfig


def data_parallel_gradients(model: GPT, x: np.ndarray, y: np.ndarray,
                            N: int) -> list[np.ndarray]:
    r"""Data parallelism, simulated in one process.

    Play $N$ ranks: rank $r$ takes the contiguous rows $rb \dots rb + b - 1$ of the global batch
    `x`, `y` ($b$ = rows / $N$), runs `model(x_r, y_r)` and `backward()`, and keeps a copy of
    every parameter's gradient (zero them between ranks). Then do what the allreduce does.
    Return the gradients that every rank would hold, in the order of `model.parameters()`.
    """
    raise NotImplementedError


def check_data_parallel_gradients(data_parallel_gradients) -> None:
    """Compares with the gradients of one backward over the whole batch of 6 rows, for 2 and 3
    simulated ranks."""
    nima.manual_seed(0)
    config = GPTConfig(vocab_size=9, block_size=8, n_layer=1, n_head=2, n_embd=8)
    model = GPT(config).double()
    x = np.random.default_rng(0).integers(0, 9, (6, 8))
    y = np.roll(x, -1, axis=1)
    _, loss = model(x, y)
    loss.backward()
    expected = [p.grad.copy() for p in model.parameters()]
    for N in (2, 3):
        model.zero_grad()
        got = data_parallel_gradients(model, x, y, N)
        equal(len(got), len(expected), "the number of gradients")
        for (name, _), mine, theirs in zip(model.named_parameters(), got, expected, strict=True):
            close(mine, theirs, f"the gradient of {name} with N={N}", rtol=1e-9, atol=1e-12)


def allreduce_messages(model: GPT, bucket_mb: float) -> int:
    r"""How many messages does a gradient average send?

    `allreduce_gradients` copies every gradient of `model` — each *distinct* parameter once
    (a tied weight is one parameter), all float32 — end to end into one flat buffer and reduces
    it in buckets of at most `bucket_mb` MiB ($2^{20}$ bytes). Return the number of
    allreduce calls one step makes.
    """
    raise NotImplementedError


def check_allreduce_messages(allreduce_messages) -> None:
    """Counts the allreduce calls `DataParallel.allreduce_gradients` makes through a
    one-process communicator, for the baby GPT and bucket sizes from 25 MiB down to 0.1 — on a
    second step (the first one also checks, with a message, that the ranks agree on the
    parameters)."""

    class Counting(SingleProcess):
        calls = 0

        def _allreduce(self, buf, op):
            Counting.calls += 1
            return buf

    model = GPT(GPTConfig.preset("baby"))
    _, loss = model(np.zeros((1, 4), dtype=np.int64), np.zeros((1, 4), dtype=np.int64))
    loss.backward()
    for bucket_mb in (25.0, 1.0, 0.5, 0.1):
        dp = DataParallel(Counting(), bucket_mb=bucket_mb)
        dp.allreduce_gradients(model.parameters())
        Counting.calls = 0
        dp.allreduce_gradients(model.parameters())
        equal(int(allreduce_messages(model, bucket_mb)), Counting.calls,
              f"the messages at {bucket_mb} MiB")
