r"""MkDocs hook: the whole-system map on the Architecture page, drawn at build time.

Two figures, as inline SVG whose boxes are links to the pages that explain them:

* **the transformer map** — one training step of the GPT, tokens -> embeddings -> blocks ->
  head -> loss -> backward -> optimizer, and the decoding loop that runs the same forward with
  a KV cache per block, each tensor with its shape, symbolically and with the sizes of the baby
  GPT (`GPTConfig.preset("baby")`, read when the site is built);
* **the package graph** — the layers of `docs/architecture.md` and which imports which, read
  from every `import` statement in `nima/` with the layer table of `tests/test_layer_order.py`
  (the test that enforces the order), so the drawing cannot drift from the code.

The page holds the markers `<!-- nima: transformer map -->` and `<!-- nima: package graph -->`
(each on a line of its own); a missing marker, or a link to a page or heading that does not
exist in the built site, fails the build. The SVG is matplotlib's, with `set_url` on each
box: matplotlib writes the link, and the text is drawn as paths, so it needs no font.
"""

from __future__ import annotations

import importlib.util
import io
import re
from collections.abc import Callable
from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch
from mkdocs.config.defaults import MkDocsConfig
from mkdocs.exceptions import PluginError
from mkdocs.structure.files import Files
from mkdocs.structure.pages import Page
from mkdocs.utils import get_relative_url

from nima.models import GPTConfig

PAGE = "architecture.md"
ROOT = Path(__file__).resolve().parents[2]
COLOURS = {"data": "#dde6f3", "model": "#f6c89f", "train": "#a8d5a2", "decode": "#e3d0ee",
           "core": "#f2e6a6"}
_links: list[tuple[str, str]] = []  # (page src_uri, anchor) of every box, checked after the build


class Canvas:
    """A matplotlib axes in data units, with boxes that link to pages (`page.md#anchor`)."""

    def __init__(self, fig: Figure, width: float, height: float, bottom: float = 0.0) -> None:
        self.ax = fig.add_axes((0, 0, 1, 1))
        self.ax.set(xlim=(0, width), ylim=(bottom, height))
        self.ax.axis("off")

    def box(self, x: float, y: float, w: float, h: float, title: str, detail: str = "", *,
            kind: str, link: str | None = None, size: float = 9.0) -> tuple[float, ...]:
        """A box with its lower-left corner at (x, y), a bold title and lines of detail."""
        patch = FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0,rounding_size=0.12",
                               facecolor=COLOURS[kind], edgecolor="#333333", lw=0.9)
        self.ax.add_patch(patch)
        lines = detail.count("\n") + 1 if detail else 0
        top = y + h / 2 + (0.17 * lines if lines else 0)
        title_text = self.ax.text(x + w / 2, top, title, ha="center", va="center",
                                  fontsize=size, weight="bold")
        if detail:
            self.ax.text(x + w / 2, top - 0.25, detail, ha="center", va="top",
                         fontsize=size - 1.5, family="monospace", linespacing=1.35)
        if link:
            page, _, anchor = link.partition("#")
            _links.append((page, anchor))
            patch.set_url(link)
            title_text.set_url(link)
        return x, y, w, h

    def arrow(self, start: tuple[float, float], end: tuple[float, float], text: str = "", *,
              bend: float = 0.0, colour: str = "#333333", style: str = "-") -> None:
        self.ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=11,
                                          connectionstyle=f"arc3,rad={bend}", color=colour,
                                          lw=1.1, ls=style, shrinkA=1, shrinkB=1))
        if text:
            mx, my = (start[0] + end[0]) / 2, (start[1] + end[1]) / 2
            self.ax.text(mx, my + 0.12, text, ha="center", va="bottom", fontsize=7.5,
                         color=colour, style="italic")

    def note(self, x: float, y: float, text: str, **kw) -> None:
        self.ax.text(x, y, text, fontsize=kw.pop("fontsize", 8), color=kw.pop("color", "#444444"),
                     **kw)


def right(b: tuple[float, ...]) -> tuple[float, float]:
    return b[0] + b[2], b[1] + b[3] / 2


def left(b: tuple[float, ...]) -> tuple[float, float]:
    return b[0], b[1] + b[3] / 2


def top(b: tuple[float, ...], at: float = 0.5) -> tuple[float, float]:
    return b[0] + b[2] * at, b[1] + b[3]


