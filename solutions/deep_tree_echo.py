"""Solutions of exercises/deep_tree_echo.py."""

import numpy as np


def block_parts(n_layer, attention, tree_layers, memory_layers, echo_layers, recursion_depth):
    if attention != "tree":
        tree = set()
    elif tree_layers is None:
        tree = set(range(n_layer)) - set(memory_layers)  # every block without memory
    else:
        tree = set(tree_layers)
    stateful = set(echo_layers) | set(memory_layers)  # their state would be written per step
    return [("memory" if i in memory_layers else "tree" if i in tree else "dense",
             i in echo_layers, recursion_depth > 1 and i not in stateful)
            for i in range(n_layer)]


def _block_parts_tree_everywhere(n_layer, attention, tree_layers, memory_layers, echo_layers,
                                 recursion_depth):
    """Reads tree_layers None as every block, memory blocks included."""
    parts = block_parts(n_layer, attention, tree_layers, memory_layers, echo_layers,
                        recursion_depth)
    if attention == "tree" and tree_layers is None:
        parts = [("tree", echo, rec) for _, echo, rec in parts]
    return parts


def _block_parts_recursing_stateful(n_layer, attention, tree_layers, memory_layers,
                                    echo_layers, recursion_depth):
    """Recurses every block, those with echo or memory too."""
    parts = block_parts(n_layer, attention, tree_layers, memory_layers, echo_layers,
                        recursion_depth)
    return [(kind, echo, recursion_depth > 1) for kind, echo, _ in parts]


def _block_parts_echo_recurses(n_layer, attention, tree_layers, memory_layers, echo_layers,
                               recursion_depth):
    """Keeps only the memory blocks out of the recursion."""
    parts = block_parts(n_layer, attention, tree_layers, memory_layers, echo_layers,
                        recursion_depth)
    return [(kind, echo, recursion_depth > 1 and i not in memory_layers)
            for i, (kind, echo, _) in enumerate(parts)]


def echo_block(block, x):
    x = x + block.attn(block.ln_1(x))  # tokens mix
    x = x + block.echo(block.ln_e(x))  # what earlier segments left in the slots
    return x + block.ffn(block.ln_2(x))  # each token alone


def _echo_block_after_ffn(block, x):
    """Puts the echo branch after the feed-forward."""
    x = x + block.attn(block.ln_1(x))
    x = x + block.ffn(block.ln_2(x))
    return x + block.echo(block.ln_e(x))


def _echo_block_parallel(block, x):
    """Lets the echo read the block's input, beside the attention instead of after it."""
    h = x + block.attn(block.ln_1(x)) + block.echo(block.ln_e(x))
    return h + block.ffn(block.ln_2(h))


def _echo_block_unnormed(block, x):
    """Feeds the echo layer the residual stream without its norm."""
    x = x + block.attn(block.ln_1(x))
    x = x + block.echo(x)
    return x + block.ffn(block.ln_2(x))


def _stream_batch(data, batch_size, block_size, group, n, *, segments_of, offset_of):
    N = len(data) // batch_size  # tokens per stream
    m = n % segments_of(N, block_size, group)  # the segment of this pass
    window = np.array([offset_of(b, m, N, batch_size, block_size) for b in range(batch_size)]
                      )[:, None] + np.arange(block_size + 1)
    chunk = np.asarray(data)[window].astype(np.int64)  # (B, T + 1)
    return chunk[:, :-1], chunk[:, 1:]


def stream_batch(data, batch_size, block_size, group, n):
    return _stream_batch(data, batch_size, block_size, group, n,
                         segments_of=lambda N, T, g: (N - 1) // T // g * g,
                         offset_of=lambda b, m, N, B, T: b * N + m * T)


WRONG = {
    "block_parts": [_block_parts_tree_everywhere, _block_parts_recursing_stateful,
                    _block_parts_echo_recurses],
    "echo_block": [_echo_block_after_ffn, _echo_block_parallel, _echo_block_unnormed],
    "stream_batch": [
        # consecutive segments side by side: row b no longer continues row b
        lambda data, B, T, g, n: _stream_batch(
            data, B, T, g, n, segments_of=lambda N, T, g: (N - 1) // T // g * g,
            offset_of=lambda b, m, N, B, T: (m * B + b) * T),
        # every segment of the pass, whole groups or not
        lambda data, B, T, g, n: _stream_batch(
            data, B, T, g, n, segments_of=lambda N, T, g: (N - 1) // T,
            offset_of=lambda b, m, N, B, T: b * N + m * T),
        # segments of T tokens, forgetting the target one past the last
        lambda data, B, T, g, n: _stream_batch(
            data, B, T, g, n, segments_of=lambda N, T, g: N // T // g * g,
            offset_of=lambda b, m, N, B, T: b * N + m * T),
    ],
}
