r"""Exercises of the Deep Tree Echo model page (docs/deep_tree_echo.md)."""

import tempfile
from pathlib import Path

import numpy as np

import nima
from exercises import close, equal
from nima.data.dataset import TokenDataset
from nima.models import GPT, GPTConfig
from nima.models.gpt import Block
from nima.nn import MemoryAttention, RecursiveBlock, TreeAttention
from nima.training.batches import StreamBatches


def block_parts(n_layer: int, attention: str, tree_layers: tuple[int, ...] | None,
                memory_layers: tuple[int, ...], echo_layers: tuple[int, ...],
                recursion_depth: int) -> list[tuple[str, bool, bool]]:
    r"""Which part goes in which block.

    Given these fields of a valid `GPTConfig` (`attention` is `"tree"` or `"content"`), return
    one `(kind, echo, recursive)` per block: `kind` is `"memory"`, `"tree"` or `"dense"` (any
    other attention), `echo` whether the block has an echo layer, `recursive` whether it is
    applied `recursion_depth` times. With `tree_layers` None, tree attention goes where the
    rules on the page say.
    """
    raise NotImplementedError


def check_block_parts(block_parts) -> None:
    """Builds a small GPT from each of five configurations — among them the shipped shape,
    tree attention in blocks 0–2 and memory and echo in block 3 — and reads each block's part
    off the model."""
    for n_layer, attention, tree, memory, echo, depth in [
            (4, "tree", None, (3,), (3,), 2), (4, "tree", None, (1,), (2,), 2),
            (4, "tree", (0, 3), (), (1,), 3), (3, "content", None, (0,), (), 1),
            (2, "content", None, (), (0, 1), 1)]:
        config = GPTConfig(vocab_size=5, block_size=8, n_layer=n_layer, n_head=2, n_embd=8,
                           attention=attention, tree_layers=tree, tree_chunk=2,
                           memory_layers=memory, echo_layers=echo, recursion_depth=depth)
        expected = []
        for block in GPT(config).blocks:
            inner = block.block if isinstance(block, RecursiveBlock) else block
            kind = "memory" if isinstance(inner.attn, MemoryAttention) else "tree" if \
                isinstance(inner.attn, TreeAttention) else "dense"
            expected.append((kind, inner.echo is not None, isinstance(block, RecursiveBlock)))
        got = [(str(k), bool(e), bool(r)) for k, e, r in block_parts(
            n_layer, attention, tree, memory, echo, depth)]
        equal(got, expected, f"the blocks of n_layer={n_layer}, attention={attention!r}, "
                             f"tree_layers={tree}, memory_layers={memory}, echo_layers={echo}, "
                             f"recursion_depth={depth}")


def echo_block(block: Block, x: nima.Tensor) -> nima.Tensor:
    r"""A block with an echo layer, from its parts.

    `block` is a pre-norm `Block` with an echo layer (`block.echo`, its norm `block.ln_e`)
    besides `block.ln_1`, `block.attn`, `block.ln_2` and `block.ffn`; `x` is one segment
    `(B, T, C)`. Return the block's output from those parts (no dropout). The echo layer and
    the attention keep their own state: call each once per segment, as the block does.
    """
    raise NotImplementedError


def check_echo_block(echo_block) -> None:
    """Runs three consecutive segments through block 1 of a small float64 GPT with a memory
    layer and an echo layer there (weights drawn at random), from a fresh state, and compares
    with the block's own forward on the same segments from a fresh state."""
    nima.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=5, block_size=6, n_layer=2, n_head=2, n_embd=8,
                          memory_layers=(1,), echo_layers=(1,))).double().eval()
    block = model.blocks[1]
    rng = np.random.default_rng(0)
    for _, p in block.named_parameters():  # weights of order 1: every branch counts
        p.data[...] = rng.standard_normal(p.shape) / np.sqrt(p.shape[-1])
    segments = [nima.tensor(np.random.default_rng(i).standard_normal((1, 6, 8)))
                for i in range(3)]
    with nima.no_grad():
        model.reset_state()
        mine = [echo_block(block, x) for x in segments]
        model.reset_state()
        theirs = [block(x) for x in segments]
    for i, (a, b) in enumerate(zip(mine, theirs, strict=True), 1):
        close(a, b, f"the output for segment {i}", rtol=1e-10, atol=1e-12)


def stream_batch(data: np.ndarray, batch_size: int, block_size: int, group: int,
                 n: int) -> tuple[np.ndarray, np.ndarray]:
    r"""The batches of stream training.

    Return the inputs and targets `(batch_size, block_size)` of the `n`-th batch (from 0)
    `StreamBatches` gives for the tokens `data`: `batch_size` streams of
    $N = \lfloor \text{len}/B \rfloor$ tokens each; segment $m$ of stream $b$ has inputs
    $d_{bN + mT + t}$ and targets one token on. A pass reads the segments whose targets stay
    inside their stream, rounded down to whole groups of `group`; then the streams start over.
    """
    raise NotImplementedError


def check_stream_batch(stream_batch) -> None:
    """Compares with `StreamBatches` over a `TokenDataset` for two and a half passes, with
    streams whose length is a multiple of the segment, and groups that leave segments out."""
    with tempfile.TemporaryDirectory() as folder:
        for size, B, T, group in [(120, 3, 5, 1), (100, 2, 4, 5), (97, 4, 3, 2)]:
            data = np.random.default_rng(size).integers(0, 60000, size).astype(np.uint16)
            path = Path(folder) / f"{size}.bin"
            data.tofile(path)
            batches = StreamBatches(TokenDataset(path, "uint16"), B, T, group)
            for n in range(batches.segments * 5 // 2):
                x, y = batches.next()
                got = stream_batch(data.astype(np.int64), B, T, group, n)
                what = f"batch {n} of {B} streams, block_size={T}, group={group}"
                equal(np.shape(got[0]), x.shape, f"the shape of the inputs of {what}")
                close(np.asarray(got[0]), x, f"the inputs of {what}")
                close(np.asarray(got[1]), y, f"the targets of {what}")
