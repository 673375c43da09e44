r"""Project data-parallel scaling to 8, 64 and 512 processes from the measured costs.

Reads the committed results of `bench_distributed.py` (forward + backward time per row and
the clip + AdamW time of each model, from the 2-process run: one process per core) and of
`bench_allreduce.py` (this machine's link), and models one step of $N$ processes as

$$T(N) = t_\text{compute}(b) + t_\text{update} + 2(N-1)\Bigl(\alpha + \frac{S}{N B}\Bigr),$$

the gradient allreduce of $S$ bytes by the ring, not overlapped with the backward (as in
`DataParallel`). Two ways to add processes:

* **weak scaling**: every process keeps $b$ = 12 rows, the global batch grows as $12 N$;
  the speed-up is $N\,T(1)/T(N)$;
* **strong scaling**: the global batch stays at 512 rows, each process gets $512/N$; compute
  per process shrinks as $1/N$ while the allreduce does not.

The networks are assumptions, not measurements: 100 Gb/s InfiniBand ($B$ = 12.5 GB/s,
$\alpha$ = 2 µs) and 10 Gb/s Ethernet ($B$ = 1.25 GB/s, $\alpha$ = 30 µs), beside this
machine's own shared-memory link as measured. GPT-2 small (124M parameters) is extrapolated
from the 10x model's measured FLOP rate ($6 \times$ parameters $\times$ tokens per step), not
measured. Compute is taken as linear in rows, which flatters small per-process batches.

Run: `python benchmarks/project_scaling.py`; writes `benchmarks/results/scaling.md` and
`scaling.json`.
"""

from __future__ import annotations

import json

from timing import RESULTS, publish

PROCESSES = (1, 8, 64, 512)
CURVE = [2**k for k in range(10)]  # 1 .. 512, for the docs' figure
WEAK_ROWS, STRONG_ROWS = 12, 512
GPT2_SMALL = 124_439_808  # parameters (GPTConfig.preset("small"))


def ring_time(S: float, N: int, alpha: float, bandwidth: float) -> float:
    """$2(N-1)(\\alpha + S/(NB))$ seconds for $S$ bytes over $N$ processes."""
    return 2 * (N - 1) * (alpha + S / (N * bandwidth))


def step_time(model: dict, rows: float, N: int, net: dict) -> float:
    return (model["row_s"] * rows + model["update_s"]
            + ring_time(model["bytes"], N, net["alpha"], net["bandwidth"]))


def main() -> None:
    dist = json.loads((RESULTS / "distributed.json").read_text())
    link = json.loads((RESULTS / "allreduce.json").read_text())
    T = dist["T"]
    models = {}
    for name, meta in dist["models"].items():
        m = dist["medians_s"][f"{name} | 2 procs x 1 thread"]
        rows = dist["global_rows"] // 2
        models[name] = {"params": meta["parameters"], "bytes": meta["gradient_bytes"],
                        "row_s": m["compute"] / rows, "update_s": m["update"]}
    big = models["10x"]
    flop_rate = 6 * big["params"] * T / big["row_s"]  # FLOP/s of the measured forward + backward
    models["GPT-2 small (extrapolated)"] = {
        "params": GPT2_SMALL, "bytes": 4 * GPT2_SMALL, "row_s": 6 * GPT2_SMALL * T / flop_rate,
        "update_s": big["update_s"] * GPT2_SMALL / big["params"]}
    networks = {
        "InfiniBand 100 Gb/s": {"alpha": 2e-6, "bandwidth": 12.5e9},
        "Ethernet 10 Gb/s": {"alpha": 30e-6, "bandwidth": 1.25e9},
        "this machine (measured)": {"alpha": link["alpha_s"],
                                    "bandwidth": link["bandwidth_bytes_per_s"]},
    }

    def weak(model: dict, N: int, net: dict) -> float:
        return N * step_time(model, WEAK_ROWS, 1, net) / step_time(model, WEAK_ROWS, N, net)

    def strong(model: dict, N: int, net: dict) -> float:
        return step_time(model, STRONG_ROWS, 1, net) / step_time(model, STRONG_ROWS / N, N, net)

    lines = [
        "**Data-parallel scaling, projected** from the measured compute "
        f"(`bench_distributed.py`: {flop_rate / 1e9:.1f} GFLOP/s per process on the 10x "
        "model) and the ring's formula; speed-up over one process (ideal: N).",
        "",
        "| model | gradients | network | N | weak: speed-up (12 rows each) | "
        "strong: speed-up (512 rows in all) | strong: allreduce / step | "
        "strong: clip + AdamW / step |",
        "|---|---|---|---|---|---|---|---|",
    ]
    curves = {}
    for name, model in models.items():
        for net_name, net in networks.items():
            curves[f"{name} | {net_name}"] = {
                "weak": [weak(model, N, net) / N for N in CURVE],
                "strong": [strong(model, N, net) / N for N in CURVE]}
            for N in PROCESSES[1:]:
                comm = ring_time(model["bytes"], N, net["alpha"], net["bandwidth"])
                step = step_time(model, STRONG_ROWS / N, N, net)
                lines.append(f"| {name} | {model['bytes'] / 2**20:.0f} MB | {net_name} | {N} | "
                             f"{weak(model, N, net):.1f} | {strong(model, N, net):.1f} | "
                             f"{comm / step:.0%} | {model['update_s'] / step:.0%} |")
    lines += ["", f"Crossover of strong scaling, $N_c = G\\,t_\\text{{row}} B / 2S$ (compute of "
              f"{STRONG_ROWS} rows / N = the allreduce's bandwidth term):", ""]
    for name, model in models.items():
        compute = STRONG_ROWS * model["row_s"]
        crossings = ", ".join(f"{net_name} {compute * net['bandwidth'] / (2 * model['bytes']):,.0f}"
                              for net_name, net in networks.items())
        lines.append(f"- {name}: {crossings}")
    lines += ["", "Per-row compute and update times used:", ""]
    for name, model in models.items():
        lines.append(f"- {name}: {model['params'] / 1e6:.2f}M parameters, forward + backward "
                     f"{model['row_s'] * 1e3:.2f} ms per row of {T} tokens, clip + AdamW "
                     f"{model['update_s'] * 1e3:.1f} ms")
    publish("scaling", lines, {"processes": CURVE, "networks": networks, "models": models,
                               "efficiency": curves, "flop_rate": flop_rate})


if __name__ == "__main__":
    main()
