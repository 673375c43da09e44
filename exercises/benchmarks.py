r"""Exercises of the Benchmarks page (docs/benchmarks.md)."""

import ast
import json
from collections.abc import Callable
from pathlib import Path

from exercises import close, equal

KERNELS = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "kernels.json"


def gflops(a_shape: tuple[int, ...], b_shape: tuple[int, ...], ms: float) -> float:
    r"""The speed of a matrix product.

    `a_shape` @ `b_shape` is a product of `(M, K)` by `(K, N)` matrices, or a batched one,
    `(batch, M, K)` by `(batch, K, N)`. Each output element costs $K$ multiplies and $K$ adds.
    Return the billions of floating-point operations per second reached if it took `ms`
    milliseconds.
    """
    raise NotImplementedError


def check_gflops(gflops) -> None:
    """Compares with the GFLOP/s `benchmarks/bench_kernels.py` committed for every product of
    `benchmarks/results/kernels.json`, all cores and one thread."""
    for row in json.loads(KERNELS.read_text(encoding="utf-8"))["products"]:
        a, b = (ast.literal_eval(part) for part in row["shape"].split("@"))
        for key in ("numba", "numba_1_thread"):
            close(gflops(a, b, row[f"{key}_ms"]), row[f"{key}_gflops"],
                  f"GFLOP/s of {row['shape']} in {row[f'{key}_ms']:.3f} ms", rtol=1e-9)


def race(f: Callable[[], None], g: Callable[[], None], repeats: int,
         clock: Callable[[], float]) -> float:
    r"""A fair race.

    Time `f` and `g` as the benchmarks do and return the ratio of their times, `f` over `g`:
    call each once, untimed (compilation, page faults, a sleeping thread pool); then time
    `repeats` calls of each with `clock()` (seconds), alternating `f` and `g` so that both see
    the same load; return the ratio of the **medians**.
    """
    raise NotImplementedError


def check_race(race) -> None:
    """Runs your race on two functions that advance a fake clock: each has a slow first call
    (a compile) and, now and then, a stalled one (another process took the core). The ratio
    must be their true 3:1, each must have been called exactly repeats + 1 times, and the
    first call of each must not have been timed (no clock read just before it)."""
    now = [0.0]
    calls = {"f": 0, "g": 0}
    events: list[str] = []

    def clock() -> float:
        events.append("clock")
        return now[0]

    def make(name: str, cost: float) -> Callable[[], None]:
        def run() -> None:
            calls[name] += 1
            events.append(name)
            stalled = calls[name] % 7 == 0  # a scheduler slice lost, now and then
            now[0] += cost * (100 if calls[name] == 1 else 1) + (0.008 if stalled else 0.0)
        return run

    ratio = race(make("f", 0.003), make("g", 0.001), 21, clock)
    equal(calls, {"f": 22, "g": 22}, "the calls made (21 timed + 1 warm-up each)")
    for name in ("f", "g"):
        first = events.index(name)
        if first and events[first - 1] == "clock":
            raise AssertionError(f"the first call of {name} was timed: it should warm up, "
                                 f"untimed")
    close(ratio, 3.0, "the ratio of the medians", rtol=1e-9)
