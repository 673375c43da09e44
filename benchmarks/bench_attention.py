"""Fused vs unfused attention: causal self-attention at the baby-GPT shape, forward + backward.

Shape: B=12 sequences, nh=4 heads, T=64 tokens, hd=32 dims per head (d_model 128), float32.
Four ways to compute `softmax(q k^T / sqrt(d) + causal mask) v` for every head, all through
autograd, each from the packed projection `qkv` (B, T, 3 d_model) to the merged heads
(B, T, d_model), as `MultiHeadAttention` uses them. The first three split the heads out of `qkv`
(a view, a transpose and three slices) and merge them after (a transpose and a copy):

- **unfused**: what one writes with elementwise Nima ops — `masked_fill` with -inf, then the
  softmax as `exp(s - max) / sum` (five ops, each a full pass over the scores and a graph node);
- **mask + softmax kernel**: `masked_fill` with a NumPy causal mask, then the fused row softmax
  (`kernels.softmax_forward` / `softmax_backward`, one node);
- **SDPA**: `F.scaled_dot_product_attention(..., is_causal=True)`, which puts the causal mask
  inside the softmax kernel (`nima.kernels.attention`): no mask array, no filled copy, no
  `masked_fill` node; the backward is the row softmax backward;
- **fused**: `F.causal_self_attention(qkv, nh)`, one op and one kernel per (sequence, head)
  from `qkv` to the merged heads (`nima.kernels.causal_attention`), forward and backward.

The two matrix products are the same in the first three. Each contestant runs in blocks (an untimed
call, then timed calls); blocks alternate over several rounds so that load from elsewhere hits
all of them; times are medians. Ratios are against the fused op (above 1: it is faster).

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


def split(qkv: nima.Tensor) -> tuple[nima.Tensor, nima.Tensor, nima.Tensor]:
    """`(B, T, 3C)` -> q, k, v `(B, nh, T, hd)`, as `MultiHeadAttention` splits its heads."""
    heads = qkv.view(B, T, 3 * NH, HD).transpose(1, 2)
    return heads[:, :NH], heads[:, NH:2 * NH], heads[:, 2 * NH:]


def merge(out: nima.Tensor) -> nima.Tensor:
    """`(B, nh, T, hd)` -> `(B, T, C)`."""
    return out.transpose(1, 2).reshape(B, T, NH * HD)


def unfused(qkv: nima.Tensor) -> nima.Tensor:
    q, k, v = split(qkv)
    scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(HD))  # (B, nh, T, T)
    scores = scores.masked_fill(~np.tri(T, T, dtype=bool), -np.inf)
    e = (scores - scores.max(dim=-1, keepdim=True).detach()).exp()
    return merge((e / e.sum(dim=-1, keepdim=True)) @ v)


def mask_then_softmax(qkv: nima.Tensor) -> nima.Tensor:
    q, k, v = split(qkv)
    scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(HD))  # (B, nh, T, T)
    scores = scores.masked_fill(~np.tri(T, T, dtype=bool), -np.inf)
    return merge(F.softmax(scores, dim=-1) @ v)


def sdpa(qkv: nima.Tensor) -> nima.Tensor:
    return merge(F.scaled_dot_product_attention(*split(qkv), is_causal=True))


def fused(qkv: nima.Tensor) -> nima.Tensor:
    return F.causal_self_attention(qkv, NH)


CONTESTANTS: dict[str, Callable[[nima.Tensor], nima.Tensor]] = {
    "unfused": unfused, "mask + softmax kernel": mask_then_softmax, "SDPA": sdpa, "fused": fused}


def make_step(fn: Callable[[nima.Tensor], nima.Tensor], backward: bool) -> Callable[[], None]:
    rng = np.random.default_rng(0)
    qkv = nima.tensor(rng.standard_normal((B, T, 3 * NH * HD)).astype(np.float32),
                      requires_grad=True)
    grad = rng.standard_normal((B, T, NH * HD)).astype(np.float32)

    def step() -> None:
        if backward:
            qkv.grad = None
            fn(qkv).backward(grad)
        else:
            with nima.no_grad():
                fn(qkv)

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
    qkv = nima.tensor(rng.standard_normal((B, T, 3 * NH * HD)).astype(np.float32))
    reference = sdpa(qkv).data
    for name, fn in CONTESTANTS.items():
        np.testing.assert_allclose(fn(qkv).data, reference, rtol=2e-4, atol=2e-5, err_msg=name)


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
             "| contestant | forward ms | fwd + bwd ms | fwd + bwd time / fused's |",
             "|---|---|---|---|"]
    for name in CONTESTANTS:
        fwd, both = results["forward"][name], results["forward + backward"][name]
        ratio = both / results["forward + backward"]["fused"]
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
