r"""Tree beam search: beam search that expands each hypothesis into at most `c` children and
keeps the explicit tree of what it explored.

Plain beam search scores every token after every beam, $K \cdot V$ candidates a step. Tree beam
search first lets each beam propose only its `tree_width` $= c$ likeliest continuations (plus
the end token, which finishes a hypothesis rather than continuing it), then keeps the best $K$
of those $K \cdot c$ proposals exactly as beam search does:

$$\mathcal C_t = \bigcup_{b=1}^{K} \bigl\{(b, i) : i \in \operatorname{top}_c
\log p(\cdot \mid \text{beam}_b)\bigr\}, \qquad \text{beams}_{t+1} = \operatorname{top}_K
\bigl\{ s_b + \log p(i \mid \text{beam}_b) : (b, i) \in \mathcal C_t \bigr\}.$$

With $c \ge K$ nothing beam search would keep is ever left out: the $K$ continuing candidates
it keeps include at most $K$ children of one parent, each therefore among that parent's $K$
best, and the end token is always on offer — so the two searches are the same. With $c < K$ no
hypothesis may fill the beam with its own children: the beams spread over more parents, a
hard form of the sibling-rank penalty of Li, Monroe & Jurafsky (2016, "A Simple, Fast Diverse
Decoding Algorithm for Neural Generation"), and the tree beam search of NetRain's Deep Tree
Echo.

**The tree.** Each prompt's search is a `SearchTree`: the root is the prompt, each node one
generated token whose parent is the hypothesis it extends, so hypotheses that share a prefix
share those nodes. Every proposal is a node; its `status` says what became of it: `"beam"`
(kept as a beam), `"end"` (finished with the end token, kept as a hypothesis), or `"pruned"`.
`render` draws it as text, `edges` gives it to a plot.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Node", "SearchTree", "expand"]


# --8<-- [start:expand]
def expand(logp: np.ndarray, width: int, eos_token_id: int | None) -> np.ndarray:
    r"""Each row of `logp` `(N, V)` with every token but its `width` likeliest continuations —
    and the end token — set to $-\infty$: the children a hypothesis may have."""
    cont = logp.copy()
    if eos_token_id is not None:
        cont[:, eos_token_id] = -np.inf  # ending is not one of the c continuations
    if width >= cont.shape[1]:
        return logp
    best = np.argpartition(-cont, width - 1, axis=1)[:, :width]  # (N, c) unordered
    keep = np.zeros(logp.shape, dtype=bool)
    np.put_along_axis(keep, best, True, axis=1)
    if eos_token_id is not None:
        keep[:, eos_token_id] = True
    return np.where(keep, logp, -np.inf)  # (N, V)
# --8<-- [end:expand]


@dataclass
class Node:
    """One hypothesis: its last `token`, the node it extends (`parent`, -1 for the root), its
    summed log-probability, how many tokens it has generated, what became of it, and the
    nodes that extend it."""

    token: int
    parent: int
    logprob: float
    depth: int
    status: str
    children: list[int] = field(default_factory=list)


class SearchTree:
    """The explored hypotheses of one prompt; node 0 is the root (the prompt itself).

    Example:
        >>> tree = SearchTree([5, 6])
        >>> a = tree.add(0, token=1, logprob=-0.1)
        >>> tree.path(tree.add(a, token=2, logprob=-0.3, status="end"))
        [1, 2]
    """

    STATUSES = ("root", "beam", "end", "pruned")

    def __init__(self, prompt: list[int]) -> None:
        self.prompt = list(prompt)
        self.nodes = [Node(token=-1, parent=-1, logprob=0.0, depth=0, status="root")]

    def __len__(self) -> int:
        return len(self.nodes)

    def add(self, parent: int, token: int, logprob: float, status: str = "pruned") -> int:
        """A child of node `parent`; returns its index."""
        if status not in self.STATUSES[1:]:
            raise ValueError(f"SearchTree.add: status must be one of 'beam', 'end', 'pruned', "
                             f"got {status!r}")
        node = Node(int(token), parent, float(logprob), self.nodes[parent].depth + 1, status)
        self.nodes.append(node)
        self.nodes[parent].children.append(len(self.nodes) - 1)
        return len(self.nodes) - 1

    def path(self, node: int) -> list[int]:
        """The generated tokens from the root to `node`."""
        tokens = []
        while node > 0:
            tokens.append(self.nodes[node].token)
            node = self.nodes[node].parent
        return tokens[::-1]

    def edges(self) -> list[tuple[int, int]]:
        """`(parent, child)` for every node but the root."""
        return [(n.parent, i) for i, n in enumerate(self.nodes) if i > 0]

    def render(self, decode: Callable[[list[int]], str] = lambda ids: str(ids[0]),
               statuses: tuple[str, ...] = ("beam", "end")) -> str:
        """The tree as indented text, one node a line: the token (through `decode`), its
        summed log-probability and status; only nodes whose status is in `statuses` (and the
        nodes leading to them) are drawn — by default what the search kept."""
        shown = set()
        for i, n in enumerate(self.nodes):
            if n.status in statuses:
                while i >= 0 and i not in shown:
                    shown.add(i)
                    i = self.nodes[i].parent
        lines = [repr(decode(self.prompt)) if self.prompt else "(empty prompt)"]

        def walk(i: int, indent: str) -> None:
            kids = [c for c in self.nodes[i].children if c in shown]
            for k, c in enumerate(kids):
                last = k == len(kids) - 1
                n = self.nodes[c]
                mark = {"end": " [end]", "pruned": " [pruned]"}.get(n.status, "")
                lines.append(f"{indent}{'└─' if last else '├─'} {decode([n.token])!r} "
                             f"{n.logprob:.2f}{mark}")
                walk(c, indent + ("   " if last else "│  "))

        walk(0, "")
        return "\n".join(lines)
