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

import numba
import numpy as np

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
    """One line on where a result was measured: the CPU as `lscpu` names it (family/model,
    AVX-512 or not, caches), the cores, the libraries, and the load average now."""
    info = dict(line.split(":", 1) for line in _lscpu() if ":" in line)
    info = {key.strip(): value.strip() for key, value in info.items()}
    cpu = info.get("Model name") or platform.processor() or platform.machine()
    family = f"family {info['CPU family']} model {info['Model']}; " if "Model" in info else ""
    avx512 = "AVX-512" if "avx512f" in info.get("Flags", "").split() else "no AVX-512"
    caches = "".join(f", {name} {info[name]}" for name in ("L1d cache", "L2 cache", "L3 cache")
                     if name in info)
    versions = f"numpy {np.__version__}, numba {numba.__version__}"
    return (f"{cpu} ({family}{avx512}{caches}), {os.cpu_count()} cores; {versions}; load "
            f"average {os.getloadavg()[0]:.2f}")


def _lscpu() -> list[str]:
    try:
        return subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10,
                              env={**os.environ, "LC_ALL": "C"}).stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        return []


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


def machine_info() -> dict[str, Any]:
    """The CPU (the first 15 lines of `lscpu`, or the platform when there is no `lscpu`) and
    the 1-minute load average right now: what a results file records about where it ran."""
    lscpu = _lscpu()[:15] or [f"{platform.machine()}, {os.cpu_count()} CPUs"]
    return {"lscpu": lscpu, "load_average": os.getloadavg()[0], "cpus": os.cpu_count()}


def machine_lines(info: dict[str, Any], load_after: float | None = None) -> list[str]:
    """`machine_info()` as markdown: the load average (at start, and at the end if given) and
    `lscpu` in a collapsed block."""
    load = f"{info['load_average']:.2f} at start" + (
        f", {load_after:.2f} at the end" if load_after is not None else "")
    return [f"Load average (1 min, {info['cpus']} CPUs): {load}.", "",
            '??? note "CPU (lscpu)"', "    ```text",
            *(f"    {line}" for line in info["lscpu"]), "    ```"]
