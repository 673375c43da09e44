"""What the benchmarks share: the timing loop (contestants run in alternating blocks; `race` gives
their medians, `race_samples` every call), `machine`, the line that says where a result was
measured, and `publish`, which prints a result table and writes it to `benchmarks/results/`."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

from nima.serialization import atomic_write_text

RESULTS = Path(__file__).parent / "results"


def race_samples(
    contestants: dict[str, Callable[[], object]],
    budget_s: float,
    rounds: int,
    context: Callable[[str], AbstractContextManager] = lambda name: nullcontext(),
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, list[float]]:
    """Seconds per call of each contestant, every timed call.

    Contestants run in blocks — one untimed call (compile or load numba's cache, fault in pages,
    wake the thread pool), then timed repeats until the block's share of `budget_s` is spent —
    and the blocks alternate over `rounds`, so a burst of load from elsewhere hits every
    contestant. `context(name)` wraps a contestant's block (e.g. a BLAS thread limit).
    `clock` times one call: wall time by default; `time.thread_time` counts only the CPU time
    of the calling thread, which load from other processes does not inflate, and is right only
    for contestants that run on the calling thread alone.
    """
    samples: dict[str, list[float]] = {name: [] for name in contestants}
    for _ in range(rounds):
        for name, fn in contestants.items():
            with context(name):
                fn()
                deadline = time.perf_counter() + budget_s / rounds / len(contestants)
                block = samples[name]
                start = len(block)
                while len(block) - start < 3 or time.perf_counter() < deadline:
                    t0 = clock()
                    fn()
                    block.append(clock() - t0)
    return samples


def race(
    contestants: dict[str, Callable[[], object]],
    budget_s: float,
    rounds: int,
    context: Callable[[str], AbstractContextManager] = lambda name: nullcontext(),
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, float]:
    """Median seconds per call of each contestant (see `race_samples`)."""
    samples = race_samples(contestants, budget_s, rounds, context, clock)
    return {name: statistics.median(s) for name, s in samples.items()}


def machine() -> str:
    """The CPU (from `lscpu`), its core count, and the load average now: a result's context."""
    try:
        lines = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        cpu = next(line.split(":", 1)[1].strip() for line in lines.splitlines()
                   if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        cpu = platform.processor() or platform.machine()
    return f"{cpu}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}"


def publish(name: str, lines: list[str], data: Any = None) -> str:
    """Print the result lines and write them to `results/{name}.md` — and `data`, if given, to
    `results/{name}.json` — each atomically. Returns the text."""
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.mkdir(exist_ok=True)
    atomic_write_text(RESULTS / f"{name}.md", text)
    if data is not None:
        atomic_write_text(RESULTS / f"{name}.json", json.dumps(data, indent=2) + "\n")
    return text
