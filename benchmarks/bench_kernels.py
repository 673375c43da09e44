"""Race each numba kernel against its NumPy reference and against NumPy's plain composition.

For every case three contestants run on the same inputs:

* `numba`: the kernel Nima uses (`nima.kernels.*_numba`);
* `reference`: its NumPy reference in the same module (same signature, handles masked rows);
* `plain`: the shortest NumPy a user would write (e.g. `e = np.exp(x - x.max(-1, keepdims=True));
  e / e.sum(-1, keepdims=True)`), where that differs from the reference.

speedup = reference_time / numba_time (and plain_time / numba_time). Matrix products report
GFLOP/s too, with NumPy at OpenBLAS's default 2 threads and at 1 thread. Each backend runs under
Nima's thread policy (`nima.kernels.threads`): numba kernels with OpenBLAS limited to one thread,
NumPy with OpenBLAS's default. Calls are interleaved (numba, reference, plain, numba, ...) so a
burst of load from elsewhere on the machine hits all contestants alike; times are medians.

Run: `python benchmarks/bench_kernels.py [--quick]`; writes `benchmarks/results/kernels.md`,
`kernels.json` and `kernels.png`. `--only softmax` (a substring of the kernel name, e.g. `matmul`,
`softmax bwd`) races just the matching cases and writes no files.
"""

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib
import numba
import numpy as np
import timing
from threadpoolctl import threadpool_limits

from nima.kernels import cross_entropy as ce
from nima.kernels import gemm, softmax
from nima.serialization import atomic_write_text

matplotlib.use("Agg")
import matplotlib.pyplot as plt

RESULTS = Path(__file__).parent / "results"
Fn = Callable[[], object]


@dataclass
class Case:
    name: str
    shape: str
    numba: Fn
    reference: Fn
    plain: Fn | None = None
    flops: float = 0.0  # for GFLOP/s (matrix products)
    times: dict[str, float] = field(default_factory=dict)


def plain_softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def plain_log_softmax(x: np.ndarray) -> np.ndarray:
    m = x.max(-1, keepdims=True)
    return x - (m + np.log(np.exp(x - m).sum(-1, keepdims=True)))