def bottom(b: tuple[float, ...], at: float = 0.5) -> tuple[float, float]:
    return b[0] + b[2] * at, b[1]


def transformer_map(fig: Figure) -> None:
    """One training step and the decoding loop of a GPT, with shapes."""
    c = GPTConfig.preset("baby")
    B, T, C, V, L, nh, hd = 12, c.block_size, c.n_embd, c.vocab_size, c.n_layer, c.n_head, \
        c.head_dim
    cv = Canvas(fig, 24, 10.2, bottom=-0.45)
    cv.note(0.1, 9.85, f"one training step (shapes for the baby GPT: B = {B}, T = {T}, "
                       f"C = {C}, V = {V}, L = {L}, {nh} heads of {hd})", fontsize=9,
            color="#222222", weight="bold")
    idx = cv.box(0.1, 6.3, 2.5, 1.5, "token ids", f"idx, targets\n(B, T)\n({B}, {T})",
                 kind="data", link="data.md#batch-sampling")
    emb = cv.box(3.3, 6.3, 2.9, 1.5, "embeddings", f"W_E[idx] + P\n(B, T, C)\n({B}, {T}, {C})",
                 kind="model", link="gpt.md#embeddings")
    # the block, drawn open: its four sublayers, and the KV cache beside attention
    block = (6.9, 4.55, 7.0, 5.0)
    frame = FancyBboxPatch(block[:2], *block[2:], boxstyle="round,pad=0,rounding_size=0.15",
                           facecolor="white", edgecolor="#333333", lw=1.0, ls="--")
    frame.set_url("gpt.md#the-block")
    _links.append(("gpt.md", "the-block"))
    cv.ax.add_patch(frame)
    label = cv.ax.text(10.4, 9.2, f"L = {L} blocks, each (B, T, C) in and out", ha="center",
                       fontsize=9, weight="bold")
    label.set_url("gpt.md#the-block")
    ln1 = cv.box(7.2, 7.45, 1.6, 1.3, "norm", "LayerNorm\nRMSNorm", kind="model",
                 link="nn.md#normalisation-layernorm-and-rmsnorm", size=8.5)
    att = cv.box(9.2, 7.45, 2.7, 1.3, "attention", f"weights (B, nh, T, T)\n({B}, {nh}, "
                                                    f"{T}, {T})", kind="model",
                 link="attention.md#multi-head-attention", size=8.5)
    add1 = cv.box(12.3, 7.7, 1.3, 0.8, "+ x", "", kind="model", link="gpt.md#the-block",
                  size=8.5)
    ln2 = cv.box(7.2, 5.05, 1.6, 1.3, "norm", "LayerNorm\nRMSNorm", kind="model",
                 link="nn.md#normalisation-layernorm-and-rmsnorm", size=8.5)
    ffn = cv.box(9.2, 5.05, 2.7, 1.3, "feed-forward", f"hidden (B, T, 4C)\n({B}, {T}, "
                                                      f"{4 * C})", kind="model",
                 link="feedforward.md", size=8.5)
    add2 = cv.box(12.3, 5.3, 1.3, 0.8, "+ x", "", kind="model", link="gpt.md#the-block",
                  size=8.5)
    head = cv.box(14.6, 6.3, 2.7, 1.5, "head", f"LN_f, then W_E^T\nlogits (B, T, V)\n({B}, "
                                                f"{T}, {V})", kind="model",
                  link="gpt.md#the-head-and-weight-tying")
    loss = cv.box(18.0, 6.3, 2.4, 1.5, "loss", "cross-entropy\nmean over B·T\nscalar ()",
                  kind="train", link="kernels.md#cross-entropy-fused")
    back = cv.box(21.1, 6.3, 2.8, 1.5, "backward()", "the graph in reverse:\n.grad on every\n"
                                                     "parameter", kind="train",
                  link="autograd.md#the-backward-pass")
    opt = cv.box(17.2, 4.3, 3.6, 1.4, "AdamW + schedule", "clip, step, lr(t)\nparameters -= ...",
                 kind="train", link="optim.md#adamw-decoupled-weight-decay")
    cv.arrow(right(idx), left(emb))
    cv.arrow(right(emb), left(ln1))
    cv.arrow(right(ln1), left(att))
    cv.arrow(right(att), left(add1))
    cv.arrow(bottom(add1), top(ln2, 0.5))
    cv.arrow(right(ln2), left(ffn))
    cv.arrow(right(ffn), left(add2))
    cv.arrow(right(add2), left(head), bend=0.3)
    cv.arrow(right(head), left(loss))
    cv.arrow(right(loss), left(back))
    cv.arrow(bottom(back, 0.4), right(opt), bend=-0.3, text="gradients")
    cv.arrow(left(opt), bottom(block, 0.85),
             bend=-0.25, text="new weights", colour="#2b7a2b", style="--")
    cv.note(3.3, 5.1, "positions: learned or\nsinusoidal added here;\nRoPE, ALiBi inside\n"
                      "attention", fontsize=7.5)
    pos_link = cv.ax.text(3.3, 4.7, "→ positions", fontsize=8, color="#1f5fa8")
    pos_link.set_url("positions.md")
    _links.append(("positions.md", ""))
    train_link = cv.ax.text(18.0, 3.75, "→ the training loop (Trainer)", fontsize=8,
                            color="#1f5fa8")
    train_link.set_url("training.md#one-step")
    _links.append(("training.md", "one-step"))

    # the decoding loop: the same forward on the new token, a KV cache per block
    cv.note(3.6, 2.75, "decoding loop", fontsize=9, color="#222222", weight="bold")
    prompt = cv.box(0.1, 0.9, 2.5, 1.6, "prompt", "ids (B, T0),\nthen the new\ntoken (B, 1)",
                    kind="data", link="tokenizers.md")
    cache = cv.box(3.6, 0.9, 4.6, 1.6, "KV cache per block", f"keys, values of seen tokens\n(B, "
                                                      f"n_kv, block_size, hd)\n({B}, {nh}, {T}, "
                                                      f"{hd}) each", kind="decode",
                   link="attention.md#the-kv-cache")
    logits = cv.box(14.6, 0.9, 2.7, 1.6, "next logits", f"last position\n(B, V)\n({B}, {V})",
                    kind="decode", link="gpt.md#incremental-decoding-with-kv-caches")
    procs = cv.box(17.8, 0.9, 3.3, 1.6, "processors", "repetition penalty,\ntemperature,\n"
                                                      "top-k, top-p", kind="decode",
                   link="generation.md#logits-processors")
    choose = cv.box(21.5, 1.75, 2.4, 1.05, "choose", "greedy, sample,\nentropy-aware",
                    kind="decode", link="generation.md#choosing-the-token", size=8.5)
    beam = cv.box(21.5, 0.4, 2.4, 1.05, "or beam search", "K beams", kind="decode",
                  link="beam_search.md", size=8.5)
    cv.arrow(top(prompt), bottom(idx), text="")
    cv.note(1.5, 3.7, "the same forward", fontsize=7.5, color="#7a3e9d", style="italic")
    cv.arrow(top(cache, 0.75), (8.1, 4.55), colour="#7a3e9d")
    cv.arrow((8.4, 4.55), top(cache, 0.9), colour="#7a3e9d")
    cv.note(8.6, 3.3, "attention reads the cache\nand appends the new k, v", fontsize=7.5,
            color="#7a3e9d", style="italic")
    cv.arrow(bottom(head), top(logits, 0.5), colour="#7a3e9d")
    cv.arrow(right(logits), left(procs))
    cv.arrow(right(procs), left(choose))
    cv.arrow(right(procs), left(beam))
    cv.arrow(bottom(beam, 0.5), bottom(prompt, 0.5), bend=-0.04, colour="#7a3e9d")
    cv.note(8.0, -0.3, "append the chosen token; the next step feeds only it", fontsize=7.5,
            color="#7a3e9d", style="italic")


