"""Race each numba kernel against its NumPy reference and against NumPy's plain composition.

For every case three contestants run on the same inputs:

* `numba`: the kernel Nima uses (`nima.kernels.*_numba`);
* `reference`: its NumPy reference in the same module (same signature, handles masked rows);
* `plain`: the shortest NumPy a user would write (e.g. `e = np.exp(x - x.max(-1, keepdims=True));
  e / e.sum(-1, keepdims=True)`), where that differs from the reference.

speedup = reference_time / numba_time (and plain_time / numba_time). Each backend runs under
Nima's thread policy (`nima.kernels.threads`): numba kernels with OpenBLAS limited to one thread,
NumPy with OpenBLAS's default. Calls are interleaved (numba, reference, plain, numba, ...) so a
burst of load from elsewhere on the machine hits all contestants alike; times are medians.

Matrix products are raced at the shapes of the baby GPT (768 rows, 128 wide), of a 10M-parameter
GPT (2048 rows, 384 wide) and at 1024³, forward and with the transposed operands of the backward
pass, against NumPy/OpenBLAS and — when `import torch` works (optional; `pip install -e
".[compare]"`) — PyTorch's matmul, each on all cores and on one thread; they report GFLOP/s and
the speed of the numba kernel relative to PyTorch's (torch time / numba time).

Run: `python benchmarks/bench_kernels.py [--quick]`; writes `benchmarks/results/kernels.md`,
`kernels.json` and `kernels.png`. `--only softmax` (a substring of the kernel name, e.g. `matmul`,
`softmax bwd`) races just the matching cases and writes no files.
"""

import argparse
import contextlib
import json
import os
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import matplotlib
import numpy as np
import timing
from threadpoolctl import threadpool_limits

import nima
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


# (label, batch, M, K, N, layout): "A^T" / "B^T" is a transposed view, as the backward passes
PRODUCTS = [
    ("baby GPT qkv", 1, 768, 128, 384, ""),
    ("baby GPT attn proj", 1, 768, 128, 128, ""),
    ("baby GPT fc", 1, 768, 128, 512, ""),
    ("baby GPT fc proj", 1, 768, 512, 128, ""),
    ("baby GPT head", 1, 768, 128, 65, ""),
    ("baby GPT qkv dW", 1, 128, 768, 384, "A^T"),
    ("baby GPT qkv dX", 1, 768, 384, 128, "B^T"),
    ("baby GPT fc dW", 1, 128, 768, 512, "A^T"),
    ("baby GPT fc proj dX", 1, 768, 128, 512, "B^T"),
    ("baby GPT attention QK^T", 48, 64, 32, 64, ""),
    ("baby GPT attention PV", 48, 64, 64, 32, ""),
    ("baby GPT attention dK", 48, 64, 64, 32, "A^T"),
    ("10M qkv", 1, 2048, 384, 1152, ""),
    ("10M fc", 1, 2048, 384, 1536, ""),
    ("10M fc proj", 1, 2048, 1536, 384, ""),
    ("10M qkv dW", 1, 384, 2048, 1152, "A^T"),
    ("10M fc dW", 1, 384, 2048, 1536, "A^T"),
    ("10M fc proj dX", 1, 2048, 384, 1536, "B^T"),
    ("10M attention QK^T", 48, 256, 64, 256, ""),
    ("square", 1, 1024, 1024, 1024, ""),
]


@dataclass
class Product:
    label: str
    shape: str
    flops: float
    contestants: dict[str, Fn]
    times: dict[str, float] = field(default_factory=dict)  # medians
    best: dict[str, float] = field(default_factory=dict)  # fastest call, all-core contestants
    name: str = "matmul f32"


