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


def attention_memory(fig: Figure) -> None:
    """Peak memory and time of causal attention against T, from the committed results of
    `benchmarks/bench_attention_memory.py`, with a T^2 line through the last point of each."""
    rows = json.loads(ATTENTION_MEMORY.read_text(encoding="utf-8"))["rows"]
    t = np.array([r["T"] for r in rows], dtype=float)
    memory = np.array([r["peak_bytes"] for r in rows]) / 2**20
    score = np.array([r["score_bytes"] for r in rows]) / 2**20
    ms = np.array([r["ms"] for r in rows])
    left, right = fig.subplots(1, 2)
    left.loglog(t, memory, "o-", label="peak, forward + backward")
    left.loglog(t, score, "s--", label="one T x T matrix per head")
    left.set(title="memory", xlabel="sequence length T", ylabel="MiB")
    right.loglog(t, ms, "o-", color="C2", label="forward + backward")
    right.set(title="time", xlabel="sequence length T", ylabel="ms")
    for ax, y in ((left, memory), (right, ms)):
        ax.loglog(t, y[-1] * (t / t[-1]) ** 2, ":", color="k", lw=1, label=r"$\propto T^2$")
        ax.set_xticks(t, [f"{int(v)}" for v in t])
        ax.legend()


FIGURES: dict[str, tuple[Callable[[Figure], None], tuple[float, float]]] = {
    "positions_sinusoidal": (sinusoidal, (10, 4)),
    "positions_rope": (rope, (7, 4)),
    "positions_alibi": (alibi, (12, 3.4)),
    "optim_schedules": (schedules, (11, 4)),
    "shakespeare_loss": (shakespeare, (12, 4.2)),
    "attention_memory": (attention_memory, (11, 4)),
}
RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"
SHAKESPEARE = RESULTS / "shakespeare.json"
ATTENTION_MEMORY = RESULTS / "attention_memory.json"
_out = Path(tempfile.mkdtemp(prefix="nima-docs-figures-"))


def on_files(files: Files, config: MkDocsConfig) -> Files:
    for name, (draw, size) in FIGURES.items():
        fig = Figure(figsize=size, layout="constrained")
        draw(fig)
        path = _out / f"{name}.png"
        fig.savefig(path, dpi=110)
        files.append(File.generated(config, f"figures/{name}.png", abs_src_path=str(path)))
    return files
