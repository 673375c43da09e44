r"""Training throughput with data parallelism: 1 process, 2 processes, 1 process with 2 threads.

Two models, trained on the same global batch of 24 windows of 64 tokens (random ids) with a
hand-written data-parallel loop — `DataParallel.rank_rows`, backward, `allreduce_gradients`,
`clip_grad_norm_`, AdamW — in three set-ups launched in alternating rounds:

| set-up | processes | numba threads each | rows per process |
|---|---|---|---|
| `1 proc x 1 thread` | 1 | 1 | 24 |
| `2 procs x 1 thread` | 2 (`mpiexec -n 2`) | 1 | 12 |
| `1 proc x 2 threads` | 1 | 2 | 24 |

* **baby GPT**: `GPTConfig.preset("baby")` — 4 layers, 128 wide, 0.80M parameters;
* **10x**: 8 layers, 288 wide, 6 heads — 8.0M parameters, about 10x the baby GPT.

Each run times `--steps` steps after 2 warm-up steps and reports, as medians: the step, the
forward + backward, the wait for the slower rank (a barrier), the gradient allreduce itself,
and clip + AdamW, in ms. Tokens/s is
24 x 64 / median step. The compute / communication ratio of the 2-process run says why the
small model scales worse: its allreduce is as costly relative to its compute.

Run: `python benchmarks/bench_distributed.py [--quick] [--rounds R] [--steps S]`; writes
`benchmarks/results/distributed.md` and `distributed.json`. Needs `pip install "nima[mpi]"`.
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
from timing import RESULTS, machine_info, machine_lines, publish

import nima
from nima.allocator import retain_freed_memory
from nima.distributed import DataParallel, launched_size, mpiexec_command, world
from nima.models import GPT, GPTConfig
from nima.optim import AdamW, clip_grad_norm_, param_groups_for_decay

GLOBAL_ROWS, T = 24, 64
MODELS = {
    "baby GPT": dict(),
    "10x": dict(n_layer=8, n_embd=288, n_head=6),
}
SETUPS = {  # name: (processes, numba threads per process)
    "1 proc x 1 thread": (1, 1),
    "2 procs x 1 thread": (2, 1),
    "1 proc x 2 threads": (1, 2),
}
PHASES = ("step", "compute", "wait", "allreduce", "update")


def worker(model_name: str, steps: int, out: Path) -> None:
    """One set-up: train `steps` timed steps, write the per-step phase times (rank 0)."""
    retain_freed_memory()  # as the trainer does; the same in every set-up
    dp = DataParallel(world())
    nima.manual_seed(0)
    model = GPT(GPTConfig.preset("baby", **MODELS[model_name]))
    dp.broadcast_parameters(model)
    params = list(model.parameters())
    opt = AdamW(param_groups_for_decay(model, 0.1), lr=1e-3, betas=(0.9, 0.99))
    rng = np.random.default_rng(0)  # the same global rows on every rank
    times: dict[str, list[float]] = {k: [] for k in PHASES}
    for step in range(steps + 2):
        data = rng.integers(0, 65, size=(GLOBAL_ROWS, T + 1))
        rows = dp.rank_rows(GLOBAL_ROWS)
        t0 = time.perf_counter()
        _, loss = model(data[rows, :-1], data[rows, 1:])
        loss.backward()
        t1 = time.perf_counter()
        dp.comm.barrier()  # waiting for the slower rank, apart from the message itself
        tw = time.perf_counter()
        dp.allreduce_gradients(params)
        t2 = time.perf_counter()
        clip_grad_norm_(params, 1.0)  # the global norm: every rank holds the mean gradient
        opt.step()
        opt.zero_grad()
        t3 = time.perf_counter()
        if step >= 2:  # warm-up: numba's cache, the optimizer's state, the flat buffer
            for name, a, b in (("step", t0, t3), ("compute", t0, t1), ("wait", t1, tw),
                               ("allreduce", tw, t2), ("update", t2, t3)):
                times[name].append(b - a)
    if dp.comm.rank == 0:
        out.write_text(json.dumps({"parameters": model.num_parameters(),
                                   "gradient_bytes": 4 * sum(p.size for p in params),
                                   "times": times}))


def launch(setup: str, model_name: str, steps: int) -> dict:
    nproc, threads = SETUPS[setup]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "times.json"
        env = {**os.environ, "NUMBA_NUM_THREADS": str(threads)}
        command = mpiexec_command(nproc, [sys.executable, __file__, "--worker", model_name,
                                          "--steps", str(steps), "--out", str(out)])
        subprocess.run(command, env=env, check=True)
        return json.loads(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 round of 3 steps")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--report", action="store_true",
                        help="rewrite distributed.md from distributed.json, measuring nothing")
    args = parser.parse_args()
    if args.report:
        data = json.loads((RESULTS / "distributed.json").read_text(encoding="utf-8"))
        publish("distributed", report(data), data)
        return
    steps = args.steps or (3 if args.quick else 10)
    if args.worker is not None:
        worker(args.worker, steps, args.out)
        return
    if launched_size() > 1:
        parser.error("run without mpiexec: the script launches its own processes")
    rounds = args.rounds or (1 if args.quick else 3)

    info = machine_info()
    samples = {(m, s): {k: [] for k in PHASES} for m in MODELS for s in SETUPS}
    meta = {}
    for _ in range(rounds):  # alternate, so that load from elsewhere hits every set-up
        for model_name in MODELS:
            for setup in SETUPS:
                result = launch(setup, model_name, steps)
                meta[model_name] = {k: result[k] for k in ("parameters", "gradient_bytes")}
                for k in PHASES:
                    samples[model_name, setup][k] += result["times"][k]
    med = {key: {k: statistics.median(v) for k, v in s.items()} for key, s in samples.items()}

    load_after = os.getloadavg()[0]
    data = {"global_rows": GLOBAL_ROWS, "T": T, "rounds": rounds, "steps": steps,
            "models": {name: {**MODELS[name], **meta[name]} for name in MODELS},
            "medians_s": {f"{m} | {s}": v for (m, s), v in med.items()},
            "machine": info, "load_average_end": load_after}
    if args.quick:  # a smoke test: nothing written
        print("\n".join(report(data)))
        return
    publish("distributed", report(data), data)


def report(data: dict) -> list[str]:
    """The results table and what it says, from the measured medians."""
    med, models = data["medians_s"], data["models"]
    tokens = data["global_rows"] * data["T"]
    lines = [
        f"**Data-parallel training throughput** (global batch {data['global_rows']} x "
        f"{data['T']} tokens; {data['rounds']} rounds x {data['steps']} steps per set-up, "
        f"alternating; medians)",
        "",
        "| model | set-up | step (ms) | forward + backward | wait | allreduce | clip + AdamW | "
        "tokens/s | vs 1 proc x 1 thread |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, model in models.items():
        base = med[f"{name} | 1 proc x 1 thread"]["step"]
        for setup, (nproc, _) in SETUPS.items():
            m = med[f"{name} | {setup}"]
            comm = f"{m['wait'] * 1e3:.1f} | {m['allreduce'] * 1e3:.2f}" if nproc > 1 else "- | -"
            lines.append(f"| {name} ({model['parameters'] / 1e6:.2f}M) | {setup} | "
                         f"{m['step'] * 1e3:.1f} | {m['compute'] * 1e3:.1f} | {comm} | "
                         f"{m['update'] * 1e3:.1f} | {tokens / m['step']:,.0f} | "
                         f"{base / m['step']:.2f}x |")
    lines += ["", "Where the time of the 2-process step goes. The forward + backward of $r$ rows "
              "is fitted as $a + b\\,r$ from the 1-process (24 rows) and 2-process (12 rows) "
              "runs: $a$ is what every process pays whatever its share of the batch.", ""]
    for name, model in models.items():
        one, two = med[f"{name} | 1 proc x 1 thread"], med[f"{name} | 2 procs x 1 thread"]
        fixed = 2 * two["compute"] - one["compute"]  # a, from a + 24 b and a + 12 b
        lines.append(f"- {name}: {model['gradient_bytes'] / 2**20:.1f} MB of gradients. "
                     f"Forward + backward {two['compute'] * 1e3:.1f} ms against an allreduce of "
                     f"{two['allreduce'] * 1e3:.2f} ms (compute / communication = "
                     f"{two['compute'] / two['allreduce']:.0f}); waiting for the other rank "
                     f"{two['wait'] * 1e3:.1f} ms; the fixed part $a$ = {fixed * 1e3:.0f} ms, "
                     f"{fixed / one['compute']:.0%} of the 1-process forward + backward.")
    return [*lines, "", *machine_lines(data["machine"], data["load_average_end"])]


if __name__ == "__main__":
    main()
