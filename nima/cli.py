"""The `nima` command: `nima demo` (more subcommands arrive with training and generation).

`python -m nima demo` builds a small graph, runs backward, checks the gradients against central
differences, and races the fused softmax kernel against NumPy — Nima's main job in one minute.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence

import numpy as np


def _median_ms(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def demo(quick: bool = False) -> None:
    """Graph → backward → gradcheck → a kernel race, printed step by step."""
    import nima
    import nima.functional as F
    from nima import kernels

    nima.manual_seed(0)
    print("1. A two-layer MLP and a cross-entropy loss, recorded as a graph")
    x = nima.randn(8, 5, dtype=nima.float64)
    w1 = nima.randn(5, 16, dtype=nima.float64, requires_grad=True)
    w2 = nima.randn(16, 3, dtype=nima.float64, requires_grad=True)
    target = nima.tensor([0, 1, 2, 0, 1, 2, 0, 1])

    def loss_fn(w1: nima.Tensor, w2: nima.Tensor) -> nima.Tensor:
        return F.cross_entropy((x @ w1).gelu() @ w2, target)

    loss = loss_fn(w1, w2)
    print(f"   loss = {loss.item():.6f}   ({loss!r})")

    print("2. backward(): vector-Jacobian products from the loss down to the weights")
    loss.backward()
    print(f"   |dL/dw1| = {np.linalg.norm(w1.grad):.6f}, |dL/dw2| = {np.linalg.norm(w2.grad):.6f}")

    print("3. gradcheck: the same gradients by central differences in float64")
    nima.gradcheck(loss_fn, [w1, w2])
    print("   analytic and numeric gradients agree (atol 1e-5, rtol 1e-3)")

    rows, cols = (96, 50257 // 8) if quick else (768, 50257)
    print(f"4. A kernel race: softmax forward on a ({rows}, {cols}) float32 array")
    logits = np.random.default_rng(0).standard_normal((rows, cols)).astype(np.float32)
    with kernels.backend("numba"):
        fused = kernels.softmax_forward(logits)  # first call compiles (or loads the cache)
        t_numba = _median_ms(lambda: kernels.softmax_forward(logits), 5)
    with kernels.backend("numpy"):
        reference = kernels.softmax_forward(logits)
        t_numpy = _median_ms(lambda: kernels.softmax_forward(logits), 5)
    err = float(np.max(np.abs(fused - reference)))
    print(f"   numpy {t_numpy:.1f} ms, numba {t_numba:.1f} ms: {t_numpy / t_numba:.1f}x faster; "
          f"max |difference| {err:.1e}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="nima", description="Nima: deep learning from scratch.")
    commands = parser.add_subparsers(dest="command", required=True)
    demo_parser = commands.add_parser("demo", help="graph, backward, gradcheck and a kernel race")
    demo_parser.add_argument("--quick", action="store_true", help="a smaller kernel race")
    args = parser.parse_args(argv)
    if args.command == "demo":
        demo(quick=args.quick)


if __name__ == "__main__":
    main()
