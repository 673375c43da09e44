"""Softmax and cross-entropy through the public API against the plain NumPy formulas.

What a user pays for an op is more than its kernel: the tensor made around the input, the
checks, the recorded node, the engine walking it back and the gradient stored in `.grad`. This
races the whole round trip, forward and backward, at the shapes of attention scores and of
language-model heads:

* `nima`: a leaf made once (`nima.tensor(x, requires_grad=True)`), then per call
  `x.grad = None; nima.softmax(x, -1).backward(dy)` — or
  `F.cross_entropy(x, t).backward()` (mean over the rows);
* `numpy`: the textbook formulas a user would write, forward and backward
  (`e = exp(x - max); y = e / sum(e)`, `dx = y (dy - <dy, y>)`; log-softmax, pick, exp, subtract
  the one-hot, divide by N).

Both run on the calling thread (numba on one thread; these NumPy formulas use no BLAS), timed
by that thread's CPU time (`time.thread_time`) so that other processes on a shared machine
inflate neither; the contestants alternate in blocks. speedup = numpy time / nima time.

Run: `python benchmarks/bench_api.py [--quick]`; writes `benchmarks/results/api.md` and
`api.json`.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
from timing import machine, publish, race_samples

import nima
import nima.functional as F

SOFTMAX_SHAPES = [(48, 64, 64), (64, 256, 256), (768, 4096), (768, 50257)]
CROSS_ENTROPY_SHAPES = [(768, 4096), (768, 50257), (4096, 65)]


def numpy_softmax(x: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """Forward and backward of softmax over the last axis, the plain formulas."""
    e = np.exp(x - x.max(-1, keepdims=True))
    y = e / e.sum(-1, keepdims=True)
    return y * (dy - (dy * y).sum(-1, keepdims=True))


def numpy_cross_entropy(x: np.ndarray, t: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean cross-entropy and its gradient, the plain formulas."""
    rows = np.arange(len(t))
    m = x.max(-1, keepdims=True)
    log_p = x - (m + np.log(np.exp(x - m).sum(-1, keepdims=True)))
    loss = -log_p[rows, t].mean()
    grad = np.exp(log_p)
    grad[rows, t] -= 1
    grad /= len(t)
    return float(loss), grad


def softmax_contestants(shape: tuple[int, ...], rng: np.random.Generator) -> dict[str, Callable]:
    a = rng.standard_normal(shape, dtype=np.float32) * 3
    dy = rng.standard_normal(shape, dtype=np.float32)
    x = nima.tensor(a, requires_grad=True)

    def api() -> None:
        x.grad = None
        nima.softmax(x, -1).backward(dy)

    return {"nima": api, "numpy": lambda: numpy_softmax(a, dy)}


def cross_entropy_contestants(shape: tuple[int, int],
                              rng: np.random.Generator) -> dict[str, Callable]:
    a = rng.standard_normal(shape, dtype=np.float32) * 3
    t = rng.integers(0, shape[1], shape[0])
    x = nima.tensor(a, requires_grad=True)

    def api() -> None:
        x.grad = None
        F.cross_entropy(x, t).backward()

    return {"nima": api, "numpy": lambda: numpy_cross_entropy(a, t)}


def check(shape: tuple[int, ...], rng: np.random.Generator) -> None:
    """The two contestants compute the same thing (else the race means nothing)."""
    a = rng.standard_normal(shape, dtype=np.float32)
    t = rng.integers(0, shape[-1], shape[0])
    x = nima.tensor(a, requires_grad=True)
    F.cross_entropy(x, t).backward()
    np.testing.assert_allclose(x.grad, numpy_cross_entropy(a, t)[1], rtol=1e-4, atol=1e-7)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a shorter race")
    args = parser.parse_args()
    budget, rounds = (1.0, 2) if args.quick else (6.0, 4)
    rng = np.random.default_rng(0)
    check((64, 65), rng)
    cases = [("softmax", s, softmax_contestants) for s in SOFTMAX_SHAPES]
    cases += [("cross_entropy", s, cross_entropy_contestants) for s in CROSS_ENTROPY_SHAPES]
    header = machine()
    rows = []
    with nima.runtime.using(numba_threads=1):
        for op, shape, make in cases:
            samples = race_samples(make(shape, rng), budget, rounds, clock=time.thread_time)
            ms = {name: 1e3 * statistics.median(s) for name, s in samples.items()}
            rows.append({"op": op, "shape": list(shape), "nima_ms": ms["nima"],
                         "numpy_ms": ms["numpy"], "speedup": ms["numpy"] / ms["nima"]})
            print(f"{op:>14} {shape!s:>16}  nima {ms['nima']:8.3f} ms  numpy "
                  f"{ms['numpy']:8.3f} ms  {rows[-1]['speedup']:.2f}x", flush=True)
    lines = [
        "**Softmax and cross-entropy through the public API, forward + backward, against the "
        "plain NumPy formulas** (float32; one thread each, medians of the calling thread's CPU "
        "time; a leaf made once, `.grad` cleared between calls).",
        "",
        f"Machine: {header}.",
        "",
        "| op | shape | nima (ms) | plain NumPy (ms) | speedup |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {r['op']} | {tuple(r['shape'])} | {r['nima_ms']:.3f} | {r['numpy_ms']:.3f} "
              f"| {r['speedup']:.2f}x |" for r in rows]
    publish("api", lines, {"machine": header, "rows": rows})


if __name__ == "__main__":
    main()
