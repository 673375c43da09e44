# %% [markdown]
# # Training on two processes
#
# This tutorial starts real MPI jobs of two processes from inside itself. Each job checks one
# claim of the distributed pages against a computation in this one process:
#
# 1. the ring allreduce, built from point-to-point messages, gives MPI's own sum;
# 2. **data parallelism**: 2 processes with $b$ rows each end a few training steps with the
#    same weights as 1 process with $2b$ rows;
# 3. **pipeline parallelism**: a GPT cut into 2 stages, fed 4 micro-batches, yields the
#    one-process gradients, and its bubble is close to $(P-1)/(m+P-1)$;
# 4. **tensor parallelism**: a feed-forward network split across 2 processes yields the dense
#    layer's output and gradients.
#
# It needs the MPI extra: `python -m pip install -e ".[mpi]"`. Without it, the cells that
# launch jobs say so and skip, and the rest still runs. The pages to read alongside are
# [Processes and messages](../distributed.md), [Ring allreduce](../allreduce.md),
# [Data parallelism](../data_parallel.md), [Pipeline parallelism](../pipeline_parallel.md) and
# [Tensor parallelism](../tensor_parallel.md).

# %%
import inspect
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np

import nima
from nima.distributed import bubble_fraction, mpi_available, mpiexec_command
from nima.models import GPT, GPTConfig
from nima.nn import FeedForward
from nima.optim import AdamW, clip_grad_norm_

QUICK = os.environ.get("NIMA_TUTORIAL_QUICK") == "1"
WORK_DIR = tempfile.TemporaryDirectory(prefix="nima-tutorial-14-")  # removed at exit
WORK = Path(WORK_DIR.name)  # the jobs' scripts and results
MPI = mpi_available()
print("MPI available:", MPI)

# %% [markdown]
# ## 1. Launching a job from here
#
# A job is `mpiexec -n 2 python script.py`: two copies of one script, which tell themselves
# apart by `world().rank`. Each experiment below is a function, `worker(out)`. The helper
# writes the function's source to a script that calls it, runs the script as two processes
# with one numba thread each, and loads the arrays each rank saved with `np.savez`. A fresh
# process starts with nothing, so the workers import what they use. Any constants and helper
# functions from this tutorial are written into the script above the worker.
# `abort_on_error` ends both processes if either one raises, so a mistake shows up as an error
# here and not as a hang.


# %%
def run_on_two_processes(worker, *helpers, **constants) -> list[dict[str, np.ndarray]] | None:
    """Run `worker(out)` as 2 MPI processes; return what each rank saved in
    `out/<name>-<rank>.npz` (None without MPI). `constants` (plain values) and the functions
    `helpers` are written into the script above the worker, so the worker can use them."""
    name = worker.__name__
    if not MPI:
        print(f"skipping {name}: MPI is not installed (pip install \"nima[mpi]\")")
        return None
    parts = ["import numpy as np", *(f"{key} = {value!r}" for key, value in constants.items()),
             *(textwrap.dedent(inspect.getsource(f)) for f in (*helpers, worker)),
             "from nima.distributed import abort_on_error, world",
             f"with abort_on_error(world()):\n    {name}({str(WORK)!r})"]
    script = WORK / f"{name}.py"
    script.write_text("\n\n".join(parts) + "\n")
    env = {**os.environ, "NUMBA_NUM_THREADS": "1"}
    subprocess.run(mpiexec_command(2, [sys.executable, str(script)]), env=env, check=True,
                   timeout=600)
    return [dict(np.load(WORK / f"{name}-{rank}.npz")) for rank in range(2)]


# %% [markdown]
# ## 2. The ring allreduce against MPI's
#
# Each rank makes its own vector. `ring_allreduce` sums them by sending chunks around the
# ring: a reduce-scatter, then an all-gather. `comm.allreduce` asks MPI for the same sum.
# 1001 elements do not split evenly into 2 chunks, on purpose.


