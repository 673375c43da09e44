"""Autograd overhead: what recording an op and walking it back costs, per op.

A chain of N small ops (`h = h * c` on a 16-element float32 tensor) runs forward with the graph
recorded, then backward; the same arithmetic in plain NumPy (forward `h * c`, backward
`g * c`) is timed in the same run. The difference, divided by N, is the per-op overhead of the
tensor wrapper, `Function.apply`, the `Context` node and the engine:

    recording overhead  = (t_forward - t_numpy_forward) / N        (what building the graph costs)
    overhead            = (t_forward + t_backward - t_numpy) / N  (building and walking it back)

Run: `python benchmarks/bench_autograd.py [--quick]`; writes `benchmarks/results/autograd.json`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

import nima
from nima.serialization import atomic_write_text

RESULTS = Path(__file__).parent / "results"


def time_chain(n: int) -> dict[str, float]:
    x = nima.tensor(np.ones(16, dtype=np.float32), requires_grad=True)
    t0 = time.perf_counter()
    h = x
    for _ in range(n):
        h = h * 1.0001
    loss = h.sum()
    t1 = time.perf_counter()
    loss.backward()
    t2 = time.perf_counter()
    with nima.no_grad():
        h = x
        for _ in range(n):
            h = h * 1.0001
    t3 = time.perf_counter()
    a = x.data
    g = np.ones_like(a)
    for _ in range(n):
        a = a * 1.0001
    t4 = time.perf_counter()
    for _ in range(n):
        g = g * 1.0001
    t5 = time.perf_counter()
    return {"forward": t1 - t0, "backward": t2 - t1, "no_grad": t3 - t2,
            "numpy_forward": t4 - t3, "numpy": t5 - t3}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--ops", type=int, default=10_000)
    args = parser.parse_args()
    repeats = 3 if args.quick else 15
    time_chain(1000)  # warm up
    runs = [time_chain(args.ops) for _ in range(repeats)]
    us = {k: statistics.median(r[k] for r in runs) / args.ops * 1e6 for k in runs[0]}
    us["recording overhead"] = us["forward"] - us["numpy_forward"]
    us["overhead"] = us["forward"] + us["backward"] - us["numpy"]
    table = [f"Chain of {args.ops} `h = h * c` ops on 16 float32 values; median of {repeats} runs.",
             "", "| phase | µs per op |", "|---|---|"]
    table += [f"| {k.replace('_', ' ')} | {v:.2f} |" for k, v in us.items()]
    print("\n".join(table))
    RESULTS.mkdir(exist_ok=True)
    atomic_write_text(RESULTS / "autograd.json", json.dumps({"ops": args.ops, "repeats": repeats,
                                                  "us_per_op": us}, indent=2))
    atomic_write_text(RESULTS / "autograd.md", "\n".join(table) + "\n")




if __name__ == "__main__":
    main()
