"""Who should own the two cores: OpenBLAS at 1 vs 2 threads next to numba's parallel kernels.

A training step alternates matrix products and fused kernels. If the products go to NumPy
(OpenBLAS) and the kernels to numba, both libraries' thread pools want both cores. This times,
for OpenBLAS limited to 1 and to 2 threads (threadpoolctl, in this one process):

* each op alone: a NumPy matmul, a numba softmax, the numba matmul;
* the pairs a step actually runs: NumPy matmul then numba softmax, numba matmul then numba
  softmax — and the pair's extra cost over its two parts run alone.

Shapes are the baby-GPT ones: the QKV projection (768, 128) @ (128, 384), the attention softmax
(48, 64, 64), and a larger (512, 512) @ (512, 512) product.

Run: `python benchmarks/bench_threads.py [--quick]`; writes `benchmarks/results/threads.md`
and `threads.json`.
"""

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from nima.kernels.gemm import matmul_numba
from nima.kernels.softmax import softmax_forward_numba
from nima.serialization import atomic_write_text

RESULTS = Path(__file__).parent / "results"


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of `fn()` in milliseconds (after one untimed call)."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def measure(repeats: int) -> list[dict[str, object]]:
    rng = np.random.default_rng(0)
    scores = rng.standard_normal((48, 64, 64), dtype=np.float32)  # (B*nh, T, T)
    products = {
        "(768,128)@(128,384)": (
            rng.standard_normal((768, 128), dtype=np.float32),
            rng.standard_normal((128, 384), dtype=np.float32),
        ),
        "(512,512)@(512,512)": (
            rng.standard_normal((512, 512), dtype=np.float32),
            rng.standard_normal((512, 512), dtype=np.float32),
        ),
    }
    rows = []
    for blas_threads in (1, 2):
        with threadpool_limits(limits=blas_threads, user_api="blas"):
            softmax = median_ms(lambda: softmax_forward_numba(scores), repeats)
            for name, (a, b) in products.items():
                np_mm = median_ms(lambda a=a, b=b: a @ b, repeats)
                nb_mm = median_ms(lambda a=a, b=b: matmul_numba(a, b), repeats)

                def np_pair(a=a, b=b) -> None:
                    a @ b
                    softmax_forward_numba(scores)

                def nb_pair(a=a, b=b) -> None:
                    matmul_numba(a, b)
                    softmax_forward_numba(scores)

                np_pair_ms = median_ms(np_pair, repeats)
                nb_pair_ms = median_ms(nb_pair, repeats)
                rows.append({
                    "blas_threads": blas_threads,
                    "product": name,
                    "numpy_matmul_ms": np_mm,
                    "numba_matmul_ms": nb_mm,
                    "numba_softmax_ms": softmax,
                    "numpy_matmul+numba_softmax_ms": np_pair_ms,
                    "numpy_pair_extra_ms": np_pair_ms - np_mm - softmax,
                    "numba_matmul+numba_softmax_ms": nb_pair_ms,
                    "numba_pair_extra_ms": nb_pair_ms - nb_mm - softmax,
                })
    return rows


def to_markdown(rows: list[dict[str, object]]) -> str:
    header = (
        "| OpenBLAS threads | product | NumPy matmul | numba matmul | numba softmax (48,64,64) "
        "| NumPy mm + numba softmax (extra) | numba mm + numba softmax (extra) |\n"
        "|---|---|---|---|---|---|---|\n"
    )
    lines = [
        f"| {r['blas_threads']} | {r['product']} | {r['numpy_matmul_ms']:.3f} "
        f"| {r['numba_matmul_ms']:.3f} | {r['numba_softmax_ms']:.3f} "
        f"| {r['numpy_matmul+numba_softmax_ms']:.3f} ({r['numpy_pair_extra_ms']:+.3f}) "
        f"| {r['numba_matmul+numba_softmax_ms']:.3f} ({r['numba_pair_extra_ms']:+.3f}) |"
        for r in rows
    ]
    return header + "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    args = parser.parse_args()
    rows = measure(repeats=30 if args.quick else 200)
    table = to_markdown(rows)
    print("Medians in ms; (extra) = pair minus its two parts run alone.\n")
    print(table)
    RESULTS.mkdir(exist_ok=True)
    atomic_write_text(RESULTS / "threads.md",
        "Medians in ms; (extra) = pair minus its two parts run alone.\n\n" + table
    )
    atomic_write_text(RESULTS / "threads.json", json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
