"""Fused vs unfused attention: causal self-attention at the baby-GPT shape, forward + backward.

Shape: B=12 sequences, nh=4 heads, T=64 tokens, hd=32 dims per head (d_model 128), float32.
Three ways to compute `softmax(q k^T / sqrt(d) + causal mask) v`, all through autograd:

- **unfused**: what one writes with elementwise Nima ops — `masked_fill` with -inf, then the
  softmax as `exp(s - max) / sum` (five ops, each a full pass over the scores and a graph node);
- **mask + softmax kernel**: `masked_fill` with a NumPy causal mask, then the fused row softmax
  (`kernels.softmax_forward` / `softmax_backward`, one node);
- **SDPA**: `F.scaled_dot_product_attention(..., is_causal=True)`, which puts the causal mask
  inside the softmax kernel (`nima.kernels.attention`): no mask array, no filled copy, no
  `masked_fill` node; the backward is the row softmax backward.

The two matrix products are the same in all three. Each contestant runs in blocks (an untimed
call, then timed calls); blocks alternate over several rounds so that load from elsewhere hits
all of them; times are medians. Ratios are against SDPA (above 1: SDPA is faster).

Run: `python benchmarks/bench_attention.py [--quick]`; writes `benchmarks/results/attention.md`
and `attention.json`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

import nima
import nima.functional as F
from nima.serialization import atomic_write_text

RESULTS = Path(__file__).parent / "results"
B, NH, T, HD = 12, 4, 64, 32


def unfused(q: nima.Tensor, k: nima.Tensor, v: nima.Tensor) -> nima.Tensor:
    scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(q.shape[-1]))  # (B, nh, T, T)
    scores = scores.masked_fill(~np.tri(T, T, dtype=bool), -np.inf)
    e = (scores - scores.max(dim=-1, keepdim=True).detach()).exp()
    return (e / e.sum(dim=-1, keepdim=True)) @ v  # (B, nh, T, hd)


def mask_then_softmax(q: nima.Tensor, k: nima.Tensor, v: nima.Tensor) -> nima.Tensor:
    scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(q.shape[-1]))  # (B, nh, T, T)
    scores = scores.masked_fill(~np.tri(T, T, dtype=bool), -np.inf)
    return F.softmax(scores, dim=-1) @ v  # (B, nh, T, hd)


def sdpa(q: nima.Tensor, k: nima.Tensor, v: nima.Tensor) -> nima.Tensor:
    return F.scaled_dot_product_attention(q, k, v, is_causal=True)


CONTESTANTS: dict[str, Callable[..., nima.Tensor]] = {
    "unfused": unfused, "mask + softmax kernel": mask_then_softmax, "SDPA": sdpa}


def make_step(fn: Callable[..., nima.Tensor], backward: bool) -> Callable[[], None]:
    rng = np.random.default_rng(0)
    q, k, v = (nima.tensor(rng.standard_normal((B, NH, T, HD)).astype(np.float32),
                           requires_grad=True) for _ in range(3))
    grad = rng.standard_normal((B, NH, T, HD)).astype(np.float32)

    def step() -> None:
        if backward:
            fn(q, k, v).backward(grad)
        else:
            with nima.no_grad():
                fn(q, k, v)

    return step


def race(steps: dict[str, Callable[[], None]], rounds: int, calls: int) -> dict[str, float]:
    """Median milliseconds per call, blocks of `calls` alternating over `rounds`."""
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            step()  # untimed: compile / warm caches / wake the thread pool
            for _ in range(calls):
                t0 = time.perf_counter()
                step()
                times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) * 1e3 for name, ts in times.items()}


def check_agreement() -> None:
    rng = np.random.default_rng(1)
    q, k, v = (nima.tensor(rng.standard_normal((2, NH, T, HD)).astype(np.float32))
               for _ in range(3))
    reference = sdpa(q, k, v).data
    for name, fn in CONTESTANTS.items():
        np.testing.assert_allclose(fn(q, k, v).data, reference, rtol=2e-4, atol=2e-5,
                                   err_msg=name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds, for a smoke test")
    args = parser.parse_args()
    rounds, calls = (2, 10) if args.quick else (12, 50)
    check_agreement()
    results = {}
    for phase, backward in (("forward", False), ("forward + backward", True)):
        steps = {name: make_step(fn, backward) for name, fn in CONTESTANTS.items()}
        results[phase] = race(steps, rounds, calls)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines = [f"Causal attention, B={B}, nh={NH}, T={T}, hd={HD}, float32; median ms of "
             f"{rounds} x {calls} calls; load average {load:.2f} at the end.", "",
             "| contestant | forward ms | fwd + bwd ms | fwd + bwd time / SDPA's |",
             "|---|---|---|---|"]
    for name in CONTESTANTS:
        fwd, both = results["forward"][name], results["forward + backward"][name]
        ratio = both / results["forward + backward"]["SDPA"]
        lines.append(f"| {name} | {fwd:.3f} | {both:.3f} | {ratio:.2f} |")
    table = "\n".join(lines)
    print(table)
    RESULTS.mkdir(exist_ok=True)
    atomic_write_text(RESULTS / "attention.json", json.dumps(
        {"shape": {"B": B, "nh": NH, "T": T, "hd": HD}, "rounds": rounds, "calls": calls,
         "load": load, "ms": results}, indent=2))
    atomic_write_text(RESULTS / "attention.md", table + "\n")




if __name__ == "__main__":
    main()
