r"""Figures drawn from Nima running: a recorded autograd graph, and (added below) what a small
model trained at build time attends to and decodes. `figures.py` draws them with the others.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch

import nima

OP_COLOUR, LEAF_COLOUR, VALUE_COLOUR = "#f6c89f", "#a8d5a2", "#dde6f3"


def _graph(root: nima.Tensor) -> tuple[dict[int, tuple], list[tuple[int, int]]]:
    """The recorded graph below `root`: nodes `id -> (kind, object)` with kind "tensor" or
    "op", and edges `(from, to)` in the forward direction."""
    nodes: dict[int, tuple] = {id(root): ("tensor", root)}
    edges, stack = [], [root]
    while stack:
        tensor = stack.pop()
        ctx = tensor._ctx  # the recorded node (None for a leaf)
        if ctx is None:
            continue
        nodes[id(ctx)] = ("op", ctx)
        edges.append((id(ctx), id(tensor)))
        for parent in ctx.parents:
            if isinstance(parent, nima.Tensor):
                edges.append((id(parent), id(ctx)))
                if id(parent) not in nodes:
                    nodes[id(parent)] = ("tensor", parent)
                    stack.append(parent)
    return nodes, edges


def autograd_graph(fig: Figure) -> None:
    r"""The graph Nima records for $L = \sum_i \tanh(x_i w_i + b)$, read from the tensors'
    `_ctx` nodes: each op with its inputs, each tensor with its shape, and after
    `L.backward()` the gradient of each leaf (b's is summed over the three copies broadcasting
    made)."""
    x = nima.tensor([0.5, -1.0, 2.0], requires_grad=True)
    w = nima.tensor([1.0, 0.5, -0.25], requires_grad=True)
    b = nima.tensor(0.1, requires_grad=True)
    u = x * w
    v = u + b
    t = v.tanh()
    L = t.sum()
    names = {id(x): "x", id(w): "w", id(b): "b", id(u): "u", id(v): "v", id(t): "t", id(L): "L"}
    nodes, edges = _graph(L)
    L.backward()
    parents = {n: [a for a, c in edges if c == n] for n in nodes}
    depth: dict[int, int] = {}

    def place(n: int) -> int:
        if n not in depth:
            depth[n] = 1 + max((place(p) for p in parents[n]), default=-1)
        return depth[n]

    row: dict[int, float] = {}
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
        else:
            label = f"{names[n]}  {tuple(obj.shape)}"
            colour = LEAF_COLOUR if obj._ctx is None else VALUE_COLOUR
        style = "round,pad=0.02" if kind == "op" else "square,pad=0.02"
        ax.add_patch(FancyBboxPatch((cx - 0.55, cy - 0.28), 1.1, 0.56, facecolor=colour,
                                    edgecolor="k", lw=0.8, boxstyle=style))
        ax.text(cx, cy, label, ha="center", va="center", fontsize=9,
                family="monospace" if kind == "tensor" else None,
                weight="bold" if kind == "op" else "normal")
        if kind == "tensor" and obj._ctx is None:
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


VISUALS = {
    "autograd_graph": (autograd_graph, (10, 2.6)),
}