# %%
def ring_worker(out: str) -> None:
    import numpy as np

    from nima.distributed import ring_allreduce, world

    comm = world()
    x = np.random.default_rng(comm.rank).standard_normal(1001).astype(np.float32)
    ours = ring_allreduce(comm, x.copy())
    theirs = comm.allreduce(x.copy())
    if comm.rank == 0:
        print(f"rank {comm.rank} of {comm.size}: ring {ours[:3]}, MPI {theirs[:3]}")
    np.savez(f"{out}/ring_worker-{comm.rank}.npz", x=x, ring=ours, mpi=theirs)


ring = run_on_two_processes(ring_worker)
if ring is not None:
    expected = ring[0]["x"] + ring[1]["x"]  # the sum, computed here
    for rank in ring:
        np.testing.assert_allclose(rank["ring"], expected, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(rank["mpi"], expected, rtol=1e-6, atol=1e-6)
    assert np.array_equal(ring[0]["ring"], ring[1]["ring"])  # bitwise equal on both ranks
    print("ring = MPI = x0 + x1; the ring's result is identical on both ranks")

# %% [markdown]
# ## 3. Data parallelism: 2 x b rows = 1 x 2b rows
#
# Both ranks build a small GPT, from different seeds, so they start apart. Then
# `broadcast_parameters` copies rank 0's weights to rank 1. Every step, each rank draws the
# same global batch from the same seeded generator and keeps its rows (`rank_rows`). It runs
# forward and backward, averages the gradients with one allreduce, clips on the global norm,
# and steps AdamW. Rank 0 saves the final weights.


# %%
STEPS, B = (3, 2) if QUICK else (10, 4)
CONFIG = dict(vocab_size=65, block_size=16, n_layer=1, n_head=2, n_embd=32)


def batches(steps: int, rows: int) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)
    data = [rng.integers(0, 65, size=(rows, 17)) for _ in range(steps)]
    return [(d[:, :-1], d[:, 1:]) for d in data]


def data_parallel_worker(out: str) -> None:
    import numpy as np

    import nima
    from nima.distributed import DataParallel, world
    from nima.models import GPT, GPTConfig
    from nima.optim import AdamW, clip_grad_norm_

    dp = DataParallel(world())
    nima.manual_seed(100 + dp.comm.rank)  # different on each rank ...
    model = GPT(GPTConfig.preset("baby", **CONFIG))
    dp.broadcast_parameters(model)  # ... until rank 0's weights are everywhere
    params = list(model.parameters())
    opt = AdamW(params, lr=1e-2)
    for x, y in batches(STEPS, dp.comm.size * B):  # the same global rows on both ranks
        rows = dp.rank_rows(len(x))
        _, loss = model(x[rows], y[rows])
        loss.backward()
        dp.allreduce_gradients(params)
        clip_grad_norm_(params, 0.5)
        opt.step()
        opt.zero_grad()
    np.savez(f"{out}/data_parallel_worker-{dp.comm.rank}.npz", **model.state_dict())


# %%
ranks = run_on_two_processes(data_parallel_worker, batches, STEPS=STEPS, B=B, CONFIG=CONFIG)

nima.manual_seed(100)  # rank 0's start, in one process with all 2b rows
reference = GPT(GPTConfig.preset("baby", **CONFIG))
params = list(reference.parameters())
opt = AdamW(params, lr=1e-2)
for x, y in batches(STEPS, 2 * B):
    _, loss = reference(x, y)
    loss.backward()
    clip_grad_norm_(params, 0.5)
    opt.step()
    opt.zero_grad()
if ranks is not None:
    worst = max(float(np.abs(ranks[0][k] - v).max()) for k, v in reference.state_dict().items())
    print(f"after {STEPS} steps, largest weight difference to one process: {worst:.2e}")
    assert worst < 1e-4  # a hundredth of one step of the learning rate, 1e-2
    assert all(np.array_equal(ranks[0][k], ranks[1][k]) for k in ranks[0])  # bitwise equal

