"""MkDocs hook: draw the docs' figures at build time from Nima's own code.

No image is committed: each function below computes its picture with the same functions the
model uses (`sinusoidal_table`, `RotaryEmbedding`, `ALiBi`, the schedules of `nima.optim`),
draws it with matplotlib, and the hook adds the PNG to the site under `figures/`. Pages
reference `figures/NAME.png`.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files

import nima
from nima.nn import Parameter
from nima.nn.positional import ALiBi, RotaryEmbedding, sinusoidal_table
from nima.optim import SGD, Constant, Linear, Noam, WarmupCosine


def sinusoidal(fig: Figure) -> None:
    """The table $PE_{p,i}$ for 128 positions and 64 dims, and its dot-product similarity."""
    table = sinusoidal_table(128, 64)  # (positions, dims)
    left, right = fig.subplots(1, 2)
    image = left.imshow(table.T, aspect="auto", cmap="RdBu", origin="lower")
    left.set(title="sinusoidal $PE_{p,i}$", xlabel="position $p$", ylabel="dimension $i$")
    fig.colorbar(image, ax=left)
    right.imshow(table @ table.T, cmap="viridis", origin="lower")
    right.set(title=r"$\langle PE_p, PE_q\rangle$", xlabel="$q$", ylabel="$p$")


def rope(fig: Figure) -> None:
    """RoPE's relative property: the score of a fixed q and k depends only on their offset."""
    nima.manual_seed(0)
    rotary = RotaryEmbedding(head_dim=32, max_len=256)
    q = nima.randn(1, 1, 1, 32, dtype=np.float64)
    k = nima.randn(1, 1, 1, 32, dtype=np.float64)
    ax = fig.subplots()
    for start in (0, 50, 100):
        qs = rotary(q, offset=start + 40).data[0, 0, 0]  # query at position start + 40
        scores = [float(qs @ rotary(k, offset=start + j).data[0, 0, 0]) for j in range(80)]
        offsets = np.arange(80) - 40
        ax.plot(offsets, scores, label=f"query at {start + 40}", lw=1.5 if start else 3, alpha=0.8)
    ax.set(title=r"RoPE: $\langle R_m q, R_n k\rangle$ depends on $n - m$ only",
           xlabel="key position minus query position", ylabel="score")
    ax.legend()


def alibi(fig: Figure) -> None:
    """ALiBi's causal biases for the first four of eight heads."""
    bias = ALiBi(8).bias(16, 16)  # (heads, queries, keys)
    causal = np.tril(np.ones((16, 16), dtype=bool))
    for h, ax in enumerate(fig.subplots(1, 4)):
        ax.imshow(np.where(causal, bias[h], np.nan), cmap="magma", vmin=bias[:4].min(), vmax=0)
        ax.set(title=f"head {h}: slope 1/{2 ** (h + 1)}", xlabel="key", ylabel="query")


def schedules(fig: Figure) -> None:
    """The schedules' `lr_at(t)`: nanoGPT's Shakespeare warmup-cosine, linear, constant, Noam."""
    def curve(make: Callable, lr: float) -> list[float]:
        schedule = make(SGD([Parameter(np.zeros(1))], lr=lr))
        return [schedule.lr_at(t) for t in range(2200)]

    left, right = fig.subplots(1, 2)
    for name, make in (
        ("WarmupCosine", lambda o: WarmupCosine(o, warmup=100, total=2000, min_lr=1e-4)),
        ("Linear", lambda o: Linear(o, total=2000)),
        ("Constant", Constant),
    ):
        left.plot(curve(make, 1e-3), label=name)
    left.set(title="lr 1e-3; warmup 100, total 2000, min_lr 1e-4", xlabel="step",
             ylabel="learning rate")
    left.legend(loc="center left")
    right.plot(curve(lambda o: Noam(o, d_model=128, warmup=100), 1.0), color="C3")
    right.set(title="Noam(d_model=128, warmup=100), lr = 1", xlabel="step")


def shakespeare(fig: Figure) -> None:
    """Train and validation loss of the baby GPT every 250 steps, from the committed results of
    `benchmarks/bench_shakespeare.py`: Nima's runs (solid) and PyTorch's (dashed), a colour per
    seed."""
    results = json.loads(SHAKESPEARE.read_text(encoding="utf-8"))
    left, right = fig.subplots(1, 2)
    for name, style in (("nima", "-"), ("torch", "--")):
        for i, run in enumerate(results.get(name, [])):
            steps = sorted(int(s) for s in run["evals"])
            train, val = zip(*(run["evals"][str(s)] for s in steps), strict=True)
            label = f"{name}, seed {run['seed']}"
            left.plot(steps, val, style, marker="o", ms=3, color=f"C{i}", label=label)
            left.plot(steps, train, style, color=f"C{i}", alpha=0.3)
            right.plot(steps, val, style, marker="o", ms=3, color=f"C{i}", label=label)
    left.set(title="validation loss (markers) and train loss (faint)", xlabel="step",
             ylabel="cross-entropy (nats)")
    right.axhline(1.88, color="k", lw=0.8, ls=":", label="goal 1.88")
    right.set(title="validation loss, last 1000 steps", xlabel="step", xlim=(950, 2050),
              ylim=(1.8, 2.15))
    right.legend(fontsize=7)


