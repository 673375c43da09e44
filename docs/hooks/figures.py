"""MkDocs hook: draw the docs' figures at build time from Nima's own code.

No image is committed: each function below computes its picture with the same functions the
model uses (`sinusoidal_table`, `RotaryEmbedding`, `ALiBi`, the schedules of `nima.optim`),
draws it with matplotlib, and the hook adds the PNG to the site under `figures/`. Pages
reference `figures/NAME.png`. `visuals.py` beside it draws the figures that run Nima: a
recorded autograd graph, and what a small model trained at build time attends to and decodes.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files
from visuals import VISUALS  # docs/hooks/ is on sys.path while MkDocs loads a hook

import nima
from nima.generation import generate
from nima.models import GPT, GPTConfig
from nima.nn import Parameter
from nima.nn.positional import ALiBi, RotaryEmbedding, sinusoidal_table
from nima.nn.tree_attention import tree_pattern
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


def shakespeare_modern(fig: Figure) -> None:
    """The modern recipe beside nanoGPT's, from the committed results of
    `benchmarks/bench_shakespeare_modern.py`: validation loss every 250 steps for each seed of
    the two recipes (left, the last 1000 steps enlarged in the middle), and every variant's
    validation loss at step 2000 with seed 1337 (right)."""
    variants = json.loads(SHAKESPEARE_MODERN.read_text(encoding="utf-8"))["variants"]
    recipes = {v["name"]: v["runs"] for v in variants if v["name"] in ("baby", "modern")}
    left, middle, right = fig.subplots(1, 3, width_ratios=[1, 1, 1.2])
    for k, (name, runs) in enumerate(recipes.items()):
        label = {"baby": "nanoGPT's baby GPT", "modern": "modern recipe"}[name]
        for i, run in enumerate(runs):
            steps = sorted(int(s) for s in run["evals"])
            val = [run["evals"][str(s)][1] for s in steps]
            for ax in (left, middle):
                ax.plot(steps, val, marker="o", ms=3, color=f"C{k}", alpha=0.8,
                        label=label if i == 0 else None)
    left.set(title="validation loss, three seeds each", xlabel="step",
             ylabel="cross-entropy (nats)")
    left.legend()
    middle.axhline(1.80, color="k", lw=0.8, ls=":", label="goal 1.80")
    middle.set(title="the last 1000 steps", xlabel="step", xlim=(950, 2050), ylim=(1.7, 2.15))
    middle.legend(fontsize=7)
    names = [v["name"] for v in variants]
    losses = [v["runs"][0]["evals"]["2000"][1] for v in variants]
    colours = ["C0" if n == "baby" else "C1" if n == "modern" else "0.6" for n in names]
    right.barh(names, losses, color=colours)
    right.axvline(1.80, color="k", lw=0.8, ls=":")
    right.invert_yaxis()
    right.set(title="validation loss at step 2000, seed 1337", xlim=(min(losses) - 0.05,
                                                                      max(losses) + 0.02))
    right.tick_params(axis="y", labelsize=7)


LEVEL_COLOURS = ["#4c72b0", "#dd8452", "#55a868", "#c44e52"]


def tree_attention_pattern(fig: Figure) -> None:
    """Left: `tree_pattern` — the level through which each query reads each key. Right: how many
    keys a query reads, tree vs dense, at T = 1024 with b = 16."""
    left, right = fig.subplots(1, 2, width_ratios=[1, 1.3])
    pattern = tree_pattern(64, 4, 2)  # (T, T), -1 above the diagonal
    image = left.imshow(np.where(pattern >= 0, pattern, np.nan), origin="upper",
                        cmap=ListedColormap(LEVEL_COLOURS[:3]), vmin=-0.5, vmax=2.5)
    bar = fig.colorbar(image, ax=left, ticks=[0, 1, 2], shrink=0.8)
    bar.ax.set_yticklabels(["token", "level-1\nsummary", "level-2\nsummary"])
    left.set(title="b = 4, L = 2: where query t reads key s", xlabel="key s", ylabel="query t")
    T, b, levels = 1024, 16, 2
    pattern = tree_pattern(T, b, levels)
    keys = (pattern == 0).sum(1).astype(float)  # tokens of the own leaf chunk
    for level in range(1, levels + 1):
        keys += (pattern == level).sum(1) / b ** level  # one key per whole chunk
    right.plot(np.arange(T), np.arange(1, T + 1), color="k", label="dense: t + 1 keys")
    right.plot(np.arange(T), keys, color=LEVEL_COLOURS[0], lw=0.8,
               label=f"tree, b = {b}, L = {levels}: at most {b + levels * (b - 1)}")
    right.set(yscale="log", title="keys per query, T = 1024", xlabel="query t", ylabel="keys")
    right.legend(loc="lower right")


def pooling_pyramid(fig: Figure) -> None:
    """The pyramid of a 16-token sequence with b = 2, L = 3: every completed chunk's summary,
    and — coloured — the pieces query t = 13 reads in tree attention."""
    b, levels, T, t = 2, 3, 16, 13
    row = tree_pattern(T, b, levels)[t]
    ax = fig.subplots()
    for level in range(levels + 1):
        span = b ** level
        for j in range(T // span):
            cells = row[j * span:(j + 1) * span]
            read = (cells == level).all()
            inside = j * span <= t < (j + 1) * span  # the chunk holding t: never its summary
            future = j * span > t
            colour = LEVEL_COLOURS[level] if read else ("white" if inside or future else
                                                         "#e4e4e4")
            ax.add_patch(Rectangle((j * span + 0.05, level + 0.05), span - 0.1, 0.8,
                                   facecolor=colour, edgecolor="#999999" if future else "k",
                                   ls=":" if future else "-",
                                   hatch="//" if inside and level else None, lw=0.8))
            label = f"$x_{{{j}}}$" if level == 0 else f"$S_{level}[{j}]$"
            ax.text(j * span + span / 2, level + 0.45, label, ha="center", va="center",
                    fontsize=7 if level == 0 else 8, color="w" if read else "k")
    ax.annotate(f"query t = {t}", (t + 0.5, -0.05), (t + 0.5, -0.6), ha="center",
                arrowprops={"arrowstyle": "->"})
    ax.set(xlim=(0, T), ylim=(-0.8, levels + 1), xlabel="position",
           yticks=[l + 0.45 for l in range(levels + 1)],
           title=f"pooling pyramid, b = {b}, L = {levels}, and what query t = {t} reads")
    ax.set_yticklabels(["tokens"] + [f"level {l}" for l in range(1, levels + 1)])


def tree_attention_cost(fig: Figure) -> None:
    """Time and peak memory of a forward + backward, tree vs dense attention, from the committed
    results of `benchmarks/bench_tree_attention.py`."""
    results = json.loads(TREE_RESULTS.read_text(encoding="utf-8"))
    left, right = fig.subplots(1, 2)
    styles = {"default": "-", "1": "--"}
    for threads, rows in results["rows"].items():
        T = [r["T"] for r in rows]
        name = "2 threads" if threads == "default" else "1 thread"
        for layer, colour in (("tree", LEVEL_COLOURS[0]), ("dense", "k")):
            left.plot(T, [r[layer]["ms"] for r in rows], styles[threads], marker="o", ms=3,
                      color=colour, label=f"{layer}, {name}")
    rows = results["rows"]["default"]
    T = np.array([r["T"] for r in rows], dtype=float)
    for layer, colour in (("tree", LEVEL_COLOURS[0]), ("dense", "k")):
        right.plot(T, [r[layer]["mb"] for r in rows], marker="o", ms=3, color=colour,
                   label=layer)
    base = rows[-1]["tree"]["mb"] / (T[-1] * np.log2(T[-1]))
    right.plot(T, base * T * np.log2(T), ":", color=LEVEL_COLOURS[0], label="T log T")
    right.plot(T, rows[-1]["dense"]["mb"] * (T / T[-1]) ** 2, ":", color="k", label="T²")
    left.set(xscale="log", yscale="log", xlabel="T", ylabel="ms", title="forward + backward time")
    right.set(xscale="log", yscale="log", xlabel="T", ylabel="MiB",
              title="peak memory of a forward + backward")
    left.legend(fontsize=7)
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


STATUS_COLOURS = {"root": "k", "beam": LEVEL_COLOURS[0], "end": LEVEL_COLOURS[2],
                  "pruned": "#bbbbbb"}


def search_tree(fig: Figure) -> None:
    """Tree beam search on a small random GPT over the letters a-e: 3 beams, 2 children each,
    5 tokens. Every node a hypothesis (kept, finished at the end token `e`, or pruned); the
    best sequence returned in red."""
    nima.manual_seed(3)
    model = GPT(GPTConfig(vocab_size=5, block_size=16, n_layer=1, n_head=1, n_embd=8)).double()
    rng = np.random.default_rng(3)
    for p in model.parameters():
        p.data[...] = rng.normal(0.0, 0.8, p.data.shape)  # far from uniform predictions
    out = generate(model, np.array([[0, 1]]), 5, strategy="tree_beam", num_beams=3,
                   tree_width=2, eos_token_id=4)
    tree = out.trees[0]
    leaves = iter(range(len(tree)))
    y_leaf: dict[int, float] = {}

    def layout(i: int) -> float:  # leaves one below the other, parents amid their children
        kids = tree.nodes[i].children
        y_leaf[i] = float(next(leaves)) if not kids else float(np.mean([layout(c) for c in kids]))
        return y_leaf[i]

    layout(0)
    best = {0}
    node = next(i for i, n in enumerate(tree.nodes) if n.status in ("beam", "end") and
                tree.path(i) == out.generated(0))
    while node > 0:
        best.add(node)
        node = tree.nodes[node].parent
    ax = fig.subplots()
    for parent, child in tree.edges():
        n = tree.nodes[child]
        on_best = child in best
        ax.plot([tree.nodes[parent].depth, n.depth], [y_leaf[parent], y_leaf[child]],
                color="C3" if on_best else STATUS_COLOURS[n.status], lw=2.5 if on_best else 1,
                zorder=1)
    for i, n in enumerate(tree.nodes):
        ax.scatter(n.depth, y_leaf[i], s=120, color=STATUS_COLOURS[n.status], zorder=2,
                   edgecolor="C3" if i in best else "none", lw=2)
        label = "ab" if i == 0 else "abcde"[n.token]
        ax.text(n.depth + 0.09, y_leaf[i], f"{label}  {n.logprob:.1f}" if i else label,
                va="center", fontsize=7)
    for status, colour in STATUS_COLOURS.items():
        if status != "root":
            ax.scatter([], [], color=colour, label=status)
    ax.plot([], [], color="C3", lw=2.5, label="best returned")
    ax.set(xlabel="generated tokens", yticks=[], xticks=range(6),
           title="tree beam search, 3 beams, at most 2 children a node: every node a "
                 "hypothesis with its summed log-probability")
    ax.legend(loc="upper left", fontsize=8)


def deep_tree_echo_curves(fig: Figure) -> None:
    """Validation loss during training, mean over the seeds (band: lowest to highest), per
    corpus and model, from the committed results of `benchmarks/bench_deep_tree_echo.py`."""
    results = json.loads(DTE_RESULTS.read_text(encoding="utf-8"))["results"]
    corpora = list(dict.fromkeys(r["corpus"] for r in results))
    variants = list(dict.fromkeys(r["variant"] for r in results))
    for ax, corpus in zip(fig.subplots(1, len(corpora)), corpora, strict=True):
        for k, variant in enumerate(variants):
            runs = [r for r in results if r["corpus"] == corpus and r["variant"] == variant]
            steps = sorted(int(s) for s in runs[0]["curve"])
            losses = np.array([[r["curve"][str(s)] for s in steps] for r in runs])
            ax.plot(steps, losses.mean(0), color=f"C{k}", label=variant, lw=1.2)
            ax.fill_between(steps, losses.min(0), losses.max(0), color=f"C{k}", alpha=0.15)
        last = np.array([r["val_loss"] for r in results if r["corpus"] == corpus])
        ax.set(title=corpus, xlabel="step", ylim=(last.min() - 0.15, last.max() + 0.6))
    fig.axes[0].set_ylabel("validation loss (nats)")
    fig.axes[0].legend(fontsize=7)


FIGURES: dict[str, tuple[Callable[[Figure], None], tuple[float, float]]] = {
    "positions_sinusoidal": (sinusoidal, (10, 4)),
    "positions_rope": (rope, (7, 4)),
    "positions_alibi": (alibi, (12, 3.4)),
    "optim_schedules": (schedules, (11, 4)),
    "shakespeare_loss": (shakespeare, (12, 4.2)),
    "shakespeare_modern": (shakespeare_modern, (14, 4.2)),
    "tree_attention_pattern": (tree_attention_pattern, (12, 4.6)),
    "pooling_pyramid": (pooling_pyramid, (11, 3.4)),
    "tree_attention_cost": (tree_attention_cost, (11, 4)),
    "attention_memory": (attention_memory, (11, 4)),
    "allreduce_time": (allreduce_time, (7, 4.5)),
    "pipeline_timeline": (pipeline_timeline, (10, 2.6)),
    "scaling_efficiency": (scaling_efficiency, (12, 4.2)),
    "search_tree": (search_tree, (11, 6)),
    "deep_tree_echo_curves": (deep_tree_echo_curves, (14, 3.8)),
    **VISUALS,
}
RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"
SHAKESPEARE = RESULTS / "shakespeare.json"
SHAKESPEARE_MODERN = RESULTS / "shakespeare_modern.json"
TREE_RESULTS = RESULTS / "tree_attention.json"
ATTENTION_MEMORY = RESULTS / "attention_memory.json"
DTE_RESULTS = RESULTS / "deep_tree_echo.json"
_out = Path(tempfile.mkdtemp(prefix="nima-docs-figures-"))


def on_files(files: Files, config: MkDocsConfig) -> Files:
    for name, (draw, size) in FIGURES.items():
        fig = Figure(figsize=size, layout="constrained")
        draw(fig)
        path = _out / f"{name}.png"
        fig.savefig(path, dpi=110)
        files.append(File.generated(config, f"figures/{name}.png", abs_src_path=str(path)))
    return files