def package_graph(fig: Figure) -> None:
    """The layers of nima and the imports between them (A -> B: A imports B), from the code."""
    spec = importlib.util.spec_from_file_location("test_layer_order",
                                                  ROOT / "tests" / "test_layer_order.py")
    order = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(order)
    nima = ROOT / "nima"
    edges: set[tuple[str, str]] = set()
    for path in nima.rglob("*.py"):
        parts = path.relative_to(nima).with_suffix("").parts
        layer = order.LAYER["" if parts == ("__init__",) else parts[0]]
        for name in order.imported(path):
            other = order.LAYER[name]
            if other != layer and (parts[0], name) not in order.EXCEPTIONS:
                edges.add((layer, other))
    layers = list(dict.fromkeys(order.LAYER.values()))
    reach = {a: {b for x, b in edges if x == a} for a in layers}
    changed = True
    while changed:  # transitive closure
        changed = False
        for a in layers:
            more = set().union(*(reach[b] for b in reach[a])) - reach[a]
            if more:
                reach[a] |= more
                changed = True
    implied = {(a, b) for a, b in edges
               if any(b in reach[m] for m in reach[a] if m != b)}
    level: dict[str, int] = {}

    def depth(a: str) -> int:
        if a not in level:
            level[a] = 1 + max((depth(b) for x, b in edges if x == a), default=-1)
        return level[a]

    rows: dict[int, list[str]] = {}
    for a in layers:
        rows.setdefault(depth(a), []).append(a)
    width, height = 18.0, 1.25 * (max(rows) + 1) + 0.3
    cv = Canvas(fig, width, height)
    where: dict[str, tuple[float, ...]] = {}
    for r, names in rows.items():
        for i, a in enumerate(names):
            x = width / 2 + (i - (len(names) - 1) / 2) * 4.4 - 1.75
            where[a] = cv.box(x, 0.15 + 1.25 * r, 3.5, 0.75, f"nima.{a}" if a != "core" else
                              "core: Tensor, autograd", kind="core", link=LAYER_PAGES[a],
                              size=8.5)
    for a, b in sorted(edges - implied):
        cv.arrow(bottom(where[a]), top(where[b]), colour="#555555")


