"""Checks that run inside an MPI job: `mpiexec -n N python tests/distributed/mpi_checks.py NAME...`.

Every rank runs the named checks and asserts; an assertion on any rank aborts the whole job
(`abort_on_error`), so the launching test sees a non-zero exit code and the traceback. Rank 0
prints `ok NAME` after each check that passed on every rank. The oracle is always the
single-process computation, which each rank repeats by itself (the models are tiny).
"""

from __future__ import annotations

import os
import signal
import sys
import time

import numpy as np

import nima
from nima.distributed import (
    ColumnParallelLinear,
    Communicator,
    DataParallel,
    DistributedError,
    GPTStage,
    MPICommunicator,
    Pipeline,
    RowParallelLinear,
    TensorParallelAttention,
    abort_on_error,
    clip_grad_norm_,
    counted_parameters,
    parallelize_feedforward,
    parallelize_gpt,
    recv_array,
    ring_allreduce,
    send_array,
    shard,
    world,
)
from nima.models import GPT, GPTConfig
from nima.nn import FeedForward, MultiHeadAttention
from nima.nn.positional import ALiBi, RotaryEmbedding
from nima.optim import AdamW, WarmupCosine, param_groups_for_decay
from nima.optim import clip_grad_norm_ as local_clip_grad_norm_

CHECKS = {}


def check(fn):
    CHECKS[fn.__name__] = fn
    return fn


def same_on_all_ranks(comm: Communicator, array: np.ndarray) -> bool:
    """True if `array` is bitwise the same on every rank (elementwise max equals min)."""
    hi = comm.allreduce(np.array(array, dtype=np.float64), "max")
    lo = comm.allreduce(np.array(array, dtype=np.float64), "min")
    return bool(np.array_equal(hi, lo))


def tiny_gpt(seed: int, **overrides) -> GPT:
    nima.manual_seed(seed)
    config = dict(vocab_size=65, block_size=16, n_layer=1, n_head=2, n_embd=32)
    return GPT(GPTConfig.preset("baby", **{**config, **overrides}))


def token_batch(rng: np.random.Generator, rows: int, T: int = 16) -> tuple[np.ndarray, ...]:
    data = rng.integers(0, 65, size=(rows, T + 1))
    return data[:, :-1], data[:, 1:]


# ------------------------------------------------------------------------------- the messages
@check
def comm_basics(comm: Communicator) -> None:
    r, n = comm.rank, comm.size
    x = np.array([r, -r, 10 * r], dtype=np.int64)
    assert comm.allreduce(x.copy()).tolist() == [n * (n - 1) // 2, -n * (n - 1) // 2,
                                                 5 * n * (n - 1)]
    assert comm.allreduce(x.copy(), "max").tolist() == [n - 1, 0, 10 * (n - 1)]
    assert comm.allreduce(x.copy(), "min").tolist() == [0, -(n - 1), 0]
    b = np.full(3, float(r), dtype=np.float32)
    assert comm.bcast(b, root=n - 1).tolist() == [n - 1] * 3
    right, left = (r + 1) % n, (r - 1) % n
    got = comm.sendrecv(np.full(2, r, np.float64), right, np.empty(2), left)
    assert got.tolist() == [left, left]
    if r == 0:  # send/recv and the self-describing arrays the pipeline uses
        comm.send(np.arange(4, dtype=np.float32), 1)
        send_array(comm, np.arange(6, dtype=np.float64).reshape(2, 3), 1)
    elif r == 1:
        assert comm.recv(np.empty(4, np.float32), 0).tolist() == [0, 1, 2, 3]
        a = recv_array(comm, 0)
        assert a.dtype == np.float64 and a.shape == (2, 3) and a[1, 2] == 5
    comm.barrier()
    try:  # a disagreement is reported on every rank, not only where it differs
        comm.check_same("a test value", "same" if r else "different")
        raise AssertionError("check_same passed on different values")
    except DistributedError as e:
        assert "differs between" in str(e)
    comm.check_same("a test value", "same everywhere")


