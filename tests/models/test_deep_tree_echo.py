"""GPT with the Deep Tree Echo parts switched on through GPTConfig: the blocks they build, errors
naming the field and value, causality, decoding a stream beyond block_size equal to training on
its segments, the side losses in the returned loss, a float64 gradcheck of the whole model, and
the state (echo slots, memory bank) in the state dict."""

import dataclasses

import numpy as np
import pytest

import nima
from nima.models import GPT, GPTConfig
from nima.models.gpt import Block
from nima.nn import EchoLayer, MemoryAttention, RecursiveBlock, TreeAttention
from nima.nn.attention import MultiHeadAttention
from nima.nn.contrastive import info_nce


def small(**overrides) -> GPTConfig:
    fields = dict(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=8)
    return GPTConfig(**{**fields, **overrides})


def ids(B: int, T: int, V: int = 11, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, V, (B, T))


ALL = dict(attention="tree", tree_chunk=2, memory_layers=(1,), echo_layers=(1,), streams=2,
           recursion_depth=2, act=True, memory_contrastive=0.1)


# ----------------------------------------------------------------------------- structure
def test_each_field_builds_its_part_in_its_blocks() -> None:
    model = GPT(small(n_layer=4, block_size=16, attention="tree", tree_chunk=4,
                      tree_layers=(0, 1, 2), memory_layers=(3,), echo_layers=(2, 3), streams=3,
                      recursion_depth=2))
    kinds = []
    for block in model.blocks:
        inner = block.block if isinstance(block, RecursiveBlock) else block
        kinds.append((type(block).__name__, type(inner.attn).__name__, inner.echo is not None))
    assert kinds == [("RecursiveBlock", "TreeAttention", False),
                     ("RecursiveBlock", "TreeAttention", False),
                     ("Block", "TreeAttention", True),  # echo: no recursion
                     ("Block", "MemoryAttention", True)]
    assert model.blocks[3].attn.memory.keys.shape == (3, 2, 1024, 4)  # streams, heads, capacity
    assert model.blocks[2].echo.state.shape == (3, 4, 8)
    assert model.blocks[0].block.attn.levels == 1  # 4 < 16 <= 16
    config = small(attention="tree", memory_layers=(1,))
    assert config.tree_blocks == (0,) and not config.recursive_blocks and config.carries_state
    plain = GPT(small())
    assert all(type(b) is Block and type(b.attn) is MultiHeadAttention and b.echo is None
               for b in plain.blocks)


def test_act_starts_from_its_own_halting_bias() -> None:
    model = GPT(small(recursion_depth=3, act=True))
    np.testing.assert_array_equal(model.blocks[0].halt.bias.data, 1.0)


