r"""Exercises of tutorial 13, a scalar autograd engine from scratch."""

from collections.abc import Sequence

from exercises import equal


class Node:
    """A node of a computation graph: the nodes it was computed from are its `parents`."""

    def __init__(self, *parents: "Node") -> None:
        self.parents: Sequence[Node] = parents


def backward_order(root: Node) -> list[Node]:
    r"""The order in which `backward()` visits the graph.

    Return every node reachable from `root` through `parents`, each once, `root` first, and
    every node only after *all* the nodes that use it (its consumers) — a reverse topological
    order, so a node's gradient is complete before it is passed on. Use an explicit stack, not
    recursion: a chain of 100,000 nodes must work.
    """
    raise NotImplementedError


def _check_order(order: list[Node], root: Node, name: str) -> None:
    reachable, stack = set(), [root]
    while stack:
        node = stack.pop()
        if id(node) not in reachable:
            reachable.add(id(node))
            stack.extend(node.parents)
    equal(len(order), len(reachable), f"{name}: the number of nodes in the order")
    equal(len({id(n) for n in order}), len(order), f"{name}: each node once")
    equal(order[0] is root, True, f"{name}: the root first")
    place = {id(n): i for i, n in enumerate(order)}
    for node in order:
        for parent in node.parents:
            if place[id(parent)] < place[id(node)]:
                raise AssertionError(f"{name}: a node comes before one of the nodes that use it")


def check_backward_order(backward_order) -> None:
    """Checks the rules on a diamond, on a graph where one node is used at depths 1 and 3 (a
    breadth-first order fails there), and on a chain of 100,000 nodes."""
    x = Node()
    a, b = Node(x), Node(x)
    diamond = Node(a, b)
    _check_order(backward_order(diamond), diamond, "a diamond")
    x = Node()
    deep = Node(Node(Node(x)))  # uses x three levels down
    uneven = Node(x, deep)  # ... and directly
    _check_order(backward_order(uneven), uneven, "x used at depths 1 and 4")
    chain = Node()
    for _ in range(100_000):
        chain = Node(chain)
    order = backward_order(chain)
    equal(len(order), 100_001, "the chain: every node")