def plain_cross_entropy(x: np.ndarray, t: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Loss and gradient the textbook way: log-softmax, pick, exp, subtract one-hot."""
    rows = np.arange(len(t))
    log_p = plain_log_softmax(x)
    losses = -log_p[rows, t]
    grad = np.exp(log_p)
    grad[rows, t] -= 1
    grad *= g[:, None]
    return losses, grad


def softmax_cases(shape: tuple[int, ...], rng: np.random.Generator) -> list[Case]:
    x = rng.standard_normal(shape, dtype=np.float32) * 3
    dy = rng.standard_normal(shape, dtype=np.float32)
    y = softmax.softmax_forward_numpy(x)
    log_y = softmax.log_softmax_forward_numpy(x)
    label = str(shape)
    return [
        Case("softmax fwd", label, lambda: softmax.softmax_forward_numba(x),
             lambda: softmax.softmax_forward_numpy(x), lambda: plain_softmax(x)),
        Case("softmax bwd", label, lambda: softmax.softmax_backward_numba(y, dy),
             lambda: softmax.softmax_backward_numpy(y, dy)),
        Case("log_softmax fwd", label, lambda: softmax.log_softmax_forward_numba(x),
             lambda: softmax.log_softmax_forward_numpy(x), lambda: plain_log_softmax(x)),
        Case("log_softmax bwd", label, lambda: softmax.log_softmax_backward_numba(log_y, dy),
             lambda: softmax.log_softmax_backward_numpy(log_y, dy)),
    ]


def cross_entropy_case(n: int, c: int, rng: np.random.Generator) -> Case:
    x = rng.standard_normal((n, c), dtype=np.float32) * 3
    t = rng.integers(0, c, n)
    g = np.full(n, 1 / n, dtype=np.float32)

    def run(forward: Callable, backward: Callable) -> Fn:
        def step() -> object:
            _, lse = forward(x, t, -100, 0.0)
            return backward(x, t, lse, g, -100, 0.0)

        return step

    return Case(
        "cross_entropy fwd+bwd", str((n, c)),
        run(ce.cross_entropy_forward_numba, ce.cross_entropy_backward_numba),
        run(ce.cross_entropy_forward_numpy, ce.cross_entropy_backward_numpy),
        lambda: plain_cross_entropy(x, t, g),
    )


def matmul_case(batch: int, m: int, k: int, n: int, rng: np.random.Generator) -> Case:
    a = rng.standard_normal((batch, m, k), dtype=np.float32)
    b = rng.standard_normal((batch, k, n), dtype=np.float32)
    label = f"({m},{k})@({k},{n})" if batch == 1 else f"({batch},{m},{k})@({batch},{k},{n})"
    return Case("matmul f32", label, lambda: gemm.matmul_numba(a, b),
                lambda: gemm.matmul_numpy(a, b), flops=2.0 * batch * m * n * k)


def race(case: Case, budget_s: float, rounds: int) -> None:
    """Medians of the contestants, each under its backend's thread policy.

    Contestants run in blocks (one untimed call, then timed repeats), the blocks alternating over
    a few rounds: interleaving single calls would instead measure the two thread pools fighting
    (see `bench_threads.py`), which Nima's thread policy avoids in real use.
    """
    contestants: dict[str, Fn] = {"numba": case.numba, "reference": case.reference}
    blas_threads: dict[str, int | None] = {"numba": 1, "reference": None}
    if case.plain is not None:
        contestants["plain"], blas_threads["plain"] = case.plain, None
    if case.flops:
        contestants["reference_1_thread"], blas_threads["reference_1_thread"] = case.reference, 1
    case.times = timing.race(
        contestants, budget_s, rounds,
        context=lambda name: threadpool_limits(limits=blas_threads[name], user_api="blas"),
    )


def row(case: Case) -> dict[str, object]:
    t = case.times
    out: dict[str, object] = {
        "kernel": case.name,
        "shape": case.shape,
        "numba_ms": 1e3 * t["numba"],
        "reference_ms": 1e3 * t["reference"],
        "speedup_vs_reference": t["reference"] / t["numba"],
    }
    if "plain" in t:
        out["plain_ms"] = 1e3 * t["plain"]
        out["speedup_vs_plain"] = t["plain"] / t["numba"]
    if case.flops:
        out["numba_gflops"] = case.flops / t["numba"] / 1e9
        out["numpy_gflops"] = case.flops / t["reference"] / 1e9
        out["numpy_1_thread_gflops"] = case.flops / t["reference_1_thread"] / 1e9
        out["speedup_vs_numpy_1_thread"] = t["reference_1_thread"] / t["numba"]
    return out


def to_markdown(rows: list[dict[str, object]], header: str) -> str:
    lines = [
        header,
        "",
        "| kernel | shape | numba ms | reference ms | plain NumPy ms | speedup vs reference "
        "| speedup vs plain | GFLOP/s numba / NumPy (1 thread) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        plain = f"{r['plain_ms']:.3f}" if "plain_ms" in r else "—"
        vs_plain = f"{r['speedup_vs_plain']:.2f}x" if "speedup_vs_plain" in r else "—"
        gflops = (
            f"{r['numba_gflops']:.0f} / {r['numpy_gflops']:.0f} ({r['numpy_1_thread_gflops']:.0f})"
            if "numba_gflops" in r
            else "—"
        )
        lines.append(
            f"| {r['kernel']} | {r['shape']} | {r['numba_ms']:.3f} | {r['reference_ms']:.3f} "
            f"| {plain} | {r['speedup_vs_reference']:.2f}x | {vs_plain} | {gflops} |"
        )
    return "\n".join(lines) + "\n"


def plot(rows: list[dict[str, object]], path: Path) -> None:
    labels = [f"{r['kernel']}\n{r['shape']}" for r in rows]
    vs_ref = [r["speedup_vs_reference"] for r in rows]
    vs_plain = [r.get("speedup_vs_plain", np.nan) for r in rows]
    pos = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(12, 5.5))
    ax.bar(pos - 0.2, vs_ref, 0.4, label="vs NumPy reference")
    ax.bar(pos + 0.2, vs_plain, 0.4, label="vs plain NumPy")
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_yscale("log")
    ax.set_ylabel("speedup of the numba kernel (x, log scale)")
    ax.set_xticks(pos, labels, rotation=60, ha="right", fontsize=8)
    ax.set_title("Nima kernels: numba vs NumPy (float32, medians)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def machine() -> str:
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")),
        platform.processor(),
    )
    load = os.getloadavg()[0]
    return (
        f"{cpu}, {os.cpu_count()} cores; numpy {np.__version__}, numba {numba.__version__}; "
        f"load average at start {load:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--only", metavar="NAME", help="race only kernels whose name contains NAME "
                        "(writes no result files)")
    args = parser.parse_args()
    budget, rounds, settle = (1.0, 2, 0.5) if args.quick else (8.0, 4, 2.0)
    header = f"Medians; {machine()}."
    print(header)
    rng = np.random.default_rng(0)
    factories = [
        lambda: softmax_cases((48, 64, 64), rng),
        lambda: [cross_entropy_case(768, 65, rng)],
        *(lambda n=n: [matmul_case(1, n, n, n, rng)] for n in (64, 128, 256, 512)),
        lambda: [matmul_case(48, 64, 32, 64, rng)],
        lambda: softmax_cases((768, 50257), rng),
        lambda: [cross_entropy_case(768, 50257, rng)],
    ]
    rows = []
    for make_cases in factories:
        cases = [c for c in make_cases() if args.only is None or args.only in c.name]
        if not cases:
            continue
        # Inputs are built just in time and freed after.
        # Freeing hundreds of MB keeps a core of this VM busy for a moment (the guest hands the
        # pages back to the host); let that pass so it does not land in the first timings.
        time.sleep(settle)
        for case in cases:
            race(case, budget, rounds)
            rows.append(row(case))
            r = rows[-1]
            print(f"{case.name:>22} {case.shape:>26}  numba {r['numba_ms']:8.3f} ms  "
                  f"reference {r['reference_ms']:8.3f} ms", flush=True)
        del cases
    table = to_markdown(rows, header)
    print()
    print(table)
    if args.only is not None:
        return
    RESULTS.mkdir(exist_ok=True)
    atomic_write_text(RESULTS / "kernels.md", table)
    summary = {"machine": header, "rows": rows}
    atomic_write_text(RESULTS / "kernels.json", json.dumps(summary, indent=2))
    plot(rows, RESULTS / "kernels.png")


if __name__ == "__main__":
    main()