@check
def ring(comm: Communicator) -> None:
    for n in (0, 1, comm.size - 1, 7, 1000, 4099):  # fewer elements than ranks, uneven chunks
        for dtype in (np.float32, np.float64):
            rng = np.random.default_rng([comm.rank, n])
            integers = rng.integers(-1000, 1000, size=n).astype(dtype)  # exact sums
            assert np.array_equal(ring_allreduce(comm, integers.copy()),
                                  comm.allreduce(integers.copy())), (n, dtype)
            x = rng.standard_normal(n).astype(dtype)
            ours, theirs = ring_allreduce(comm, x.copy()), comm.allreduce(x.copy())
            assert ours.dtype == dtype
            tol = 1e-6 if dtype == np.float32 else 1e-14
            np.testing.assert_allclose(ours, theirs, rtol=tol, atol=tol)
            assert same_on_all_ranks(comm, ours)
    m = np.arange(12.0).reshape(3, 4) * (comm.rank + 1)  # any shape: reduced in place
    out = ring_allreduce(comm, m)
    assert out is m and np.array_equal(m, np.arange(12.0).reshape(3, 4) * sum(
        range(1, comm.size + 1)))


# ------------------------------------------------------------------------------- data parallel
def train(model: GPT, steps: list, dp: DataParallel | None, clip: float) -> list[float]:
    """`steps`: per step, a list of global micro-batches (x, y). Returns the clipped norms."""
    params = list(model.parameters())
    opt = AdamW(param_groups_for_decay(model, 0.1), lr=1e-2, betas=(0.9, 0.99))
    sched = WarmupCosine(opt, warmup=1, total=len(steps), min_lr=1e-3)
    norms = []
    for micro in steps:
        for x, y in micro:
            rows = slice(None) if dp is None else dp.rank_rows(len(x))
            _, loss = model(x[rows], y[rows])
            (loss / len(micro)).backward()
        if dp is not None:
            dp.allreduce_gradients(params)
        norms.append(local_clip_grad_norm_(params, clip))
        opt.step()
        opt.zero_grad()
        sched.step()
    return norms


@check
def data_parallel(comm: Communicator) -> None:
    b, k = 2, 3
    for accum in (1, 2):
        rng = np.random.default_rng(accum)  # the same global rows on every rank
        steps = [[token_batch(rng, comm.size * b) for _ in range(accum)] for _ in range(k)]
        model = tiny_gpt(seed=100 + comm.rank)  # a different start on every rank...
        dp = DataParallel(comm)
        dp.broadcast_parameters(model)  # ... until rank 0's weights are broadcast
        norms = train(model, steps, dp, clip=0.5)
        reference = tiny_gpt(seed=100)  # one process, N*b rows, the same global batches
        ref_norms = train(reference, steps, None, clip=0.5)
        assert min(ref_norms) > 0.5, f"clipping never acted: {ref_norms}"
        np.testing.assert_allclose(norms, ref_norms, rtol=1e-5)
        ref = reference.state_dict()
        for name, value in model.state_dict().items():
            # Adam divides by each gradient's size, which magnifies rounding where a gradient
            # nearly cancels: allow a thousandth of one step (lr 1e-2); a wrong row, scale or
            # order of operations moves weights by a whole step
            np.testing.assert_allclose(value, ref[name], rtol=1e-4, atol=1e-5, err_msg=name)
            assert same_on_all_ranks(comm, value), f"{name} differs between ranks"
    rows = DataParallel(comm).rank_rows(4 * comm.size)
    assert (rows.start, rows.stop) == (4 * comm.rank, 4 * comm.rank + 4)
    assert DataParallel(comm).reduce_mean(float(comm.rank)) == (comm.size - 1) / 2


