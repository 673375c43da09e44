r"""The GPipe bubble, measured: 2 pipeline stages of the baby GPT, 1 to 16 micro-batches.

Runs itself as an MPI job of 2 processes (one numba thread each). The baby GPT
(`GPTConfig.preset("baby")`, 4 blocks) is cut into 2 stages of 2 blocks (`GPTStage`); one
training batch of 16 windows of 64 tokens runs through `Pipeline.step` in $m$ = 1, 2, 4, 8, 16
micro-batches. For each $m$, after one warm-up step, the median over the timed steps of:

* the **step time** (the slower stage);
* the **bubble**: the share of the step the stages spent not computing (waiting for a
  neighbour or a message), averaged over the two stages, against GPipe's
  $(P - 1)/(m + P - 1)$;

and, as the reference, the forward + backward of the whole model on the whole batch in one
process of one thread (run on its own before the pipeline). "Ideal" is that time spread
over $P$ stages with only the formula's bubble: $t_1 / P / (1 - \text{bubble})$. The spans
of one step with $m = 4$ are kept in the JSON for the timeline drawn in the docs.

Run: `python benchmarks/bench_pipeline.py [--quick]`; writes `benchmarks/results/pipeline.md`
and `pipeline.json`. Needs `pip install "nima[mpi]"`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from timing import machine_info, machine_lines, publish

import nima
from nima.allocator import retain_freed_memory
from nima.distributed import (
    GPTStage,
    Pipeline,
    bubble_fraction,
    launched_size,
    mpiexec_command,
    recv_array,
    send_array,
    world,
)
from nima.models import GPT, GPTConfig

NPROC, ROWS, T = 2, 16, 64
TIMELINE_M = 4


def worker(micro_batches: list[int], steps: int, out: Path) -> None:
    retain_freed_memory()
    comm = world()
    nima.manual_seed(0)
    model = GPT(GPTConfig.preset("baby"))
    stage = GPTStage(model, comm.rank, comm.size)
    pipe = Pipeline(stage, comm, tied=stage.tied_parameters())
    data = np.random.default_rng(0).integers(0, 65, size=(ROWS, T + 1))
    x, y = data[:, :-1], data[:, 1:]
    rows, timeline = [], None
    for m in micro_batches:
        step_s, bubble = [], []
        for i in range(steps + 1):
            pipe.step(x, y, m)
            stage.zero_grad()
            idle = comm.allreduce(np.array([1 - pipe.busy_fraction()]))[0] / comm.size
            if i:  # the first step of each m warms up
                step_s.append(pipe.elapsed)
                bubble.append(idle)
        step_s = comm.allreduce(np.array(step_s), "max")  # the slower stage
        rows.append({"m": m, "step": statistics.median(step_s.tolist()),
                     "bubble": statistics.median(bubble), "formula": bubble_fraction(NPROC, m)})
        if m == TIMELINE_M:  # every stage's spans of the last step, gathered on rank 0
            mine = np.array([[s.kind == "forward", s.micro, s.start, s.end] for s in pipe.spans])
            if comm.rank:
                send_array(comm, mine, 0)
            else:
                timeline = [mine, *(recv_array(comm, r) for r in range(1, comm.size))]
    if comm.rank == 0:
        spans = [[{"kind": "forward" if f else "backward", "micro": int(i), "start": a, "end": b}
                  for f, i, a, b in stage_spans] for stage_spans in timeline]
        out.write_text(json.dumps({"rows": rows, "timeline": {"m": TIMELINE_M,
                                                              "stages": spans}}))


def reference(steps: int, out: Path) -> None:
    """The whole model on the whole batch in one process: forward + backward, median."""
    retain_freed_memory()
    nima.manual_seed(0)
    model = GPT(GPTConfig.preset("baby"))
    data = np.random.default_rng(0).integers(0, 65, size=(ROWS, T + 1))
    times = []
    for i in range(steps + 1):
        t0 = time.perf_counter()
        _, loss = model(data[:, :-1], data[:, 1:])
        loss.backward()
        model.zero_grad()
        if i:
            times.append(time.perf_counter() - t0)
    out.write_text(json.dumps(statistics.median(times)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 timed steps per m")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--single", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    micro_batches, steps = [1, 2, 4, 8, 16], (2 if args.quick else 10)
    if args.single is not None:
        reference(steps, args.single)
        return
    if launched_size() > 1:
        worker(micro_batches, steps, args.worker)
        return

    info = machine_info()
    env = {**os.environ, "NUMBA_NUM_THREADS": "1"}
    quick = ["--quick"] if args.quick else []
    with tempfile.TemporaryDirectory() as tmp:
        out, one = Path(tmp) / "pipeline.json", Path(tmp) / "single.json"
        subprocess.run([sys.executable, __file__, "--single", str(one), *quick], env=env,
                       check=True)
        command = mpiexec_command(NPROC, [sys.executable, __file__, "--worker", str(out),
                                          *quick])
        subprocess.run(command, env=env, check=True)
        result = json.loads(out.read_text())
        single = json.loads(one.read_text())
    lines = [
        f"**GPipe, {NPROC} stages of the baby GPT** (2 blocks each; batch {ROWS} x {T} "
        f"tokens; medians of {steps} steps)",
        "",
        f"One process, whole model, forward + backward of the batch: {single * 1e3:.1f} ms.",
        "",
        "| micro-batches m | step (ms) | ideal (ms) | bubble measured | bubble (P-1)/(m+P-1) "
        "| speed-up vs 1 process |",
        "|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        ideal = single / NPROC / (1 - r["formula"])
        lines.append(f"| {r['m']} | {r['step'] * 1e3:.1f} | {ideal * 1e3:.1f} | "
                     f"{r['bubble']:.2f} | {r['formula']:.2f} | {single / r['step']:.2f}x |")
    load_after = os.getloadavg()[0]
    lines += ["", *machine_lines(info, load_after)]
    if args.quick:  # a smoke test: nothing written
        print("\n".join(lines))
        return
    publish("pipeline", lines, {**result, "stages": NPROC, "single_s": single,
                                "machine": info, "load_average_end": load_after})


if __name__ == "__main__":
    main()