# %% [markdown]
# After several steps of AdamW at a learning rate of $10^{-2}$, with clipping, the two-process
# weights match the one-process ones closely. The only difference is the order in which each
# gradient's terms were added, which changes the last bits. Most weights agree to about
# $10^{-7}$. Adam divides each gradient by its own running size, and that magnifies a few
# rounding differences. Where terms of a gradient almost cancel, the last bits are a large
# part of what is left. Such a weight can then differ by up to about $10^{-5}$, still a
# thousandth of one step. The weights on the two ranks are bitwise equal: they took the same
# steps from the same averaged gradients.
#
# ## 4. Pipeline parallelism: two stages, four micro-batches
#
# Now the model is split by depth. Rank 0 holds the embeddings and the first block, rank 1 the
# second block, the final norm and the head. `Pipeline.step` cuts the batch of 8 rows into
# 4 micro-batches. It runs the 4 forwards, passing activations from rank 0 to rank 1, then
# the 4 backwards, passing gradients back. Last, the two ranks add up their halves of the
# gradient of the token embedding, which is also the head. Each rank saves the gradients of
# its stage. Each then measures its bubble on the baby GPT for several numbers of
# micro-batches.


# %%
def pipeline_worker(out: str) -> None:
    import numpy as np

    import nima
    from nima.distributed import GPTStage, Pipeline, world
    from nima.models import GPT, GPTConfig

    comm = world()
    nima.manual_seed(0)
    model = GPT(GPTConfig.preset("baby", **{**CONFIG, "n_layer": 2}))
    stage = GPTStage(model, comm.rank, comm.size)
    pipe = Pipeline(stage, comm, tied=stage.tied_parameters())
    x, y = batches(1, 8)[0]
    loss = pipe.step(x, y, micro_batches=4)
    saved = {name: p.grad for name, p in model.named_parameters() if p.grad is not None}

    nima.manual_seed(0)  # the bubble, on the baby GPT: 2 blocks per stage
    baby = GPTStage(GPT(GPTConfig.preset("baby")), comm.rank, comm.size)
    timing = Pipeline(baby, comm, tied=baby.tied_parameters())
    data = np.random.default_rng(1).integers(0, 65, size=(8, 65))
    bubbles = []
    for m in MICRO_BATCHES:
        for _ in range(2):  # the first step of each m warms up; the second is measured
            timing.step(data[:, :-1], data[:, 1:], m)
            baby.zero_grad()
        bubbles.append(1 - timing.busy_fraction())
    np.savez(f"{out}/pipeline_worker-{comm.rank}.npz", loss=loss, bubbles=bubbles, **saved)


MICRO_BATCHES = [1, 4] if QUICK else [1, 2, 4, 8]
stages = run_on_two_processes(pipeline_worker, batches, CONFIG=CONFIG,
                              MICRO_BATCHES=MICRO_BATCHES)

# %% [markdown]
# The oracle is the whole model in one process, on the whole batch at once:

# %%
nima.manual_seed(0)
whole = GPT(GPTConfig.preset("baby", **{**CONFIG, "n_layer": 2}))
x, y = batches(1, 8)[0]
_, loss = whole(x, y)
loss.backward()
expected = {name: p.grad for name, p in whole.named_parameters()}
if stages is not None:
    assert np.isclose(stages[0]["loss"], loss.item(), rtol=1e-5)
    for rank, saved in enumerate(stages):
        names = [k for k in saved if k not in ("loss", "bubbles")]
        for name in names:
            np.testing.assert_allclose(saved[name], expected[name], rtol=1e-4, atol=1e-6)
        print(f"stage {rank}: {len(names)} gradients equal to one process's, e.g. "
              f"{sorted(names)[:2]}")
    print("micro-batches | bubble, stage 0 | stage 1 | (P-1)/(m+P-1)")
    for i, m in enumerate(MICRO_BATCHES):
        print(f"{m:13d} | {stages[0]['bubbles'][i]:15.2f} | {stages[1]['bubbles'][i]:7.2f} | "
              f"{bubble_fraction(2, m):.2f}")