@pytest.mark.parametrize(("overrides", "message"), [
    (dict(attention="tree", tree_chunk=2, tree_levels=1),
     r"^GPTConfig.tree_levels: tree_chunk=2 with tree_levels=1 reaches 4 positions, fewer than "
     r"block_size=8; use tree_levels=2 or a larger tree_chunk, got 1"),
    (dict(attention="tree", tree_chunk=4, tree_levels=2),
     r"^GPTConfig.tree_levels: tree_chunk=4 with tree_levels=2 summarises chunks of 16 tokens, "
     r"no shorter than block_size=8 .*use tree_levels=1, got 2"),
    (dict(attention="tree", block_size=1), r"^GPTConfig.block_size: tree attention needs at "
                                           r"least 2 positions, got 1"),
    (dict(attention="tree", tree_chunk=1), r"^GPTConfig.tree_chunk: must be >= 2, got 1"),
    (dict(attention="tree", tree_gate="tanh"), r"^GPTConfig.tree_gate: must be one of"),
    (dict(tree_layers=(0,)), r"^GPTConfig.tree_layers: needs attention 'tree', got attention "
                             r"'content'"),
    (dict(attention="tree", tree_layers=(0, 2)),
     r"^GPTConfig.tree_layers: must be distinct blocks in \[0, n_layer=2\), got \[0, 2\]"),
    (dict(memory_layers=(1, 1)), r"^GPTConfig.memory_layers: must be distinct blocks"),
    (dict(echo_layers=(-1,)), r"^GPTConfig.echo_layers\[0\]: must be >= 0, got -1"),
    (dict(attention="tree", tree_layers=(0, 1), memory_layers=(1,)),
     r"^GPTConfig.memory_layers: block 1 is in tree_layers too"),
    (dict(memory_capacity=0), r"^GPTConfig.memory_capacity: must be >= 1, got 0"),
    (dict(memory_layers=(0,), memory_top_k=0), r"^GPTConfig.memory_top_k: must be >= 1, got 0"),
    (dict(memory_contrastive=0.5), r"^GPTConfig.memory_contrastive: needs memory_layers, got 0.5"),
    (dict(memory_layers=(0,), position="rope"), r"^GPTConfig.position: tree and memory "
                                                r"attention need positions added"),
    (dict(memory_layers=(0,), n_kv_head=1), r"^GPTConfig.n_kv_head: memory attention needs "
                                            r"n_kv_head = n_head, got 1"),
    (dict(attention="tree", n_kv_head=1), r"^GPTConfig.n_kv_head: attention 'tree' needs"),
    (dict(echo_slots=0), r"^GPTConfig.echo_slots: must be >= 1, got 0"),
    (dict(tbptt=0), r"^GPTConfig.tbptt: must be >= 1, got 0"),
    (dict(streams=0), r"^GPTConfig.streams: must be >= 1, got 0"),
    (dict(recursion_depth=0), r"^GPTConfig.recursion_depth: must be >= 1, got 0"),
    (dict(act=True), r"^GPTConfig.act: adaptive halting needs recursion_depth > 1"),
    (dict(recursion_depth=2, echo_layers=(0,), memory_layers=(1,)),
     r"^GPTConfig.recursion_depth: every block has an echo or memory layer.*got 2"),
    (dict(ponder_cost=-0.1), r"^GPTConfig.ponder_cost: must be >= 0, got -0.1"),
    (dict(echo_layers=(0,), gradient_checkpointing=True),
     r"^GPTConfig.gradient_checkpointing: recomputing a block would write its echo state"),
])
def test_bad_values_name_the_field_and_value(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        small(**overrides)


# ----------------------------------------------------------------------------- behaviour
@pytest.mark.parametrize("variant", [dict(attention="tree", tree_chunk=2),
                                     dict(memory_layers=(0,), streams=2),
                                     dict(echo_layers=(1,), streams=2),
                                     dict(recursion_depth=2, act=True), ALL],
                         ids=["tree", "memory", "echo", "act", "all"])
def test_changing_the_future_leaves_the_past_unchanged(variant: dict) -> None:
    nima.manual_seed(1)
    model = GPT(small(**variant)).double().eval()
    a = ids(2, 8)
    b = a.copy()
    b[:, 5:] = (b[:, 5:] + 1 + ids(2, 3, 9, seed=3)) % 11
    la = model(a)[0].data
    model.reset_state()  # the second segment would read the first one's state
    lb = model(b)[0].data
    np.testing.assert_array_equal(la[:, :5], lb[:, :5])
    assert np.abs(la[:, 5:] - lb[:, 5:]).min() > 0


def stream_logits(model: GPT, seq: np.ndarray) -> np.ndarray:
    """The training path: consecutive segments of block_size tokens, state carried."""
    T = model.config.block_size
    return np.concatenate([model(seq[:, i:i + T])[0].data for i in range(0, seq.shape[1], T)], 1)


@pytest.mark.parametrize("variant", [dict(memory_layers=(0,), memory_capacity=5, streams=2),
                                     dict(echo_layers=(1,), streams=2),
                                     dict(ALL, memory_top_k=3)],
                         ids=["memory", "echo", "all"])
def test_decoding_a_stream_beyond_block_size_equals_training_on_its_segments(
        variant: dict) -> None:
    """24 tokens, three segments of 8: token by token through the caches (the window emptied by
    `next_segment` after each full segment) gives the logits of the training forward, whose
    echo state and memory bank carry over from segment to segment."""
    nima.manual_seed(4)
    model = GPT(small(**variant)).double().eval()
    seq = ids(2, 24)
    with nima.no_grad():
        full = stream_logits(model, seq)
        caches = model.new_caches()
        steps = []
        for t in range(24):
            if caches[0].length == 8:
                model.next_segment(caches)
            steps.append(model(seq[:, t:t + 1], caches=caches)[0].data)
    np.testing.assert_allclose(np.concatenate(steps, 1), full, rtol=1e-11, atol=1e-12)
    model.reset_state()
    again = stream_logits(model, seq)
    np.testing.assert_array_equal(again, full)  # reset_state: the streams start afresh
    # the third segment draws on the first: without the carried state it differs
    model.reset_state()
    alone = model(seq[:, 16:])[0].data
    assert np.abs(alone - full[:, 16:]).max() > 1e-6


def test_side_losses_join_the_training_loss_only() -> None:
    """Training mode: cross-entropy + ponder_cost * mean ponder + memory_contrastive * InfoNCE,
    each recomputed here from the modules; eval mode: the cross-entropy alone."""
    nima.manual_seed(6)
    model = GPT(small(**ALL)).double()
    x, y = ids(2, 8), ids(2, 8, seed=1)
    model.eval()
    logits, loss = model(x, y)
    ce = nima.functional.cross_entropy(logits, y).item()
    assert loss.item() == pytest.approx(ce, rel=1e-12)
    model.reset_state()
    model.train()
    memory = model.blocks[1].attn
    memory.memory.write(np.random.default_rng(2).standard_normal((2, 2, 3, 4)),
                        np.random.default_rng(3).standard_normal((2, 2, 3, 4)))
    bank_keys = memory.memory.read()[0]
    logits, loss = model(x, y)
    ce = nima.functional.cross_entropy(logits, y).item()
    ponder = model.blocks[0].ponder
    assert 1.0 < ponder <= 3.0  # N + R, at most depth + 1
    h = model.blocks[1].ln_1(model.blocks[0](model.embed(x)))  # what the memory layer read
    q, k, _ = memory._project(h, None, None)
    nce = info_nce(q, k, bank_keys, memory.temperature).item()
    assert loss.item() == pytest.approx(ce + 0.01 * ponder + 0.1 * nce, rel=1e-9)
    loss.backward()
    assert np.abs(model.blocks[0].halt.weight.grad).sum() > 0  # the ponder cost's gradient


def test_model_gradcheck_with_every_part() -> None:
    """The whole model in float64, loss (with its side losses) included: tree attention,
    recursion with ACT, memory with InfoNCE, an echo layer whose state comes from a previous
    segment (kept in the graph: tbptt 2)."""
    nima.manual_seed(7)
    model = GPT(small(**ALL, tbptt=2, tree_pooling="attention")).double().train()
    model.blocks[1].attn.write_memory = False
    memory = model.blocks[1].attn.memory
    memory.write(np.random.default_rng(2).standard_normal((2, 2, 3, 4)),
                 np.random.default_rng(3).standard_normal((2, 2, 3, 4)))
    first, second, targets = ids(2, 8), ids(2, 8, seed=1), ids(2, 8, seed=2)
    echo = model.blocks[1].echo
    tree = model.blocks[0].block.attn
    checked = [model.wte.weight, tree.qkv.weight, tree.gate_logit, tree.pool.query,
               model.blocks[0].step_embedding, model.blocks[0].halt.weight,
               model.blocks[1].attn.qkv.weight, model.blocks[1].attn.gate_logit,
               echo.initial, echo.gate.weight, echo.write.kv.weight, echo.read.q.weight]
    for p in checked:  # away from zero, so every path carries gradient
        p.data[...] = np.random.default_rng(p.size).standard_normal(p.shape) * 0.3

    def f(*ps):
        echo.reset()
        model(first)  # segment 1 writes the echo state, in the graph
        return model(second, targets)[1]

    assert nima.gradcheck(f, checked)


def test_the_state_is_in_the_state_dict_and_a_copy_resumes_the_stream(tmp_path) -> None:
    nima.manual_seed(8)
    config = small(**ALL)
    model = GPT(config).eval()
    seq = ids(2, 24)
    model(seq[:, :8]), model(seq[:, 8:16])
    state = model.state_dict()
    assert {"blocks.1.attn.memory.keys", "blocks.1.attn.memory.count", "blocks.1.echo.state",
            "blocks.1.echo.segments"} <= set(state)
    assert int(state["blocks.1.attn.memory.count"]) == 16 and int(
        state["blocks.1.echo.segments"]) == 2
    nima.save(state, tmp_path / "model.safetensors")
    twin = GPT(config).eval()
    twin.load_state_dict(nima.load(tmp_path / "model.safetensors"))
    np.testing.assert_array_equal(twin(seq[:, 16:])[0].data, model(seq[:, 16:])[0].data)


def test_memory_and_echo_hold_one_row_per_stream() -> None:
    model = GPT(small(echo_layers=(0,), streams=3))
    with pytest.raises(ValueError, match="x has batch 2, but the carried state holds "
                                         "batch_size=3 streams"):
        model(ids(2, 8))
    caches = model.new_caches()  # decoding keeps its own state, of any batch
    assert model(ids(2, 8), caches=caches)[0].shape == (2, 8, 11)


def test_parts_in_a_preset_and_replace() -> None:
    config = GPTConfig.preset("baby", attention="tree", tree_chunk=8)
    assert config.tree_blocks == (0, 1, 2, 3)
    with pytest.raises(ValueError, match=r"^GPTConfig\.tree_levels"):
        dataclasses.replace(config, tree_levels=3)
    assert isinstance(GPT(dataclasses.replace(config, n_layer=1)).blocks[0].attn, TreeAttention)
    assert isinstance(GPT(small(memory_layers=(0,))).blocks[0].attn, MemoryAttention)
    assert isinstance(GPT(small(echo_layers=(0,))).blocks[0].echo, EchoLayer)
