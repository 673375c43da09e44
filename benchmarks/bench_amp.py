"""What float16 autocast costs on this CPU: one baby-GPT training step with and without it.

Model and step as `bench_train_step.py` (baby preset, vocab 65, batch 12 x 64, AdamW, clip 1.0),
in three variants run in alternating rounds:

* `float32` — the plain step;
* `autocast + GradScaler` — the trainer's mixed-precision step: forward under
  `nima.autocast()`, `scaler.scale(loss).backward()`, unscale, clip, `scaler.step`, `update`;
* `autocast, no scaling` — the same without the scaler, to show what the float16 gradients'
  underflow costs in time as well as in precision.

Also timed: NumPy's float32 -> float16 cast of 393,216 values (one `(12, 64, 512)` activation),
once for ordinary values and once for values that land in float16's subnormal range.

Run: `python benchmarks/bench_amp.py [--quick]`; writes `benchmarks/results/amp.md`. On a
machine shared with other jobs, `NUMBA_NUM_THREADS=1` keeps numba's parallel kernels from
stalling at their barriers, which otherwise swamps the difference being measured.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from collections.abc import Callable

import numba
import numpy as np
from bench_train_step import CONFIG, B, batch
from timing import machine, publish, race

import nima
from nima.models import GPT
from nima.optim import AdamW, GradScaler, clip_grad_norm_
from nima.optim.adam import param_groups_for_decay

PHASES = ("forward", "backward", "optimizer", "step")


def make_step(mode: str, times: dict[str, list[float]]) -> Callable[[], None]:
    """One training step of a fresh seeded model; `mode` is float32, scaled or unscaled."""
    nima.manual_seed(0)
    model = GPT(CONFIG)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = AdamW(param_groups_for_decay(model, 0.1), lr=1e-3, betas=(0.9, 0.99))
    scaler = GradScaler(enabled=mode == "autocast + GradScaler")
    x, y = batch()

    def step() -> None:
        opt.zero_grad()
        t0 = time.perf_counter()
        with nima.autocast(enabled=mode != "float32"):
            _, loss = model(x, y)
        t1 = time.perf_counter()
        scaler.scale(loss).backward()
        t2 = time.perf_counter()
        scaler.unscale_(opt)
        clip_grad_norm_(params, 1.0)
        scaler.step(opt)
        scaler.update()
        t3 = time.perf_counter()
        for name, a, b in (("forward", t0, t1), ("backward", t1, t2), ("optimizer", t2, t3),
                           ("step", t0, t3)):
            times[name].append((b - a) * 1e3)

    return step


def cast_ms(values: np.ndarray, repeats: int = 20) -> float:
    """Median ms of `values.astype(float16)`."""
    samples = []
    with np.errstate(under="ignore"):
        for _ in range(repeats):
            t0 = time.perf_counter()
            values.astype(np.float16)
            samples.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller time budget")
    args = parser.parse_args()
    budget, rounds = (6.0, 2) if args.quick else (45.0, 3)
    warnings.simplefilter("ignore", RuntimeWarning)  # an overflowing scaled step warns

    modes = ("float32", "autocast + GradScaler", "autocast, no scaling")
    times = {m: {k: [] for k in PHASES} for m in modes}
    steps = {m: make_step(m, times[m]) for m in modes}
    for m in modes:  # warm-up: compile or load the numba kernels, allocate AdamW's state
        steps[m]()
        for phase in PHASES:
            times[m][phase].clear()
    race(steps, budget, rounds)
    med = {m: {k: statistics.median(v) for k, v in times[m].items()} for m in modes}

    rng = np.random.default_rng(0)
    normal = rng.standard_normal(B * CONFIG.block_size * 512).astype(np.float32)
    tiny = normal * np.float32(1e-6)  # 1e-6: below float16's smallest normal, 6.1e-5
    cast_normal, cast_tiny = cast_ms(normal), cast_ms(tiny)

    base = med["float32"]["step"]
    lines = [
        "**float16 autocast: one baby-GPT training step** (baby preset, vocab 65, batch 12 x 64)",
        "",
        f"Machine: {machine()} (at the end), numba on {numba.get_num_threads()} thread(s); "
        f"medians in ms over "
        f"{len(times['float32']['step'])}+ steps each, variants alternating in {rounds} rounds.",
        "",
        "| variant | forward | backward | unscale + clip + AdamW | step | vs float32 |",
        "|---|---|---|---|---|---|",
    ]
    for m in modes:
        r = med[m]
        lines.append(f"| {m} | {r['forward']:.1f} | {r['backward']:.1f} | "
                     f"{r['optimizer']:.1f} | {r['step']:.1f} | {r['step'] / base:.2f}x |")
    lines += [
        "",
        f"NumPy float32 -> float16 cast of {normal.size:,} values: {cast_normal:.2f} ms for "
        f"ordinary values, {cast_tiny:.2f} ms when they fall in float16's subnormal range "
        f"({cast_tiny / cast_normal:.0f}x).",
    ]
    publish("amp", lines)


if __name__ == "__main__":
    main()
