r"""Exercises of the Scaling projection page (docs/scaling.md)."""

import json
from pathlib import Path

from exercises import close

SCALING = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "scaling.json"


def strong_efficiency(N: int, rows: int, row_s: float, update_s: float, grad_bytes: float,
                      alpha: float, bandwidth: float) -> float:
    r"""The efficiency of strong scaling.

    A global batch of `rows` rows is split over $N$ processes. A step takes
    $T(N) = \frac{\text{rows}}{N} t_\text{row} + t_u + 2(N-1)(\alpha + \frac{S}{NB})$ with
    $t_\text{row}$ = `row_s`, $t_u$ = `update_s`, $S$ = `grad_bytes`, $B$ = `bandwidth`.
    Return the efficiency, speed-up over one process divided by $N$: $T(1) / (N\,T(N))$.
    """
    raise NotImplementedError


def check_strong_efficiency(strong_efficiency) -> None:
    """Compares with the efficiencies `benchmarks/project_scaling.py` committed in
    `benchmarks/results/scaling.json` (512 rows in all), for every model, network and N."""
    result = json.loads(SCALING.read_text(encoding="utf-8"))
    for name, model in result["models"].items():
        for net_name, net in result["networks"].items():
            curve = result["efficiency"][f"{name} | {net_name}"]["strong"]
            for N, expected in zip(result["processes"], curve, strict=True):
                got = strong_efficiency(N, 512, model["row_s"], model["update_s"], model["bytes"],
                                        net["alpha"], net["bandwidth"])
                close(got, expected, f"{name}, {net_name}, N = {N}", rtol=1e-9)


def critical_processes(G: int, T: int, bandwidth: float, flops: float) -> float:
    r"""Where strong scaling stops paying.

    A row of $T$ tokens costs about $6PT$ floating-point operations at `flops` per second, and
    the gradients are $S = 4P$ bytes. Return $N_c$, the number of processes at which the
    compute of a global batch of $G$ rows, split $N$ ways, equals the allreduce's bandwidth term
    for large $N$, $2S/B$ — as a formula in which the model size $P$ has cancelled.
    """
    raise NotImplementedError


def check_critical_processes(critical_processes) -> None:
    """Solves $G \\cdot 6PT/(F N) = 2 \\cdot 4P/B$ for N with P set to several model sizes, for a
    CPU core and for a GPU on InfiniBand, and compares."""
    for G, T, B, F in [(512, 64, 12.5e9, 25e9), (512, 64, 12.5e9, 1e14),
                       (2048, 1024, 1.25e9, 5e13)]:
        for P in (1e6, 1.24e8):
            expected = G * 6 * P * T / F / (2 * 4 * P / B)
            close(critical_processes(G, T, B, F), expected, f"N_c for G={G}, T={T}, F={F:.0e}",
                  rtol=1e-9)