def operands(batch: int, m: int, k: int, n: int, layout: str,
             rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """float32 A (B, M, K) and B (B, K, N), 2-D when batch is 1, one a transposed view if asked."""
    a = rng.standard_normal((batch, k, m) if layout == "A^T" else (batch, m, k), dtype=np.float32)
    b = rng.standard_normal((batch, n, k) if layout == "B^T" else (batch, k, n), dtype=np.float32)
    a = a.transpose(0, 2, 1) if layout == "A^T" else a
    b = b.transpose(0, 2, 1) if layout == "B^T" else b
    return (a[0], b[0]) if batch == 1 else (a, b)


def torch_or_none() -> ModuleType | None:  # pragma: no cover - optional
    try:
        import torch
    except ImportError:
        return None
    return torch


def numba_threads(count: int | None) -> contextlib.AbstractContextManager:
    """Nima's policy (None: small work on the calling thread, large on numba's pool), or numba
    pinned to `count` threads for the block."""
    return nima.runtime.using(numba_threads=count)


@contextlib.contextmanager
def torch_threads(torch: ModuleType, count: int) -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def product(spec: tuple, rng: np.random.Generator, torch: ModuleType | None) -> Product:
    """The contestants for one product: each library on all cores and on one thread."""
    label, batch, m, k, n, layout = spec
    a, b = operands(batch, m, k, n, layout, rng)
    calls: dict[str, Fn] = {"numba": lambda: gemm.matmul_numba(a, b),
                            "numpy": lambda: gemm.matmul_numpy(a, b)}
    if torch is not None:
        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        calls["torch"] = lambda: ta @ tb
    contestants = {**calls, **{f"{name}_1_thread": fn for name, fn in calls.items()}}
    shape = f"({m},{k})@({k},{n})" if batch == 1 else f"({batch},{m},{k})@({batch},{k},{n})"
    return Product(label + (f" [{layout}]" if layout else ""), shape, 2.0 * batch * m * n * k,
                   contestants)


def race_product(p: Product, budget_s: float, rounds: int, torch: ModuleType | None) -> None:
    """Medians of every contestant: numba under Nima's thread policy or pinned to one thread,
    NumPy with OpenBLAS's default or one thread, PyTorch with a thread per core or one.

    All-core contestants are timed by the wall clock; one-thread ones by the CPU time of the
    calling thread (`time.thread_time`), so that on a shared machine the one-thread race
    compares the kernels themselves.
    """
    cores = os.cpu_count() or 1

    def context(name: str) -> contextlib.AbstractContextManager:
        one = name.endswith("_1_thread")
        if name.startswith("numba"):
            return numba_threads(1 if one else None)
        if name.startswith("numpy"):
            return threadpool_limits(limits=1 if one else None, user_api="blas")
        return torch_threads(torch, 1 if one else cores)

    for one, clock in ((False, time.perf_counter), (True, time.thread_time)):
        group = {name: fn for name, fn in p.contestants.items()
                 if name.endswith("_1_thread") == one}
        samples = timing.race_samples(group, budget_s / 2, rounds, context=context, clock=clock)
        p.times.update({name: statistics.median(s) for name, s in samples.items()})
        if not one:  # a call that no other process interrupted: what the cores can do
            p.best.update({name: min(s) for name, s in samples.items()})


def product_row(p: Product) -> dict[str, object]:
    t = p.times
    out: dict[str, object] = {"kernel": p.name, "product": p.label, "shape": p.shape}
    for name, seconds in t.items():
        out[f"{name}_ms"] = 1e3 * seconds
        out[f"{name}_gflops"] = p.flops / seconds / 1e9
    for name, seconds in p.best.items():
        out[f"{name}_best_gflops"] = p.flops / seconds / 1e9
    for suffix in ("", "_1_thread"):
        if "torch" + suffix in t:
            out["numba_vs_torch" + suffix] = t["torch" + suffix] / t["numba" + suffix]
        out["numba_vs_numpy" + suffix] = t["numpy" + suffix] / t["numba" + suffix]
    if "torch" in p.best:
        out["numba_vs_torch_best"] = p.best["torch"] / p.best["numba"]
    return out


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
    return out


def to_markdown(rows: list[dict[str, object]], products: list[dict[str, object]],
                header: str) -> str:
    lines = [header, ""]
    if rows:
        lines += [
            "| kernel | shape | numba ms | reference ms | plain NumPy ms | speedup vs reference "
            "| speedup vs plain |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            plain = f"{r['plain_ms']:.3f}" if "plain_ms" in r else "—"
            vs_plain = f"{r['speedup_vs_plain']:.2f}x" if "speedup_vs_plain" in r else "—"
            lines.append(
                f"| {r['kernel']} | {r['shape']} | {r['numba_ms']:.3f} | {r['reference_ms']:.3f} "
                f"| {plain} | {r['speedup_vs_reference']:.2f}x | {vs_plain} |"
            )
        lines.append("")
    if products:
        lines += [
            "Matrix products, float32: GFLOP/s of numba / PyTorch / NumPy (OpenBLAS) and the speed "
            "of numba relative to PyTorch (torch time / numba time; above 1: numba is faster). "
            "All cores: medians of the wall time, and the ratio of the fastest calls (those no "
            "other process interrupted); one thread: medians of the calling thread's CPU time.",
            "",
            "| product | shape | all cores: GFLOP/s | vs torch | vs torch, fastest calls "
            "| one thread: GFLOP/s | vs torch |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in products:
            cells = []
            for suffix in ("", "_1_thread"):
                cells.append(" / ".join(
                    f"{r[f'{name}{suffix}_gflops']:.0f}" if f"{name}{suffix}_gflops" in r else "—"
                    for name in ("numba", "torch", "numpy")))
                for key in ("numba_vs_torch" + suffix,) + (("numba_vs_torch_best",)
                                                           if not suffix else ()):
                    cells.append(f"{r[key]:.2f}x" if key in r else "—")
            lines.append(f"| {r['product']} | {r['shape']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict[str, object]], products: list[dict[str, object]], path: Path) -> None:
    """Top: fused kernels vs NumPy; bottom: matrix products vs PyTorch (or NumPy without it)."""
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(13, 10))
    pos = np.arange(len(rows))
    top.bar(pos - 0.2, [r["speedup_vs_reference"] for r in rows], 0.4, label="vs NumPy reference")
    top.bar(pos + 0.2, [r.get("speedup_vs_plain", np.nan) for r in rows], 0.4,
            label="vs plain NumPy")
    top.set_yscale("log")
    top.set_ylabel("speedup of the numba kernel (x, log)")
    top.set_xticks(pos, [f"{r['kernel']}\n{r['shape']}" for r in rows], rotation=60,
                   ha="right", fontsize=8)
    top.set_title("Nima kernels: numba vs NumPy (float32, medians)")
    rival = "torch" if any("numba_vs_torch" in r for r in products) else "numpy"
    pos = np.arange(len(products))
    bars = (("_best", "all cores, fastest calls") if rival == "torch" else ("", "all cores"),
            ("_1_thread", "one thread, CPU time"))
    for shift, (suffix, label) in zip((-0.2, 0.2), bars, strict=True):
        ratios = [r.get(f"numba_vs_{rival}{suffix}", np.nan) for r in products]
        bottom.bar(pos + shift, ratios, 0.4, label=label)
    bottom.set_ylabel(f"{rival} time / numba time")
    bottom.set_xticks(pos, [r["product"] for r in products], rotation=60, ha="right", fontsize=8)
    bottom.set_title(f"matrix products: numba vs {'PyTorch' if rival == 'torch' else 'NumPy'}")
    for ax in (top, bottom):
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--only", metavar="NAME", help="race only kernels whose name contains NAME "
                        "(writes no result files)")
    args = parser.parse_args()
    budget, rounds, settle = (1.0, 2, 0.5) if args.quick else (8.0, 4, 2.0)
    header = f"Medians; {timing.machine()}."
    print(header)
    rng = np.random.default_rng(0)
    factories = [
        lambda: softmax_cases((48, 64, 64), rng),
        lambda: [cross_entropy_case(768, 65, rng)],
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
    products = []
    if args.only is None or args.only in Product.name:
        torch = torch_or_none()
        for spec in PRODUCTS:
            p = product(spec, rng, torch)
            race_product(p, budget, rounds, torch)
            products.append(product_row(p))
            r = products[-1]
            vs = f"  vs torch {r['numba_vs_torch']:.2f}x" if "numba_vs_torch" in r else ""
            print(f"{p.label:>32} {p.shape:>24}  numba {r['numba_ms']:8.3f} ms{vs}", flush=True)
    table = to_markdown(rows, products, header)
    print()
    print(table)
    if args.only is not None:
        return
    RESULTS.mkdir(exist_ok=True)
    atomic_write_text(RESULTS / "kernels.md", table)
    summary = {"machine": header, "rows": rows, "products": products}
    atomic_write_text(RESULTS / "kernels.json", json.dumps(summary, indent=2))
    plot(rows, products, RESULTS / "kernels.png")


if __name__ == "__main__":
    main()