# %% [markdown]
# With one micro-batch, each stage idles about half the step. The more micro-batches, the
# smaller the bubble, until small micro-batches and the messages between stages cost more
# than the overlap saves (a shared machine also adds noise here). The
# [pipeline page](../pipeline_parallel.md#measured) has a steadier measurement.
#
# ## 5. Tensor parallelism: one layer, split by width
#
# Last, the feed-forward network $\mathrm{GELU}(x W_1^\top) W_2^\top$ is split across the two
# processes. Each holds half of the hidden units: half the rows of `fc.weight` and half the
# columns of `proj.weight`. Each computes its half-network on the whole input, and one
# allreduce sums the two halves. In the backward, one more allreduce sums the two halves of
# the input's gradient. Each rank saves its output, its input gradient and its shards' gradients.


# %%
def tensor_parallel_worker(out: str) -> None:
    import numpy as np

    import nima
    from nima.distributed import parallelize_feedforward, world
    from nima.nn import FeedForward

    comm = world()
    nima.manual_seed(0)
    ffn = parallelize_feedforward(FeedForward(16, 64), comm)  # 32 hidden units each
    rng = np.random.default_rng(0)
    x = nima.tensor(rng.standard_normal((2, 5, 16)).astype(np.float32), requires_grad=True)
    y = ffn(x)
    y.backward(rng.standard_normal(y.shape).astype(np.float32))
    np.savez(f"{out}/tensor_parallel_worker-{comm.rank}.npz", y=y.data, x_grad=x.grad,
             fc=ffn.fc.weight.grad, proj=ffn.proj.weight.grad)


halves = run_on_two_processes(tensor_parallel_worker)

nima.manual_seed(0)  # the same layer, whole, in one process
dense = FeedForward(16, 64)
rng = np.random.default_rng(0)
x = nima.tensor(rng.standard_normal((2, 5, 16)).astype(np.float32), requires_grad=True)
y = dense(x)
y.backward(rng.standard_normal(y.shape).astype(np.float32))
if halves is not None:
    for half in halves:
        np.testing.assert_allclose(half["y"], y.data, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(half["x_grad"], x.grad, rtol=1e-5, atol=1e-6)
    fc = np.concatenate([h["fc"] for h in halves], axis=0)  # rows: hidden units 0-31, 32-63
    proj = np.concatenate([h["proj"] for h in halves], axis=1)  # columns: the same units
    np.testing.assert_allclose(fc, dense.fc.weight.grad, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(proj, dense.proj.weight.grad, rtol=1e-5, atol=1e-6)
    print("output, input gradient and both weight gradients equal the dense layer's")

# %% [markdown]
# Put side by side, the two halves of each weight gradient are the dense layer's gradient.
# Neither process ever held the whole weight.
#
# ## Summary
#
# - An allreduce built from point-to-point messages gives MPI's result, and the same result to
#   the bit on every rank.
# - Data parallelism is exact: averaging the gradients of $b$-row shares gives the gradient of
#   all the rows, so the weights follow the one-process run.
# - A pipeline computes the one-process gradients, stage by stage. Its bubble shrinks as
#   micro-batches are added, as $(P-1)/(m+P-1)$ says, until the overheads take over.
# - A tensor-parallel layer computes the dense layer's output and gradients from half of each
#   weight per process, with one allreduce each way.
#
# The [scaling projection](../scaling.md) asks what these costs mean for 8, 64 and 512
# processes.

# %% [markdown]
# ## Check your understanding
#
# ??? question "Why does the data-parallel run match the one-process run?"
#     Every rank takes an equal share of the same global batch, and the mean of the ranks'
#     mean gradients is the gradient of the global mean.
#
# ??? question "Why does a fused `qkv` weight need `groups=3` when it is split across ranks?"
#     Its rows are q, then k, then v; each rank must take its share of each of the three,
#     not a contiguous block that would give one rank only queries.
#
# ## Exercises
#
# <!-- nima: exercises tutorial_14 -->
