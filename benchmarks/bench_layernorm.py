"""Race the fused layer-norm and RMSNorm kernels, forward + backward, against their alternatives.

For each op and shape (float32) four contestants compute the output and the gradients for x,
weight (and bias) from the same inputs:

* `fused`: the numba kernels (`nima.kernels.layernorm.*_numba`), forward then backward;
* `reference`: their NumPy references in the same module;
* `op`: `F.layer_norm` / `F.rms_norm` through autograd on the numba backend — the fused kernels
  plus what recording and walking one graph node costs;
* `unfused`: the composition a user would write with Nima ops, through autograd:
  `(x - x.mean(-1)) / (x.var(-1, correction=0) + eps).sqrt() * w + b` (RMSNorm:
  `x / ((x * x).mean(-1) + eps).sqrt() * w`), about ten graph nodes, each a full pass.

Shapes: the baby GPT's activations (12 sequences x 64 tokens = 768 rows, 128 channels) and a
bigger (8192, 768). Contestants run in blocks (one untimed call, then timed repeats), the blocks
alternating over a few rounds so a burst of load elsewhere hits all alike; times are medians.

Run: `python benchmarks/bench_layernorm.py [--quick]`; writes `benchmarks/results/layernorm.md`.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from timing import machine, race

import nima
import nima.functional as F
from nima import kernels
from nima.kernels import layernorm as ln
from nima.serialization import atomic_write_text

RESULTS = Path(__file__).parent / "results"
Fn = Callable[[], object]
EPS = 1e-5


def layer_norm_contestants(x: np.ndarray, w: np.ndarray, b: np.ndarray,
                           dy: np.ndarray) -> dict[str, Fn]:
    def kernel_pair(forward: Callable, backward: Callable) -> Fn:
        def step() -> object:
            _, mean, rstd = forward(x, w, b, EPS)
            return backward(dy, x, w, mean, rstd)
        return step

    def through_autograd(fn: Callable) -> Fn:
        def step() -> object:
            xt, wt, bt = (nima.Tensor(a, requires_grad=True) for a in (x, w, b))
            fn(xt, wt, bt).backward(dy)
            return xt.grad, wt.grad, bt.grad
        return step

    def unfused(xt: nima.Tensor, wt: nima.Tensor, bt: nima.Tensor) -> nima.Tensor:
        mu = xt.mean(-1, keepdim=True)
        return (xt - mu) / (xt.var(-1, keepdim=True, correction=0) + EPS).sqrt() * wt + bt

    return {
        "fused": kernel_pair(ln.layer_norm_forward_numba, ln.layer_norm_backward_numba),
        "reference": kernel_pair(ln.layer_norm_forward_numpy, ln.layer_norm_backward_numpy),
        "op": through_autograd(lambda xt, wt, bt: F.layer_norm(xt, x.shape[-1], wt, bt, EPS)),
        "unfused": through_autograd(unfused),
    }


def rms_norm_contestants(x: np.ndarray, w: np.ndarray, dy: np.ndarray) -> dict[str, Fn]:
    def kernel_pair(forward: Callable, backward: Callable) -> Fn:
        def step() -> object:
            _, rstd = forward(x, w, EPS)
            return backward(dy, x, w, rstd)
        return step

    def through_autograd(fn: Callable) -> Fn:
        def step() -> object:
            xt, wt = nima.Tensor(x, requires_grad=True), nima.Tensor(w, requires_grad=True)
            fn(xt, wt).backward(dy)
            return xt.grad, wt.grad
        return step

    return {
        "fused": kernel_pair(ln.rms_norm_forward_numba, ln.rms_norm_backward_numba),
        "reference": kernel_pair(ln.rms_norm_forward_numpy, ln.rms_norm_backward_numpy),
        "op": through_autograd(lambda xt, wt: F.rms_norm(xt, x.shape[-1], wt, EPS)),
        "unfused": through_autograd(
            lambda xt, wt: xt / ((xt * xt).mean(-1, keepdim=True) + EPS).sqrt() * wt),
    }


def to_markdown(rows: list[dict[str, object]], header: str) -> str:
    lines = [
        header,
        "",
        "| op (fwd + bwd, float32) | shape | fused ms | reference ms | op ms | unfused ms "
        "| reference / fused | op / fused | unfused / fused |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        t = r["ms"]
        lines.append(
            f"| {r['op']} | {r['shape']} | {t['fused']:.3f} | {t['reference']:.3f} "
            f"| {t['op']:.3f} | {t['unfused']:.3f} | {t['reference'] / t['fused']:.2f}x "
            f"| {t['op'] / t['fused']:.2f}x | {t['unfused'] / t['fused']:.2f}x |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    args = parser.parse_args()
    budget, rounds = (1.0, 2) if args.quick else (6.0, 4)
    header = f"Medians; {machine()}."
    print(header)
    rng = np.random.default_rng(0)
    kernels.use("numba")
    rows = []
    for shape in [(768, 128), (8192, 768)]:
        x = (rng.standard_normal(shape, dtype=np.float32) * 2 + 1).astype(np.float32)
        dy = rng.standard_normal(shape, dtype=np.float32)
        w = rng.uniform(0.5, 1.5, shape[-1]).astype(np.float32)
        b = rng.standard_normal(shape[-1], dtype=np.float32)
        for op, contestants in [("layer_norm", layer_norm_contestants(x, w, b, dy)),
                                ("rms_norm", rms_norm_contestants(x, w, dy))]:
            ms = {k: 1e3 * v for k, v in race(contestants, budget, rounds).items()}
            rows.append({"op": op, "shape": str(shape), "ms": ms})
            print(f"{op:>10} {shape!s:>12}  " + "  ".join(f"{k} {v:8.3f} ms"
                                                         for k, v in ms.items()), flush=True)
        del x, dy
        time.sleep(0.5)  # let the freed pages go back before the next timings
    header += f" Load average at the end {os.getloadavg()[0]:.2f}."
    table = to_markdown(rows, header)
    print()
    print(table)
    RESULTS.mkdir(exist_ok=True)
    atomic_write_text(RESULTS / "layernorm.md", table)


if __name__ == "__main__":
    main()
