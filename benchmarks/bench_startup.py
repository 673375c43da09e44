"""Start-up: how long `import nima` takes, and how soon `nima train` shows progress and steps.

Each measurement is a fresh process, so nothing is already imported or compiled in memory;
numba's on-disk cache is warm (one untimed run first), as it is on every run after a user's
first. Timed from just before the process starts:

* `import nima`, and `import numpy` as the reference measured in the same run (Nima imports
  NumPy, so the difference is Nima's own share); PyTorch's `import torch` too, if importable;
* `nima train configs/shakespeare_char.yaml`, shortened (`training.eval_iters=2`): when its
  first progress line appears, and when the line that reports step 1 does — the first step,
  after the step-0 estimate of the loss.

Medians over `--repeats` processes (default 7).

Run: `python benchmarks/bench_startup.py [--repeats N]`; writes
`benchmarks/results/startup.md` and `startup.json`.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from timing import machine, publish

ROOT = Path(__file__).resolve().parents[1]
PROGRESS = re.compile(r"step +(\d+)/\d+")  # the progress bar: "step  1/20 [#---] ..."


def import_seconds(module: str) -> float:
    """Seconds to import `module` in a fresh interpreter, measured inside it."""
    code = f"import time; t = time.perf_counter(); import {module}; " \
           f"print(time.perf_counter() - t)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    return float(out.stdout.strip().splitlines()[-1])


def train_seconds(folder: Path) -> tuple[float, float]:
    """(first progress line, step 1 reported), in seconds from the start of `nima train`."""
    command = [sys.executable, "-u", "-m", "nima", "train",
               str(ROOT / "configs" / "shakespeare_char.yaml"),
               "--set", "training.max_iters=20", "--set", "schedule.warmup=5",
               "--set", "training.eval_iters=2", "--set", "training.log_interval=1",
               "--set", "sampling.max_new_tokens=0",
               "--set", f"data.out_dir={folder / 'data'}",
               "--set", f"training.run_dir={folder / 'run'}", "--overwrite"]
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    first = step1 = None
    line = b""
    while step1 is None:
        char = process.stdout.read(1)
        if not char:
            break
        if char not in b"\r\n":
            line += char
            continue
        match = PROGRESS.search(line.decode(errors="replace"))
        if match:
            now = time.perf_counter() - start
            first = now if first is None else first
            if int(match.group(1)) >= 1:
                step1 = now
        line = b""
    process.kill()
    process.wait()
    if step1 is None:
        raise RuntimeError("nima train printed no progress line for step 1")
    return first, step1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    modules = ["numpy", "nima"] + (["torch"] if importlib.util.find_spec("torch") else [])
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        train_seconds(folder)  # untimed: prepares the data, loads or fills numba's cache
        imports = {m: [] for m in modules}
        train: list[tuple[float, float]] = []
        for _ in range(args.repeats):  # alternate, so that load from elsewhere hits all
            for m in modules:
                imports[m].append(import_seconds(m))
            train.append(train_seconds(folder))
    med = {m: statistics.median(v) for m, v in imports.items()}
    first = statistics.median(t[0] for t in train)
    step1 = statistics.median(t[1] for t in train)
    lines = [
        f"**Start-up**: fresh processes, numba's cache warm; medians of {args.repeats}.",
        "",
        f"Machine: {machine()}.",
        "",
        "| what | seconds |",
        "|---|---|",
        *(f"| `import {m}` | {med[m]:.3f} |" for m in modules),
        f"| `nima train`: first progress line | {first:.2f} |",
        f"| `nima train`: step 1 reported | {step1:.2f} |",
        "",
        f"`import nima` takes {med['nima'] - med['numpy']:.3f} s beyond NumPy's own import.",
    ]
    publish("startup", lines, {"machine": machine(), "imports": med,
                               "train_first_progress_s": first, "train_step1_s": step1})


if __name__ == "__main__":
    main()