LAYER_PAGES = {"kernels": "kernels.md", "core": "autograd.md", "ops": "autograd.md#functions-a-"
               "forward-beside-its-backward", "runtime": "architecture.md#runtime",
               "nn": "nn.md", "models": "gpt.md", "optim": "optim.md", "data": "data.md",
               "generation": "generation.md", "distributed": "distributed.md",
               "training": "training.md", "export": "interop.md", "cli": "configuration.md"}
DRAWINGS: dict[str, tuple[Callable[[Figure], None], tuple[float, float]]] = {
    "transformer map": (transformer_map, (12, 5.1)),
    "package graph": (package_graph, (9, 4.4)),
}


def svg(draw: Callable[[Figure], None], size: tuple[float, float], links: dict[str, str]) -> str:
    """The drawing as an inline `<svg>` scaled to the column, its `page.md#anchor` links
    rewritten to the built pages' URLs (`links`)."""
    fig = Figure(figsize=size)
    draw(fig)
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg")
    text = buffer.getvalue()
    text = text[text.index("<svg"):]  # drop the XML prolog and doctype: inline SVG
    text = re.sub(r'<svg([^>]*?) width="[^"]*" height="[^"]*"',
                  r'<svg\1 width="100%" class="nima-map"', text, count=1)
    return re.sub(r'xlink:href="([^"#]+\.md)(#[^"]*)?"',
                  lambda m: f'xlink:href="{links[m.group(1)]}{m.group(2) or ""}"', text)


def on_config(config: MkDocsConfig) -> None:
    _links.clear()


def on_page_content(html: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    if page.file.src_uri != PAGE:
        return html
    links = {f.src_uri: get_relative_url(f.url, page.url) for f in files.documentation_pages()}
    for marker, (draw, size) in DRAWINGS.items():
        comment = f"<!-- nima: {marker} -->"
        if comment not in html:
            raise PluginError(f"{PAGE}: the marker {comment} is missing")
        try:
            html = html.replace(comment, svg(draw, size, links))
        except KeyError as missing:
            raise PluginError(f"{PAGE}: the {marker} links to {missing}, which is not a "
                              f"page") from None
    return html


def on_post_build(config: MkDocsConfig) -> None:
    site = Path(config.site_dir)
    for page, anchor in sorted(set(_links)):
        html = site / page.replace(".md", ".html")
        if not html.exists():
            raise PluginError(f"{PAGE}: the transformer map links to {page}, not built")
        if anchor and f'id="{anchor}"' not in html.read_text(encoding="utf-8"):
            raise PluginError(f"{PAGE}: the transformer map links to {page}#{anchor}, a "
                              f"heading that does not exist")
