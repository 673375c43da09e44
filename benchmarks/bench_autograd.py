"""Autograd overhead: what recording an op and walking it back costs, per op.

A chain of N small ops (`h = h * c` on a 16-element float32 tensor) runs forward with the graph
recorded, then backward; the same arithmetic in plain NumPy (forward `h * c`, backward
`g * c`) is timed in the same run. The difference, divided by N, is the per-op overhead of the
tensor wrapper, `Function.apply`, the `Context` node and the engine:

    recording overhead  = (t_forward - t_numpy_forward) / N        (what building the graph costs)
    overhead            = (t_forward + t_backward - t_numpy) / N  (building and walking it back)

Everything runs on the calling thread and is timed by its CPU time (`time.thread_time`), so
other processes on a shared machine do not inflate it. Python's cyclic garbage collector runs
as it would in a user's program; the same chain is also timed with it paused
(`gc.disable()` around the chain, restored after), to show what its scans of the live graph
cost per op.

Run: `python benchmarks/bench_autograd.py [--quick]`; writes `benchmarks/results/autograd.json`
and `autograd.md`.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time

import numpy as np
from timing import machine, publish

import nima


def time_chain(n: int) -> dict[str, float]:
    x = nima.tensor(np.ones(16, dtype=np.float32), requires_grad=True)
    clock = time.thread_time
    t0 = clock()
    h = x
    for _ in range(n):
        h = h * 1.0001
    loss = h.sum()
    t1 = clock()
    loss.backward()
    t2 = clock()
    with nima.no_grad():
        h = x
        for _ in range(n):
            h = h * 1.0001
    t3 = clock()
    a = x.data
    g = np.ones_like(a)
    for _ in range(n):
        a = a * 1.0001
    t4 = clock()
    for _ in range(n):
        g = g * 1.0001
    t5 = clock()
    return {"forward": t1 - t0, "backward": t2 - t1, "no_grad": t3 - t2,
            "numpy_forward": t4 - t3, "numpy": t5 - t3}


def paused_gc(n: int) -> dict[str, float]:
    """`time_chain(n)` with the cyclic collector paused, then restored as it was."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return time_chain(n)
    finally:
        if was_enabled:
            gc.enable()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--ops", type=int, default=10_000)
    args = parser.parse_args()
    repeats = 3 if args.quick else 15
    time_chain(1000)  # warm up
    runs, paused = [], []
    for _ in range(repeats):  # alternate, so that load from elsewhere hits both alike
        runs.append(time_chain(args.ops))
        paused.append(paused_gc(args.ops))

    def per_op(samples: list[dict[str, float]]) -> dict[str, float]:
        us = {k: statistics.median(r[k] for r in samples) / args.ops * 1e6 for k in samples[0]}
        us["recording overhead"] = us["forward"] - us["numpy_forward"]
        us["overhead"] = us["forward"] + us["backward"] - us["numpy"]
        return us

    us, us_paused = per_op(runs), per_op(paused)
    lines = [f"Chain of {args.ops} `h = h * c` ops on 16 float32 values; median of {repeats} "
             f"runs of each, CPU time of the calling thread.", "",
             f"Machine: {machine()}.", "",
             "| phase | µs per op | with the collector paused |", "|---|---|---|"]
    lines += [f"| {k.replace('_', ' ')} | {v:.2f} | {us_paused[k]:.2f} |" for k, v in us.items()]
    publish("autograd", lines, {"ops": args.ops, "repeats": repeats, "us_per_op": us,
                                "us_per_op_gc_paused": us_paused})


if __name__ == "__main__":
    main()