# ------------------------------------------------------------------------------- pipeline
@check
def pipeline(comm: Communicator) -> None:
    P = comm.size
    rng = np.random.default_rng(7)
    x, y = token_batch(rng, 8)
    for micro_batches in (1, 4):
        model = tiny_gpt(seed=3, n_layer=P + 1)  # uneven: one stage gets two blocks
        stage = GPTStage(model, comm.rank, P)
        pipe = Pipeline(stage, comm, tied=stage.tied_parameters())
        loss = pipe.step(x, y, micro_batches)
        reference = tiny_gpt(seed=3, n_layer=P + 1)
        _, ref_loss = reference(x, y)
        ref_loss.backward()
        np.testing.assert_allclose(loss, ref_loss.item(), rtol=1e-5)
        mine = {id(p) for p in stage.parameters()}
        ref = dict(reference.named_parameters())
        for name, p in model.named_parameters():
            if id(p) in mine:
                np.testing.assert_allclose(p.grad, ref[name].grad, rtol=1e-4, atol=1e-6,
                                           err_msg=f"stage {comm.rank}: {name}")
        norm = clip_grad_norm_(stage.parameters(), 1e9, comm, counted=pipe.counted_parameters())
        np.testing.assert_allclose(norm, local_clip_grad_norm_(reference.parameters(), 1e9),
                                   rtol=1e-5)
        assert 0 < pipe.busy_fraction() <= 1
        assert [s.kind for s in pipe.spans] == ["forward"] * micro_batches + \
            ["backward"] * micro_batches


# ------------------------------------------------------------------------------- tensor parallel
class Counting(MPICommunicator):
    """COMM_WORLD, counting allreduce calls."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def _allreduce(self, buf: np.ndarray, op: str) -> np.ndarray:
        self.calls += 1
        return super()._allreduce(buf, op)


def sharded_like(dense_grad: np.ndarray, name: str, module: object, comm: Communicator,
                 groups: int) -> np.ndarray:
    """The dense gradient cut as the tensor-parallel parameter `name` of `module` was."""
    if isinstance(module, ColumnParallelLinear):
        return shard(dense_grad, comm, 0, groups)
    if isinstance(module, RowParallelLinear) and name.endswith("weight"):
        return shard(dense_grad, comm, 1)
    return dense_grad


def groups_of(name: str, modules: dict) -> int:
    """How many groups `shard` cut the parameter `name` in: q, k, v of a fused projection;
    gate and value of a gated FFN's `fc`."""
    if name.endswith(("qkv.weight", "qkv.bias")):
        return 3
    parts = name.split(".")
    parent = modules[".".join(parts[:-2])]  # e.g. the FeedForward that owns `fc`
    return 2 if parts[-2] == "fc" and parent.kind in ("glu", "swiglu") else 1


def compare_grads(tp: nima.nn.Module, dense: nima.nn.Module, comm: Communicator,
                  rtol: float, atol: float) -> None:
    modules = dict(tp.named_modules())
    ref = dict(dense.named_parameters())
    for name, p in tp.named_parameters():
        owner = modules[name.rpartition(".")[0]]
        expected = sharded_like(ref[name].grad, name, owner, comm, groups_of(name, modules))
        np.testing.assert_allclose(p.grad, expected, rtol=rtol, atol=atol,
                                   err_msg=f"rank {comm.rank}: {name}")


