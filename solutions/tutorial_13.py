"""Solutions of exercises/tutorial_13.py."""


def backward_order(root):
    # count the consumers of every node, then release a node once all of them are done (Kahn)
    consumers, stack, seen = {}, [root], {id(root)}
    while stack:
        node = stack.pop()
        for parent in node.parents:
            consumers[id(parent)] = consumers.get(id(parent), 0) + 1
            if id(parent) not in seen:
                seen.add(id(parent))
                stack.append(parent)
    order, ready = [], [root]
    while ready:
        node = ready.pop()
        order.append(node)
        for parent in node.parents:
            consumers[id(parent)] -= 1
            if not consumers[id(parent)]:
                ready.append(parent)
    return order


def _backward_order_recursive(root):
    """A depth-first post-order by recursion, reversed: right, but the chain overflows the
    Python stack."""
    order, seen = [], set()

    def visit(node):
        if id(node) in seen:
            return
        seen.add(id(node))
        for parent in node.parents:
            visit(parent)
        order.append(node)

    visit(root)
    return order[::-1]


def _backward_order_breadth_first(root):
    """Breadth-first from the root: a node reached early through a short path comes before a
    consumer that sits deeper."""
    order, seen, queue = [], {id(root)}, [root]
    while queue:
        node = queue.pop(0)
        order.append(node)
        for parent in node.parents:
            if id(parent) not in seen:
                seen.add(id(parent))
                queue.append(parent)
    return order


WRONG = {"backward_order": [_backward_order_recursive, _backward_order_breadth_first]}
