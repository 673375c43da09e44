r"""Allreduce time against message size: MPI's `Allreduce`, Nima's ring by hand, the formula.

Runs itself as an MPI job of 2 processes (`mpiexec -n 2`, one numba thread each). For float32
messages from 1 KB to 64 MB it times, in alternating rounds:

* **MPI**: `comm.allreduce(x)` — MPICH's `MPI_Allreduce`, in place;
* **ring**: `nima.distributed.ring_allreduce(comm, x)` — reduce-scatter then all-gather over
  `sendrecv`, in Python;
* **exchange**: both ranks `sendrecv` S bytes to each other at once — one link in both
  directions, the step the ring is made of;
* **add**: the ring's arithmetic alone, $(N-1)/N \cdot S$ bytes added in place (NumPy).

Each timing is the slower rank's (a collective is done when the last rank is), median over
repeats. The exchange times give the latency $\alpha$ (the smallest message) and the
bandwidth $B$ (fitted to $t - \alpha = S/B$ over messages of 1 MB and more) of this machine's
link, and with them the ring's formula $T = 2(N-1)(\alpha + S / (N B))$; the formula leaves
out the additions, which the table shows beside it.

Run: `python benchmarks/bench_allreduce.py [--quick]`; writes `benchmarks/results/allreduce.md`
and `allreduce.json`. Needs `pip install "nima[mpi]"`.
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
from collections.abc import Callable
from pathlib import Path

import numpy as np
from timing import machine_info, machine_lines, publish

from nima.distributed import Communicator, launched_size, mpiexec_command, ring_allreduce, world

NPROC = 2


def timed(comm: Communicator, fn: Callable[[], object], repeats: int) -> list[float]:
    """Seconds per call of the slowest rank, `repeats` times (ranks start each call together)."""
    times = np.empty(repeats)
    for i in range(repeats):
        comm.barrier()
        t0 = time.perf_counter()
        fn()
        times[i] = time.perf_counter() - t0
    return comm.allreduce(times, "max").tolist()


def worker(sizes: list[int], repeats: int, rounds: int, out: Path) -> None:
    comm = world()
    peer = (comm.rank + 1) % comm.size
    rows = []
    for n in sizes:
        x = np.random.default_rng(comm.rank).standard_normal(n).astype(np.float32)
        work, incoming, half = x.copy(), np.empty_like(x), n // comm.size
        contestants = {
            "mpi": lambda w=work: comm.allreduce(w),
            "ring": lambda w=work: ring_allreduce(comm, w),
            "exchange": lambda x=x, i=incoming: comm.sendrecv(x, peer, i, peer),
            "add": lambda w=work, i=incoming, h=half: np.add(w[:h], i[:h], out=w[:h]),
        }
        samples: dict[str, list[float]] = {name: [] for name in contestants}
        for _ in range(rounds):
            for name, fn in contestants.items():
                fn()  # untimed: first touch of the buffers
                samples[name] += timed(comm, fn, max(1, repeats // rounds))
        rows.append({"bytes": 4 * n, **{k: statistics.median(v) for k, v in samples.items()}})
    if comm.rank == 0:
        out.write_text(json.dumps(rows))


def fit_link(rows: list[dict]) -> tuple[float, float]:
    r"""The link's latency $\alpha$ (s) and bandwidth $B$ (bytes/s) from the exchange times
    $t = \alpha + S/B$: $\alpha$ is the smallest message's time, $B$ the least-squares fit of
    $t - \alpha = S / B$ over the messages of 1 MB and more."""
    alpha = min(rows, key=lambda r: r["bytes"])["exchange"]
    large = [r for r in rows if r["bytes"] >= 2**20] or rows
    S = np.array([r["bytes"] for r in large], dtype=float)
    t = np.array([r["exchange"] for r in large]) - alpha
    return alpha, float(S @ S / (S @ t))


def ring_formula(S: float, N: int, alpha: float, bandwidth: float) -> float:
    r"""$2(N-1)(\alpha + S / (N B))$ seconds."""
    return 2 * (N - 1) * (alpha + S / (N * bandwidth))


def size_label(n_bytes: int) -> str:
    return f"{n_bytes / 2**20:g} MB" if n_bytes >= 2**20 else f"{n_bytes / 2**10:g} KB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer sizes and repeats")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    exponents = range(8, 25, 4) if args.quick else range(8, 25)  # 2^8 .. 2^24 floats
    sizes = [2**k for k in exponents]
    repeats, rounds = (6, 2) if args.quick else (30, 3)
    if launched_size() > 1:
        worker(sizes, repeats, rounds, args.worker)
        return

    info = machine_info()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "rows.json"
        env = {**os.environ, "NUMBA_NUM_THREADS": "1"}
        command = mpiexec_command(NPROC, [sys.executable, __file__, "--worker", str(out),
                                          *(["--quick"] if args.quick else [])])
        subprocess.run(command, env=env, check=True)
        rows = json.loads(out.read_text())
    alpha, bandwidth = fit_link(rows)
    for r in rows:
        r["formula"] = ring_formula(r["bytes"], NPROC, alpha, bandwidth)
    lines = [
        f"**Allreduce of float32 messages, {NPROC} processes** (median of the slower rank; "
        f"{repeats} repeats in {rounds} alternating rounds)",
        "",
        f"The link, from the exchange times: latency $\\alpha$ = {alpha * 1e6:.1f} µs, "
        f"bandwidth $B$ = {bandwidth / 1e9:.2f} GB/s. Formula: "
        f"$2(N-1)(\\alpha + S/(NB))$ with $N = {NPROC}$; adds: the ring's additions "
        f"timed alone.",
        "",
        "| size | MPI Allreduce | ring (Nima) | formula | formula + adds | ring / MPI | "
        "ring / (formula + adds) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        total = r["formula"] + r["add"]
        lines.append(f"| {size_label(r['bytes'])} | {r['mpi'] * 1e3:.3f} ms | "
                     f"{r['ring'] * 1e3:.3f} ms | {r['formula'] * 1e3:.3f} ms | "
                     f"{total * 1e3:.3f} ms | {r['ring'] / r['mpi']:.2f}x | "
                     f"{r['ring'] / total:.2f}x |")
    load_after = os.getloadavg()[0]
    lines += ["", *machine_lines(info, load_after)]
    if args.quick:  # a smoke test: nothing written
        print("\n".join(lines))
        return
    publish("allreduce", lines, {"nproc": NPROC, "alpha_s": alpha,
                                 "bandwidth_bytes_per_s": bandwidth, "rows": rows,
                                 "machine": info, "load_average_end": load_after})


if __name__ == "__main__":
    main()