def allreduce_time(fig: Figure) -> None:
    """Allreduce time against message size on 2 processes, from the committed results of
    `benchmarks/bench_allreduce.py`: MPI's, the ring's, and the ring's formula with the
    link's fitted latency and bandwidth."""
    result = json.loads((RESULTS / "allreduce.json").read_text(encoding="utf-8"))
    rows = result["rows"]
    size = [r["bytes"] for r in rows]
    ax = fig.subplots()
    ax.plot(size, [r["mpi"] for r in rows], "o-", label="MPI Allreduce (MPICH)")
    ax.plot(size, [r["ring"] for r in rows], "s-", label="ring allreduce (Nima, by hand)")
    ax.plot(size, [r["formula"] for r in rows], "k--",
            label=r"formula $2(N-1)(\alpha + S/NB)$")
    ax.plot(size, [r["formula"] + r["add"] for r in rows], "k:", label="formula + additions")
    ax.set(xscale="log", yscale="log", xlabel="message size S (bytes)", ylabel="seconds",
           title=f"N = {result['nproc']}: $\\alpha$ = {result['alpha_s'] * 1e6:.1f} µs, "
                 f"B = {result['bandwidth_bytes_per_s'] / 1e9:.1f} GB/s")
    ax.legend()


def pipeline_timeline(fig: Figure) -> None:
    """One GPipe step on 2 stages with 4 micro-batches, as `Pipeline.step` recorded it in the
    committed results of `benchmarks/bench_pipeline.py`: forwards, backwards, and the gaps."""
    timeline = json.loads((RESULTS / "pipeline.json").read_text(encoding="utf-8"))["timeline"]
    ax = fig.subplots()
    for stage, spans in enumerate(timeline["stages"]):
        for span in spans:
            color = "C0" if span["kind"] == "forward" else "C1"
            start, width = span["start"] * 1e3, (span["end"] - span["start"]) * 1e3
            ax.broken_barh([(start, width)], (stage - 0.35, 0.7), facecolor=color,
                           edgecolor="white")
            ax.text(start + width / 2, stage, ("F" if span["kind"] == "forward" else "B")
                    + str(span["micro"]), ha="center", va="center", color="white")
    ax.set(yticks=range(len(timeline["stages"])), xlabel="ms since the step began",
           yticklabels=[f"stage {s}" for s in range(len(timeline["stages"]))],
           title=f"GPipe, m = {timeline['m']}: forwards (blue), backwards (orange), "
                 f"bubble (white)")
    ax.invert_yaxis()


def scaling_efficiency(fig: Figure) -> None:
    """Projected data-parallel efficiency (speed-up / N) against the number of processes, from
    the committed results of `benchmarks/project_scaling.py`."""
    result = json.loads((RESULTS / "scaling.json").read_text(encoding="utf-8"))
    weak, strong = fig.subplots(1, 2, sharey=True)
    for i, model in enumerate(result["models"]):
        for network, style in (("InfiniBand 100 Gb/s", "-"), ("Ethernet 10 Gb/s", "--")):
            curve = result["efficiency"][f"{model} | {network}"]
            label = f"{model}, {network.split()[0]}"
            weak.plot(result["processes"], curve["weak"], style, color=f"C{i}", label=label)
            strong.plot(result["processes"], curve["strong"], style, color=f"C{i}")
    weak.set(xscale="log", xlabel="processes N", ylabel="efficiency (speed-up / N)",
             title="weak scaling: 12 rows per process", ylim=(0, 1.05))
    strong.set(xscale="log", xlabel="processes N", title="strong scaling: 512 rows in all")
    weak.legend(fontsize=7)


FIGURES: dict[str, tuple[Callable[[Figure], None], tuple[float, float]]] = {
    "positions_sinusoidal": (sinusoidal, (10, 4)),
    "positions_rope": (rope, (7, 4)),
    "positions_alibi": (alibi, (12, 3.4)),
    "optim_schedules": (schedules, (11, 4)),
    "shakespeare_loss": (shakespeare, (12, 4.2)),
    "allreduce_time": (allreduce_time, (7, 4.5)),
    "pipeline_timeline": (pipeline_timeline, (10, 2.6)),
    "scaling_efficiency": (scaling_efficiency, (12, 4.2)),
}
RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"
SHAKESPEARE = RESULTS / "shakespeare.json"
_out = Path(tempfile.mkdtemp(prefix="nima-docs-figures-"))


def on_files(files: Files, config: MkDocsConfig) -> Files:
    for name, (draw, size) in FIGURES.items():
        fig = Figure(figsize=size, layout="constrained")
        draw(fig)
        path = _out / f"{name}.png"
        fig.savefig(path, dpi=110)
        files.append(File.generated(config, f"figures/{name}.png", abs_src_path=str(path)))
    return files
