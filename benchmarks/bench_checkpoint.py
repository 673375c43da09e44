"""Gradient checkpointing: memory and time of a training step with and without it.

A GPT of `n_layer` blocks (d=128, 4 heads, context 256, vocab 65) runs forward + backward on
a batch of 8 x 256 tokens, once plainly and once with `gradient_checkpointing=True`. Memory is
NumPy's own allocation accounting through `tracemalloc` (NumPy reports every array buffer it
allocates to it; the kernels allocate their outputs with NumPy too):

* **kept after forward** — what the recorded graph holds between forward and backward (the
  activations), measured as the traced memory after the forward minus before it;
* **peak** — the highest traced memory during forward + backward, above the starting point.

Both runs must give identical gradients (checked). Timing runs without tracemalloc.

Run: `python benchmarks/bench_checkpoint.py [--quick]`; writes
`benchmarks/results/checkpoint.md` and `checkpoint.json` (via a temporary file and a rename).
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import statistics
import time
import tracemalloc

import numpy as np
from timing import publish

import nima
from nima.models import GPT, GPTConfig

BASE = GPTConfig(vocab_size=65, block_size=256, n_layer=8, n_head=4, n_embd=128, bias=False)
B = 8


def batch(config: GPTConfig) -> tuple[np.ndarray, np.ndarray]:
    data = np.random.default_rng(0).integers(0, config.vocab_size, (B, config.block_size + 1))
    return data[:, :-1], data[:, 1:]


def build(config: GPTConfig, checkpointing: bool) -> GPT:
    nima.manual_seed(0)
    return GPT(dataclasses.replace(config, gradient_checkpointing=checkpointing))


def memory(config: GPTConfig, checkpointing: bool) -> dict[str, float]:
    """MB kept by the graph after forward, and peak MB during forward + backward."""
    model = build(config, checkpointing)
    x, y = batch(config)
    model(x[:, :8], y[:, :8])[1].backward()  # warm up kernels (compilation, caches) untraced
    model.zero_grad()
    gc.collect()
    tracemalloc.start()
    start = tracemalloc.get_traced_memory()[0]
    _, loss = model(x, y)
    after_forward = tracemalloc.get_traced_memory()[0]
    loss.backward()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {"kept_mb": (after_forward - start) / 1e6, "peak_mb": (peak - start) / 1e6}


def gradients(config: GPTConfig, checkpointing: bool) -> dict[str, np.ndarray]:
    model = build(config, checkpointing)
    _, loss = model(*batch(config))
    loss.backward()
    return {name: p.grad for name, p in model.named_parameters()}


def step_ms(config: GPTConfig, repeats: int) -> dict[bool, float]:
    """Median step time of each run; the two alternate step by step, so that load from
    elsewhere on the machine hits both alike."""
    models = {flag: build(config, flag) for flag in (False, True)}
    x, y = batch(config)
    times: dict[bool, list[float]] = {False: [], True: []}
    for i in range(repeats + 1):
        for flag, model in models.items():
            model.zero_grad()
            t0 = time.perf_counter()
            model(x, y)[1].backward()
            if i:  # the first round warms up
                times[flag].append((time.perf_counter() - t0) * 1e3)
    return {flag: statistics.median(t) for flag, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 layers, context 64, 3 repeats")
    args = parser.parse_args()
    config = dataclasses.replace(BASE, n_layer=4, block_size=64) if args.quick else BASE
    repeats = 3 if args.quick else 7

    plain, ckpt = gradients(config, False), gradients(config, True)
    for name in plain:
        np.testing.assert_array_equal(plain[name], ckpt[name], err_msg=name)

    times = step_ms(config, repeats)
    rows = {label: {**memory(config, flag), "step_ms": times[flag]}
            for label, flag in (("plain", False), ("checkpointed", True))}
    p, c = rows["plain"], rows["checkpointed"]
    lines = [
        f"GPT with {config.n_layer} blocks (d={config.n_embd}, {config.n_head} heads, "
        f"context {config.block_size}, vocab {config.vocab_size}, no biases), batch {B} x "
        f"{config.block_size} tokens, float32; forward + backward. Memory: NumPy allocations "
        f"traced by tracemalloc; time: median of {repeats} alternating steps. Gradients "
        f"identical (checked).",
        "",
        "| run | kept after forward (MB) | peak during step (MB) | step (ms) |",
        "|---|---|---|---|",
    ]
    for label, r in rows.items():
        lines.append(f"| {label} | {r['kept_mb']:.1f} | {r['peak_mb']:.1f} | "
                     f"{r['step_ms']:.0f} |")
    lines += ["", f"Checkpointing keeps {p['kept_mb'] / c['kept_mb']:.1f}x less after the "
              f"forward and peaks {p['peak_mb'] / c['peak_mb']:.1f}x lower, for "
              f"{c['step_ms'] / p['step_ms']:.2f}x the time (one extra forward per block)."]
    publish("checkpoint", lines, {"config": dataclasses.asdict(config), "batch": B,
                                  "repeats": repeats, "runs": rows})




if __name__ == "__main__":
    main()