@check
def tensor_parallel(comm: Communicator) -> None:
    counting = Counting()
    rng = np.random.default_rng(0)
    # the feed-forward network, every kind, in float64: equal to the dense layer
    for kind in ("gelu", "relu", "swiglu"):
        nima.manual_seed(1)
        dense = FeedForward(8, 12, kind=kind).double()
        nima.manual_seed(1)
        tp = parallelize_feedforward(FeedForward(8, 12, kind=kind).double(), counting)
        x = rng.standard_normal((2, 3, 8))
        gy = rng.standard_normal((2, 3, 8))
        xd, xt = nima.tensor(x, requires_grad=True), nima.tensor(x, requires_grad=True)
        yd = dense(xd)
        counting.calls = 0
        yt = tp(xt)
        assert counting.calls == 1, f"{kind}: {counting.calls} allreduces in the forward"
        np.testing.assert_allclose(yt.data, yd.data, rtol=1e-12, atol=1e-12)
        yd.backward(gy)
        counting.calls = 0
        yt.backward(gy)
        assert counting.calls == 1, f"{kind}: {counting.calls} allreduces in the backward"
        np.testing.assert_allclose(xt.grad, xd.grad, rtol=1e-12, atol=1e-12)
        compare_grads(tp, dense, comm, 1e-12, 1e-12)
        assert nima.gradcheck(lambda v, tp=tp: tp(v), [nima.tensor(x, requires_grad=True)])
    # attention, heads split: plain, rotary and ALiBi positions
    n_head = 2 * comm.size
    for position in ("none", "rope", "alibi"):
        nima.manual_seed(2)
        extra = {"rope": RotaryEmbedding(4, 16)} if position == "rope" else \
            {"alibi": ALiBi(n_head)} if position == "alibi" else {}
        dense = MultiHeadAttention(4 * n_head, n_head, causal=True, **extra).double()
        nima.manual_seed(2)
        copy = MultiHeadAttention(4 * n_head, n_head, causal=True, **extra).double()
        tp = TensorParallelAttention.from_dense(copy, counting)
        x = rng.standard_normal((2, 5, 4 * n_head))
        gy = rng.standard_normal((2, 5, 4 * n_head))
        xd, xt = nima.tensor(x, requires_grad=True), nima.tensor(x, requires_grad=True)
        yd = dense(xd)
        counting.calls = 0
        yt = tp(xt)
        assert counting.calls == 1
        np.testing.assert_allclose(yt.data, yd.data, rtol=1e-12, atol=1e-12)
        yd.backward(gy)
        counting.calls = 0
        yt.backward(gy)
        assert counting.calls == 1
        np.testing.assert_allclose(xt.grad, xd.grad, rtol=1e-12, atol=1e-12)
        compare_grads(tp, dense, comm, 1e-12, 1e-12)
    # a whole GPT in float32: the loss, every gradient, the global norm, 2 allreduces a block
    cfg = dict(n_layer=2, n_head=2 * comm.size, n_embd=8 * comm.size)
    dense, tp = tiny_gpt(5, **cfg), parallelize_gpt(tiny_gpt(5, **cfg), counting)
    x, y = token_batch(rng, 3)
    _, ld = dense(x, y)
    counting.calls = 0
    _, lt = tp(x, y)
    assert counting.calls == 2 * cfg["n_layer"], counting.calls
    np.testing.assert_allclose(lt.item(), ld.item(), rtol=1e-6)
    ld.backward()
    counting.calls = 0
    lt.backward()
    assert counting.calls == 2 * cfg["n_layer"], counting.calls
    compare_grads(tp, dense, comm, 1e-4, 1e-6)
    norm = clip_grad_norm_(tp.parameters(), 1e9, comm, counted=counted_parameters(tp, comm))
    np.testing.assert_allclose(norm, local_clip_grad_norm_(dense.parameters(), 1e9), rtol=1e-5)


# ------------------------------------------------------------------------------- faults
@check
def rank_raises(comm: Communicator) -> None:
    """Rank 1 raises while the others wait in an allreduce: the job must end, not hang."""
    if comm.rank == 1:
        time.sleep(0.2)
        raise RuntimeError("rank 1 fails on purpose")
    comm.allreduce(np.zeros(1))


@check
def rank_exits(comm: Communicator) -> None:
    """Rank 1 calls sys.exit(3) while the others wait in an allreduce."""
    if comm.rank == 1:
        sys.exit(3)
    comm.allreduce(np.zeros(1))


@check
def rank_killed(comm: Communicator) -> None:
    """Rank 1 dies by SIGKILL (no Python cleanup at all) while the others wait."""
    if comm.rank == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    comm.allreduce(np.zeros(1))


def main(names: list[str]) -> None:
    comm = world()
    with abort_on_error(comm):
        assert comm.size > 1, "run me under mpiexec -n 2 (or more)"
        for name in names:
            CHECKS[name](comm)
            comm.barrier()
            if comm.rank == 0:
                print(f"ok {name}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
