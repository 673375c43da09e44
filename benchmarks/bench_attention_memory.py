r"""Attention's cost in the sequence length $T$: time and peak memory of causal self-attention,
forward and backward, on Nima's `F.scaled_dot_product_attention`.

Shape: one sequence, the baby GPT's 4 heads of 32 dimensions, float32, $T$ from 64 to 2048 (to
512 with `--quick`). The scores $Q K^\top$ of every head form a $T \times T$ matrix, $4 \cdot
n_h T^2$ bytes per copy, and the forward and backward each make a few such copies (the scaled
scores, the weights kept for the backward, their gradients), so memory grows as $T^2$; the
time grows as $T^2$ too, from the two $T \times T \times d$ products and the softmax over
$T^2$ entries. Nima, like a plain PyTorch implementation, materialises the matrix; avoiding
that is what FlashAttention's tiling is for.

Peak memory: Python's `tracemalloc`, which sees every NumPy allocation (Nima's kernels take
their outputs from NumPy), counted from just before the call, so the inputs $Q, K, V$ and the
upstream gradient are not included. Time: median of blocks of calls (`timing.race`), on one
thread — numba's (`NUMBA_NUM_THREADS=1`, set here before numba loads unless the environment
sets it) and OpenBLAS's (threadpoolctl) — because on a shared 2-core machine a second thread
stalls for a scheduler tick whenever another process holds a core, which would hide the growth
in $T$ that this benchmark is about.

Run: `python benchmarks/bench_attention_memory.py [--quick]`; writes
`benchmarks/results/attention_memory.md` and `attention_memory.json`, which the docs'
attention page draws.
"""

from __future__ import annotations

import argparse
import gc
import os
import tracemalloc
from collections.abc import Callable

os.environ.setdefault("NUMBA_NUM_THREADS", "1")  # before numba loads; see the docstring

import numpy as np
from threadpoolctl import threadpool_limits
from timing import machine, publish, race

import nima
import nima.functional as F

HEADS, HEAD_DIM = 4, 32  # the baby GPT's attention
LENGTHS = (64, 128, 256, 512, 1024, 2048)


def make_step(t: int) -> Callable[[], None]:
    """One causal attention forward and backward at sequence length `t`."""
    rng = np.random.default_rng(t)
    q, k, v = (nima.tensor(rng.standard_normal((1, HEADS, t, HEAD_DIM)).astype(np.float32),
                           requires_grad=True) for _ in range(3))
    grad = rng.standard_normal((1, HEADS, t, HEAD_DIM)).astype(np.float32)

    def step() -> None:
        F.scaled_dot_product_attention(q, k, v, is_causal=True).backward(grad)
        for x in (q, k, v):
            x.grad = None

    return step


def peak_bytes(step: Callable[[], None]) -> int:
    """Bytes allocated at the peak of one call, above what was allocated before it."""
    step()  # compile and warm up outside the measurement
    gc.collect()
    tracemalloc.start()
    try:
        start, _ = tracemalloc.get_traced_memory()
        step()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak - start


def slope(xs: list[int], ys: list[float]) -> float:
    r"""The exponent $p$ of $y \propto x^p$ fitted (least squares, log-log) to the points."""
    return float(np.polyfit(np.log(xs), np.log(ys), 1)[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="T up to 512, shorter timings")
    args = parser.parse_args()
    lengths = [t for t in LENGTHS if t <= 512] if args.quick else list(LENGTHS)
    budget = 0.5 if args.quick else 3.0
    rows = []
    with threadpool_limits(limits=1, user_api="blas"):
        for t in lengths:
            step = make_step(t)
            seconds = race({f"T={t}": step}, budget_s=budget, rounds=3)[f"T={t}"]
            rows.append({"T": t, "peak_bytes": peak_bytes(step), "ms": seconds * 1e3,
                         "score_bytes": 4 * HEADS * t * t})
            print(f"T={t}: {rows[-1]['ms']:.2f} ms, peak "
                  f"{rows[-1]['peak_bytes'] / 2**20:.1f} MiB", flush=True)
    threads = os.environ["NUMBA_NUM_THREADS"]
    tail = rows[-3:]  # where the T^2 terms dominate
    mem_p = slope([r["T"] for r in tail], [r["peak_bytes"] for r in tail])
    time_p = slope([r["T"] for r in tail], [r["ms"] for r in tail])
    lines = [
        f"Causal self-attention, forward + backward, {HEADS} heads of {HEAD_DIM}, one sequence, "
        f"float32 (`F.scaled_dot_product_attention`), {threads} numba thread(s) and one BLAS "
        f"thread; {machine()}.",
        "",
        "| T | one T x T score matrix, all heads (MiB) | peak memory (MiB) | peak / score matrix "
        "| fwd + bwd (ms) |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {r['T']} | {r['score_bytes'] / 2**20:.2f} | {r['peak_bytes'] / 2**20:.2f} | "
              f"{r['peak_bytes'] / r['score_bytes']:.1f} | {r['ms']:.2f} |" for r in rows]
    lines += ["", f"Fitted over the last three lengths: peak memory ∝ T^{mem_p:.2f}, "
              f"time ∝ T^{time_p:.2f}."]
    publish("attention_memory", lines, {"heads": HEADS, "head_dim": HEAD_DIM, "batch": 1,
                                        "dtype": "float32", "machine": machine(),
                                        "numba_threads": int(threads),
                                        "quick": args.quick, "rows": rows,
                                        "memory_exponent": mem_p, "time_exponent": time_p})


if __name__ == "__main__":
    main()
