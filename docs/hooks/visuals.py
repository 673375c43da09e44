r"""Figures drawn from Nima running: a recorded autograd graph, and what a small GPT trained
at build time attends to and how it decodes. `figures.py` draws them with the others.

**The model.** When the README's 2000-step run of the baby GPT exists (`runs/shakespeare_char/`
at the repository root, as `nima train configs/shakespeare_char.yaml` or tutorial 07 leaves it),
the attention, beam-search and entropy figures use it. Otherwise — in CI, on a fresh clone — a
small GPT (2 blocks of 4 heads, 64 wide) is trained here on tiny Shakespeare for a few hundred
steps, seconds on a quiet machine; the hybrid-attention figure always trains its own. Trained
weights are cached in `$XDG_CACHE_HOME/nima-docs/models/` under a hash of the package's source,
the corpus and the recipe, so a rebuild trains again only when one of them changed.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import os
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.colors import PowerNorm
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch

import nima
from nima.autograd import Context
from nima.data import CharTokenizer
from nima.generation import generate
from nima.models import GPT, GPTConfig
from nima.nn import HybridAttention
from nima.optim import AdamW, WarmupCosine, clip_grad_norm_
from nima.optim.adam import param_groups_for_decay

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "data" / "tinyshakespeare.txt"
README_RUN = ROOT / "runs" / "shakespeare_char"
LINE = "ROMEO:\nBut soft, what light"  # every character is in the corpus
RECIPE = dict(block_size=64, n_layer=2, n_head=4, n_embd=64, bias=False)
STEPS, BATCH, SEED = 400, 16, 0

OP_COLOUR, LEAF_COLOUR, VALUE_COLOUR = "#f6c89f", "#a8d5a2", "#dde6f3"


def _graph(root: nima.Tensor) -> tuple[dict[Hashable, tuple], list[tuple[Hashable, Hashable]]]:
    """The recorded graph below `root`: nodes `key -> (kind, object)` and edges `(from, to)` in
    the forward direction. Kind "op" is a `Context` (key: its id), "value" the tensor that op
    made, drawn from the node's `output_shape` (key: `("value", id(ctx))`; the graph links
    nodes, not the tensors they made), "leaf" a tensor no op made (key: its id)."""
    nodes: dict[Hashable, tuple] = {}
    edges, stack = [], [root._ctx]
    while stack:
        ctx = stack.pop()
        if id(ctx) in nodes:
            continue
        nodes[id(ctx)] = ("op", ctx)
        nodes["value", id(ctx)] = ("value", ctx)
        edges.append((id(ctx), ("value", id(ctx))))
        for parent in ctx.parents:
            if isinstance(parent, Context):  # an input made by an op: that op's node
                edges.append((("value", id(parent)), id(ctx)))
                stack.append(parent)
            elif isinstance(parent, nima.Tensor):
                edges.append((id(parent), id(ctx)))
                nodes[id(parent)] = ("leaf", parent)
    return nodes, edges


def autograd_graph(fig: Figure) -> None:
    r"""The graph Nima records for $L = \sum_i \tanh(x_i w_i + b)$, read from the loss's
    `_ctx` node and the nodes it links to: each op with its inputs, each tensor with its
    shape, and after `L.backward()` the gradient of each leaf (b's is summed over the three
    copies broadcasting made)."""
    x = nima.tensor([0.5, -1.0, 2.0], requires_grad=True)
    w = nima.tensor([1.0, 0.5, -0.25], requires_grad=True)
    b = nima.tensor(0.1, requires_grad=True)
    u = x * w
    v = u + b
    t = v.tanh()
    L = t.sum()
    names = {id(x): "x", id(w): "w", id(b): "b",
             **{("value", id(y._ctx)): name for y, name in ((u, "u"), (v, "v"), (t, "t"),
                                                            (L, "L"))}}
    nodes, edges = _graph(L)
    L.backward()
    parents = {n: [a for a, c in edges if c == n] for n in nodes}
    depth: dict[Hashable, int] = {}

    def place(n: Hashable) -> int:
        if n not in depth:
            depth[n] = 1 + max((place(p) for p in parents[n]), default=-1)
        return depth[n]

    row: dict[Hashable, float] = {}
    leaves = [n for n in (id(x), id(w), id(b))]
    for i, n in enumerate(leaves):
        row[n] = -1.3 * i
    for n in sorted(nodes, key=place):
        if n not in row:
            row[n] = float(np.mean([row[p] for p in parents[n]]))
    ax = fig.subplots()
    for n, (kind, obj) in nodes.items():
        cx, cy = 1.6 * depth[n], row[n]
        if kind == "op":
            label, colour = obj.function.__name__, OP_COLOUR
        elif kind == "value":
            label, colour = f"{names[n]}  {tuple(obj.output_shape)}", VALUE_COLOUR
        else:
            label, colour = f"{names[n]}  {tuple(obj.shape)}", LEAF_COLOUR
        style = "round,pad=0.02" if kind == "op" else "square,pad=0.02"
        ax.add_patch(FancyBboxPatch((cx - 0.55, cy - 0.28), 1.1, 0.56, facecolor=colour,
                                    edgecolor="k", lw=0.8, boxstyle=style))
        ax.text(cx, cy, label, ha="center", va="center", fontsize=9,
                family=None if kind == "op" else "monospace",
                weight="bold" if kind == "op" else "normal")
        if kind == "leaf":
            grad = np.array2string(np.asarray(obj.grad), precision=3, separator=", ")
            ax.text(cx - 0.62, cy, f"grad {grad}", ha="right", va="center", fontsize=8,
                    color="#444444")
    for a, c in edges:
        ax.annotate("", (1.6 * depth[c] - 0.57, row[c]), (1.6 * depth[a] + 0.57, row[a]),
                    arrowprops={"arrowstyle": "->", "lw": 0.9, "color": "#333333"})
    right = 1.6 * max(depth.values())
    ax.set(xlim=(-3.6, right + 0.7), ylim=(min(row.values()) - 0.6, max(row.values()) + 0.6))
    ax.set_title(r"$L = \sum_i \tanh(x_i w_i + b)$ as recorded: leaves (green) with the "
                 r"gradient backward() left in .grad, ops (orange), intermediate tensors (blue)",
                 fontsize=9)
    ax.axis("off")


def one_thread(draw: Callable[[Figure], None]) -> Callable[[Figure], None]:
    """Run a figure's model work on one numba thread, chosen explicitly for that block
    (`nima.runtime.using`): the steps of a small model are too short to share, and on a busy
    machine every parallel launch waits for a core."""
    @functools.wraps(draw)
    def run(fig: Figure) -> None:
        with nima.runtime.using(numba_threads=1):
            draw(fig)
    return run


def _cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "nima-docs" / "models"


def _cache_key(attention: str) -> str:
    """A hash of everything the trained weights depend on."""
    digest = hashlib.sha256(f"{attention} {RECIPE} {STEPS} {BATCH} {SEED}".encode())
    digest.update(inspect.getsource(_train).encode())
    for path in [CORPUS, *sorted((ROOT / "nima").rglob("*.py"))]:
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _train(model: GPT, data: np.ndarray) -> None:
    """AdamW with warm-up and cosine decay on random windows of the first 90% of `data`."""
    T, n = model.config.block_size, int(0.9 * len(data))
    opt = AdamW(param_groups_for_decay(model, 0.1), lr=3e-3, betas=(0.9, 0.99))
    schedule = WarmupCosine(opt, warmup=30, total=STEPS, min_lr=3e-4)
    rng = np.random.default_rng(SEED)
    for _ in range(STEPS):
        rows = rng.integers(0, n - T - 1, BATCH)[:, None] + np.arange(T + 1)  # (B, T + 1)
        _, loss = model(data[rows[:, :-1]], data[rows[:, 1:]])
        loss.backward()
        clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad()
        schedule.step()


_models: dict[str, tuple[GPT, Any]] = {}


def trained_model(attention: str = "content") -> tuple[GPT, Any]:
    """`(model, tokenizer)`: the README's run for content attention when it exists, else a small
    GPT trained here (or loaded from the cache), in eval mode."""
    if attention not in _models:
        _models[attention] = _readme_run() if attention == "content" else None
        if _models[attention] is None:
            _models[attention] = _small_model(attention)
    return _models[attention]


def _readme_run() -> tuple[GPT, Any] | None:
    from nima.training import load_run  # only when a run directory is there

    if not (README_RUN / "best.safetensors").exists():
        return None
    try:
        model, tokenizer, _ = load_run(README_RUN)
    except (OSError, ValueError):  # an unfinished or damaged run: train instead
        return None
    return model.eval(), tokenizer


def _small_model(attention: str) -> tuple[GPT, Any]:
    text = CORPUS.read_text(encoding="utf-8")
    tokenizer = CharTokenizer.train(text)
    nima.manual_seed(SEED)
    model = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, attention=attention, **RECIPE))
    path = _cache_dir() / f"{attention}-{_cache_key(attention)}.safetensors"
    if path.exists():
        model.load_state_dict(nima.load(path))
    else:
        _train(model, np.array(tokenizer.encode(text), dtype=np.int64))
        path.parent.mkdir(parents=True, exist_ok=True)
        for old in path.parent.glob(f"{attention}-*.safetensors"):
            old.unlink()  # an earlier recipe's or package's weights
        nima.save(model.state_dict(), path)  # atomically
    return model.eval(), tokenizer


def _attention_inputs(model: GPT, idx: np.ndarray) -> list[nima.Tensor]:
    """What each block's attention layer received in a forward of `idx` (its normed input),
    caught with a forward pre-hook."""
    seen: list[nima.Tensor] = []
    handles = [block.attn.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
               for block in model.blocks]
    try:
        with nima.no_grad():
            model(idx)
    finally:
        for handle in handles:
            handle.remove()
    return seen


def _char_ticks(ax, chars: list[str], x: bool, y: bool) -> None:
    """Characters as tick labels: keys along the bottom, queries along the left."""
    labels = [{"\n": "⏎", " ": "␣"}.get(c, c) for c in chars]
    ax.set_xticks(range(len(chars)), labels if x else [], fontsize=6, family="monospace")
    ax.set_yticks(range(len(chars)), labels if y else [], fontsize=6, family="monospace")
    ax.tick_params(length=0, pad=1)


@one_thread
def attention_heads(fig: Figure) -> None:
    """Every head of every block of the trained GPT on one line of the play: row t is where the
    character at position t looks (`need_weights=True` on each block's attention, fed exactly
    what the block fed it), on a square-root colour scale so that small weights show."""
    model, tokenizer = trained_model()
    idx = np.array([tokenizer.encode(LINE)])
    chars = list(LINE)
    inputs = _attention_inputs(model, idx)
    L, H = len(model.blocks), model.config.n_head
    axes = fig.subplots(L, H, squeeze=False)
    with nima.no_grad():
        for l, (block, x) in enumerate(zip(model.blocks, inputs, strict=True)):
            _, weights = block.attn(x, need_weights=True)  # (1, nh, T, T)
            for h in range(H):
                ax = axes[l][h]
                ax.imshow(weights.data[0, h], cmap="Blues", norm=PowerNorm(0.5, 0, 1))
                _char_ticks(ax, chars, x=l == L - 1, y=h == 0)
                ax.set_title(f"block {l}, head {h}", fontsize=8)


@one_thread
def hybrid_patterns(fig: Figure) -> None:
    """The first block of a hybrid-attention GPT trained here: per head, the reweight
    distribution and the content distribution on one line, with the learned mixing weight."""
    model, tokenizer = trained_model("hybrid")
    idx = np.array([tokenizer.encode(LINE)])
    chars = list(LINE)
    x = _attention_inputs(model, idx)[0]
    trained = model.blocks[0].attn
    alpha = trained.alpha().data
    c = model.config
    branches = {}
    for mode in ("reweight", "content"):
        branch = HybridAttention(c.n_embd, c.n_head, c.block_size, mode=mode, bias=c.bias)
        branch.load_state_dict(trained.state_dict(), strict=False)  # the layouts are shared
        with nima.no_grad():
            branches[mode] = branch(x, need_weights=True)[1].data[0]  # (nh, T, T)
    axes = fig.subplots(2, c.n_head, squeeze=False)
    for h in range(c.n_head):
        for row, (mode, name) in enumerate((("reweight", "reweight $A^{rw}$"),
                                             ("content", "content $A^{c}$"))):
            ax = axes[row][h]
            ax.imshow(branches[mode][h], cmap="Purples" if row == 0 else "Blues",
                      norm=PowerNorm(0.5, 0, 1))
            _char_ticks(ax, chars, x=row == 1, y=h == 0)
            title = f"head {h}: $\\alpha$ = {alpha[h]:.2f}\n{name}" if row == 0 else name
            ax.set_title(title, fontsize=8)


class _Recorder:
    """A logits processor that changes nothing and keeps what it sees: each step's running
    histories `(rows, n)` and logits `(rows, V)`."""

    def __init__(self) -> None:
        self.steps: list[tuple[np.ndarray, np.ndarray]] = []

    def __call__(self, input_ids: np.ndarray, logits: np.ndarray) -> np.ndarray:
        self.steps.append((input_ids.copy(), np.asarray(logits, dtype=np.float64).copy()))
        return logits


def _log_softmax(z: np.ndarray) -> np.ndarray:
    m = z.max(axis=-1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(axis=-1, keepdims=True))


@one_thread
def beam_tree(fig: Figure) -> None:
    """The beams of `generate(..., num_beams=3)` continuing a prompt by eight characters, read
    step by step through a logits processor: kept prefixes, the best pruned candidates, and
    the sequence returned."""
    model, tokenizer = trained_model()
    prompt, K, steps = "ROMEO:\n", 3, 8
    recorder = _Recorder()
    out = generate(model, np.array([tokenizer.encode(prompt)]), steps, num_beams=K,
                   num_return_sequences=K, logits_processor=[recorder])
    n0 = len(prompt)
    finals = {tuple(out.generated(i)) for i in range(K)}
    nodes: dict[tuple[int, ...], float] = {(): 0.0}  # prefix (after the prompt) -> log p
    pruned: dict[tuple[int, ...], float] = {}
    for s, (histories, logits) in enumerate(recorder.steps):
        logp = _log_softmax(logits)  # (K, V)
        kept_next = ({tuple(h[n0:].tolist()) for h in recorder.steps[s + 1][0]}
                     if s + 1 < len(recorder.steps) else finals)
        for row, history in enumerate(histories):
            prefix = tuple(history[n0:].tolist())
            if prefix not in nodes:
                continue
            best_pruned = None
            for token in np.argsort(-logp[row])[:K + 1]:
                child, score = (*prefix, int(token)), nodes[prefix] + float(logp[row, token])
                if child in kept_next:
                    nodes.setdefault(child, score)
                elif best_pruned is None:
                    best_pruned = (child, score)
            if best_pruned is not None:
                pruned.setdefault(*best_pruned)
            if s == 0:
                break  # all beams start as the same prompt: only the first proposes
    best = tuple(out.generated(0))
    shown = nodes
    y: dict[tuple[int, ...], float] = {}
    counter = [0.0]

    def place(prefix: tuple[int, ...]) -> float:
        children = sorted([c for c in (*shown, *pruned) if len(c) == len(prefix) + 1
                           and c[:-1] == prefix], key=lambda c: -(shown.get(c, pruned.get(c))))
        if not children or prefix in pruned:
            y[prefix] = counter[0]
            counter[0] += 1
        else:
            ys = [place(c) for c in children]
            y[prefix] = float(np.mean(ys))
        return y[prefix]

    place(())
    ax = fig.subplots()
    label = {i: ("⏎" if ch == "\n" else "␣" if ch == " " else ch)
             for i, ch in enumerate(tokenizer.decode(list(range(tokenizer.vocab_size))))}
    for prefix, pos in y.items():
        if not prefix:
            continue
        is_pruned = prefix in pruned
        parent = prefix[:-1]
        on_best = best[:len(prefix)] == prefix
        ax.plot([len(parent), len(prefix)], [y[parent], pos], color="#bbbbbb" if is_pruned
                else "#1f5fa8", lw=2.2 if on_best else 1.0, zorder=1)
        score = pruned[prefix] if is_pruned else shown[prefix]
        ax.text(len(prefix), pos, f" {label[prefix[-1]]} ", ha="center", va="center",
                fontsize=9, family="monospace", weight="bold" if on_best else "normal",
                color="#999999" if is_pruned else "black", zorder=2,
                bbox={"boxstyle": "round,pad=0.15", "fc": "white",
                      "ec": "#cccccc" if is_pruned else "#1f5fa8"})
        if not is_pruned:
            ax.text(len(prefix), pos + 0.4, f"{score:.1f}", ha="center", va="top", fontsize=6,
                    color="#555555")
    ax.text(0, y[()], "⏎", ha="right", va="center", fontsize=9)
    ax.set(xlim=(-0.6, steps + 0.6), xticks=range(1, steps + 1), xlabel="step",
           title=f"beam search, K = {K}, after {prompt!r}: kept beams (blue, summed log p), the "
                 f"best pruned candidates (grey), the result (bold): "
                 f"{tokenizer.decode(list(best))!r}")
    ax.title.set_fontsize(9)
    ax.invert_yaxis()
    ax.set_yticks([])
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)


@one_thread
def entropy_sampling(fig: Figure) -> None:
    """Entropy-aware sampling with a target of 2.5 bits: each step's entropy of the model's own
    distribution, the temperature chosen, and the entropy of what was sampled from."""
    model, tokenizer = trained_model()
    target, low, high, steps = 2.5, 0.25, 2.0, 60
    recorder = _Recorder()
    out = generate(model, np.array([tokenizer.encode("ROMEO:\n")]), steps,
                   target_entropy=target, min_temp=low, max_temp=high, seed=0,
                   logits_processor=[recorder])
    p = np.exp(_log_softmax(np.stack([logits[0] for _, logits in recorder.steps])))
    own = -(p * np.log2(np.where(p > 0, p, 1.0))).sum(axis=-1)  # (steps,) at T = 1
    used = out.stats.entropy[:, 0]
    temperature = out.stats.temperature[:, 0]
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[1.4, 1])
    t = np.arange(len(used))
    top.plot(t, own, color="#999999", lw=1, label="the model's own distribution (T = 1)")
    top.plot(t, used, color="C0", lw=1.5, label="after the chosen temperature")
    top.axhline(target, color="k", ls="--", lw=0.8, label=f"target {target} bits")
    top.set(ylabel="entropy (bits)", ylim=(0, 1.35 * max(own.max(), target)))
    top.legend(fontsize=7, loc="upper right", ncols=3)
    bottom.plot(t, temperature, color="C3", lw=1.5)
    for bound in (low, high):
        bottom.axhline(bound, color="C3", ls=":", lw=0.8)
    bottom.set(ylabel="temperature", ylim=(0, high * 1.1))
    text = tokenizer.decode(out.generated(0))
    bottom.set_xticks(t, [{"\n": "⏎", " ": "␣"}.get(ch, ch) for ch in text], fontsize=7,
                      family="monospace")
    bottom.set_xlabel("the character sampled at each step")
    top.set_title(f"entropy-aware sampling after 'ROMEO:⏎', bounds T in [{low}, {high}] "
                  f"(dotted)", fontsize=9)


VISUALS = {
    "autograd_graph": (autograd_graph, (10, 2.6)),
    "attention_heads": (attention_heads, (11, 6.2)),
    "hybrid_patterns": (hybrid_patterns, (11, 6.0)),
    "beam_tree": (beam_tree, (11, 5.6)),
    "entropy_sampling": (entropy_sampling, (11, 4.6)),
}
