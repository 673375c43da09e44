"""Tree attention vs dense causal attention: forward + backward time and peak memory, T <= 4096.

Contestants, same run, same weights (`qkv`, `proj`): `nima.nn.TreeAttention` (chunk size 16,
levels derived from T: 1 up to T = 256, 2 up to 4096) and `nima.nn.MultiHeadAttention` with
the causal mask fused into the softmax kernel (`causal=True`). Shape: batch 2, d_model 128,
4 heads of 32 (the baby GPT's), float32. A step is `y = layer(x)` then `y.backward(g)`.

- **time**: median seconds of a step, contestants in alternating blocks (`timing.race`);
- **memory**: the peak of the bytes allocated during one step, forward and backward, traced by
  `tracemalloc` (NumPy reports its array allocations to it; the numba kernels here allocate
  their outputs with NumPy). Weights and the input exist before and are not counted.

The crossover is the shortest T from which tree attention is faster (smaller) at every longer
T measured. Tree attention's memory should grow as T log T — T times the number of levels —
dense attention's as T².

**Threads.** The race runs twice, each time in a fresh process: with numba's default thread
pool (2 threads here) and with `NUMBA_NUM_THREADS=1`. On a shared machine a parallel kernel
launch waits for the second core whenever another process holds it (`nima.kernels.threads`),
a cost per launch rather than per flop; the one-thread race shows the arithmetic alone.

Run: `python benchmarks/bench_tree_attention.py [--quick]`; writes
`benchmarks/results/tree_attention.md` and `tree_attention.json`, with the CPU (`lscpu`).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tracemalloc
from collections.abc import Callable

import numpy as np
from timing import publish, race

import nima
from nima.nn import MultiHeadAttention, TreeAttention

B, D, NH, CHUNK = 2, 128, 4, 16
LENGTHS = (64, 128, 256, 512, 1024, 2048, 4096)


def step(layer: nima.nn.Module, T: int) -> Callable[[], None]:
    """One forward + backward of `layer` on a fixed input of T tokens."""
    rng = np.random.default_rng(T)
    x = nima.tensor(rng.standard_normal((B, T, D)).astype(np.float32), requires_grad=True)
    g = rng.standard_normal((B, T, D)).astype(np.float32)

    def run() -> None:
        layer.zero_grad()
        x.grad = None
        layer(x).backward(g)

    return run


def peak_mb(run: Callable[[], None]) -> float:
    """MiB allocated at the peak of one call (after an untimed one)."""
    run()
    tracemalloc.start()
    try:
        run()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def layers(T: int) -> tuple[TreeAttention, MultiHeadAttention]:
    nima.manual_seed(0)
    tree = TreeAttention(D, NH, T, chunk_size=CHUNK)
    dense = MultiHeadAttention(D, NH, causal=True)
    dense.load_state_dict(tree.state_dict(), strict=False)  # the same qkv and proj
    return tree, dense


def crossover(rows: list[dict], key: str) -> int | None:
    """The shortest T from which the tree is ahead on `key` at every longer T, or None."""
    ahead = [row["T"] for row in rows if row["tree"][key] < row["dense"][key]]
    for i, row in enumerate(rows):
        if all(r["T"] in ahead for r in rows[i:]):
            return row["T"]
    return None


def cpu() -> list[str]:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return ["(lscpu not available)"]
    return out.splitlines()[:15]


def measure(lengths: list[int], quick: bool) -> list[dict]:
    """Time and peak memory of both layers at every length, in this process."""
    rows = []
    for T in lengths:
        tree, dense = layers(T)
        runs = {"tree": step(tree, T), "dense": step(dense, T)}
        rounds = 2 if quick or T >= 2048 else 4
        seconds = race(runs, budget_s=1.0 if quick else 4.0, rounds=rounds)
        row = {"T": T, "levels": tree.levels}
        for name, run in runs.items():
            row[name] = {"ms": seconds[name] * 1e3, "mb": peak_mb(run)}
        rows.append(row)
        print(f"T={T}: tree {row['tree']['ms']:.1f} ms {row['tree']['mb']:.1f} MiB, dense "
              f"{row['dense']['ms']:.1f} ms {row['dense']['mb']:.1f} MiB", file=sys.stderr,
              flush=True)
    return rows


def in_subprocess(threads: str | None, quick: bool) -> list[dict]:
    """`measure` in a fresh process with `NUMBA_NUM_THREADS=threads` (None: numba's default)."""
    env = dict(os.environ)
    env.pop("NUMBA_NUM_THREADS", None)
    if threads is not None:
        env["NUMBA_NUM_THREADS"] = threads
    command = [sys.executable, __file__, "--worker", *(["--quick"] if quick else [])]
    out = subprocess.run(command, env=env, capture_output=False, stdout=subprocess.PIPE,
                         text=True, check=True).stdout
    return json.loads(out)


def table(rows: list[dict]) -> list[str]:
    lines = ["| T | levels | tree ms | dense ms | dense / tree time | tree MiB | dense MiB | "
             "dense / tree memory | tree bytes / (T log2 T) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        T, tr, de = row["T"], row["tree"], row["dense"]
        lines.append(
            f"| {T} | {row['levels']} | {tr['ms']:.1f} | {de['ms']:.1f} | "
            f"{de['ms'] / tr['ms']:.2f} | {tr['mb']:.1f} | {de['mb']:.1f} | "
            f"{de['mb'] / tr['mb']:.2f} | {tr['mb'] * 2**20 / (T * math.log2(T)):.0f} |")
    faster, smaller = crossover(rows, "ms"), crossover(rows, "mb")
    return [*lines, "", f"Crossover: tree attention is faster from T = {faster} and smaller "
            f"from T = {smaller} on (at every longer T measured)."]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="T up to 1024, short budgets")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    lengths = [T for T in LENGTHS if not args.quick or T <= 1024]
    if args.worker:
        print(json.dumps(measure(lengths, args.quick)))
        return
    runs = {"default": in_subprocess(None, args.quick), "1": in_subprocess("1", args.quick)}
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines = [
        f"Tree attention (chunk {CHUNK}) vs dense causal attention (fused causal softmax), "
        f"forward + backward, batch {B}, d_model {D}, {NH} heads, float32. Median time of "
        f"alternating blocks; peak memory traced over one step. Load average {load:.2f} at the "
        f"end (2 cores, shared with other work).", ""]
    for threads, rows in runs.items():
        title = "numba's default thread pool (2 threads)" if threads == "default" else \
            "one numba thread (`NUMBA_NUM_THREADS=1`)"
        lines += [f"### {title}", "", *table(rows), ""]
    lines += ["CPU (`lscpu`):", "", "```", *cpu(), "```"]
    publish("tree_attention", lines, {
        "shape": {"B": B, "d_model": D, "n_head": NH, "chunk_size": CHUNK}, "load": load,
        "crossover": {threads: {"time": crossover(rows, "ms"), "memory": crossover(rows, "mb")}
                      for threads, rows in runs.items()},
        "rows": runs})


if __name__ == "__main__":
    main()
