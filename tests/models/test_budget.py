"""The parameter budget: GPT-2's exact counts, the formula against instantiated models for every
architectural choice, the Micro-Transformer table, `size_mb`, `explore`, and `nima params`."""

import dataclasses
import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nima import cli
from nima.models import GPT, GPTConfig, count_parameters, explore, size_mb
from nima.models.budget import MICRO_BASE, MICRO_TRANSFORMER


def test_gpt2_small_and_medium_exact() -> None:
    """GPT-2's published sizes, tied embedding counted once (instantiating them would take
    0.5 and 1.4 GB, so the formula is checked against instantiated models below)."""
    assert count_parameters(GPTConfig.preset("small"))["total"] == 124_439_808
    assert count_parameters(GPTConfig.preset("medium"))["total"] == 354_823_168


def test_breakdown_of_gpt2_small() -> None:
    parts = count_parameters(GPTConfig.preset("small"))
    C = 768
    assert parts["embedding"] == 50257 * C and parts["position"] == 1024 * C
    assert parts["attention"] == 4 * C * C + 4 * C
    assert parts["ffn"] == 8 * C * C + 5 * C
    assert parts["norms"] == 4 * C and parts["final_norm"] == 2 * C and parts["head"] == 0
    assert parts["block"] == 12 * C * C + 13 * C and parts["blocks"] == 12 * parts["block"]
    parts_sum = sum(parts[k] for k in ("embedding", "position", "blocks", "final_norm", "head"))
    assert parts["total"] == parts_sum


def test_baby_and_tiny_presets() -> None:
    """nanoGPT's baby GPT, and the ≈10M model of width 256 (8,192,000 of it the token table)."""
    config = GPTConfig.preset("baby")
    assert count_parameters(config)["total"] == GPT(config).num_parameters() == 804_096
    config = GPTConfig.preset("tiny")
    parts = count_parameters(config)
    assert parts["total"] == GPT(config).num_parameters() == 11_482_624
    assert parts["embedding"] == 32_000 * 256


CHOICES = list(itertools.product(
    ["gelu", "relu", "glu", "swiglu"], ["layernorm", "rmsnorm"], ["pre", "post"],
    ["learned", "sinusoidal", "rope", "alibi"], [True, False], [True, False]))


@pytest.mark.parametrize(("ffn", "norm", "placement", "position", "bias", "tie"), CHOICES)
def test_formula_matches_instantiation_for_every_choice(ffn, norm, placement, position, bias,
                                                        tie) -> None:
    config = GPTConfig(vocab_size=13, block_size=6, n_layer=2, n_head=2, n_embd=8, ffn=ffn,
                       norm=norm, norm_placement=placement, position=position, bias=bias,
                       tie_weights=tie)
    assert count_parameters(config)["total"] == GPT(config).num_parameters()


@pytest.mark.parametrize("attention", ["content", "reweight", "hybrid"])
@pytest.mark.parametrize("bias", [True, False])
def test_formula_matches_instantiation_for_every_attention(attention: str, bias: bool) -> None:
    config = GPTConfig(vocab_size=13, block_size=6, n_layer=2, n_head=2, n_embd=8,
                       attention=attention, bias=bias)
    assert count_parameters(config)["total"] == GPT(config).num_parameters()


@given(n_layer=st.integers(1, 3), n_head=st.integers(1, 4), head_dim=st.sampled_from([2, 4, 6]),
       vocab=st.integers(2, 40), block=st.integers(1, 12),
       hidden=st.one_of(st.none(), st.integers(1, 20)),
       ffn=st.sampled_from(["gelu", "relu", "glu", "swiglu"]),
       attention=st.sampled_from(["content", "reweight", "hybrid"]),
       position=st.sampled_from(["learned", "sinusoidal", "rope", "alibi"]),
       bias=st.booleans(), tie=st.booleans(), data=st.data())
def test_formula_matches_instantiation_on_random_shapes(n_layer, n_head, head_dim, vocab, block,
                                                        hidden, ffn, attention, position, bias,
                                                        tie, data) -> None:
    kv = [d for d in range(1, n_head + 1) if n_head % d == 0] if attention == "content" else []
    config = GPTConfig(vocab_size=vocab, block_size=block, n_layer=n_layer, n_head=n_head,
                       n_embd=n_head * head_dim, ffn=ffn, ffn_hidden=hidden, attention=attention,
                       position=position, bias=bias, tie_weights=tie,
                       n_kv_head=data.draw(st.sampled_from([None, *kv])),
                       attn_bias=data.draw(st.sampled_from([None, True, False])),
                       mlp_bias=data.draw(st.sampled_from([None, True, False])))
    assert count_parameters(config)["total"] == GPT(config).num_parameters()


@given(n_layer=st.integers(1, 4), n_head=st.integers(1, 3), head_dim=st.sampled_from([2, 4]),
       block=st.integers(2, 20), chunk=st.integers(2, 5),
       norm=st.sampled_from(["layernorm", "rmsnorm"]), bias=st.booleans(),
       attn_bias=st.sampled_from([None, True, False]),
       gate=st.sampled_from(["sigmoid", "softmax"]), pooling=st.sampled_from(["mean", "attention"]),
       slots=st.integers(1, 5), depth=st.integers(1, 3), act=st.booleans(), data=st.data())
def test_formula_matches_instantiation_with_the_deep_tree_echo_parts(
        n_layer, n_head, head_dim, block, chunk, norm, bias, attn_bias, gate, pooling, slots,
        depth, act, data) -> None:
    """Tree, memory and echo layers on drawn blocks, recursion with or without ACT."""
    blocks = list(range(n_layer))
    memory = data.draw(st.lists(st.sampled_from(blocks), unique=True))
    echo = data.draw(st.lists(st.sampled_from(blocks), unique=True))
    free = [i for i in blocks if i not in memory]
    tree = data.draw(st.one_of(st.none(), st.lists(st.sampled_from(free), unique=True))) \
        if free else None
    if depth > 1 and not set(blocks) - set(memory) - set(echo):
        depth = 1  # no block could recurse
    config = GPTConfig(vocab_size=7, block_size=block, n_layer=n_layer, n_head=n_head,
                       n_embd=n_head * head_dim, norm=norm, bias=bias, attn_bias=attn_bias,
                       attention=data.draw(st.sampled_from(["content", "tree"])) if tree is None
                       else "tree", tree_layers=tree, tree_chunk=chunk, tree_gate=gate,
                       tree_pooling=pooling, memory_layers=memory, echo_layers=echo,
                       echo_slots=slots, recursion_depth=depth, act=act and depth > 1)
    assert count_parameters(config)["total"] == GPT(config).num_parameters()


def test_breakdown_names_each_part(capsys) -> None:
    cli.main(["params", "--preset", "baby", "--attention", "tree", "--tree-chunk", "8",
              "--tree-layers", "0", "1", "2", "--memory-layers", "3", "--echo-layers", "3",
              "--recursion-depth", "2", "--act", "--instantiate"])
    out = capsys.readouterr().out
    for row in ("| tree attention (3 x 65,544) |", "| memory attention (1 x 65,540) |",
                "| echo layers (1 x 164,480) |", "| recursion (3 x 385) |"):
        assert row in out, row
    assert "agrees with the formula" in out and "| attention (" not in out


def test_gpt2_shaped_models_agree_when_instantiated() -> None:
    """GPT-2 small's exact shape with fewer layers and a smaller vocabulary and context: the
    same per-block formula the 124M count relies on, checked on real parameters."""
    config = GPTConfig.preset("small", n_layer=1, vocab_size=1000, block_size=64)
    model = GPT(config)
    parts = count_parameters(config)
    assert model.num_parameters() == parts["total"]
    block = sum(p.size for p in model.blocks[0].parameters())
    assert block == parts["block"] == 7_087_872


def test_micro_transformer_configurations() -> None:
    """The design's three configs, with GPT-2's conventions (biases in every Linear and
    LayerNorm, pre-norm with a final LayerNorm, learned positions, tied head)."""
    expected = {"Wide & Shallow": (2_443_904, "2.44M"), "Narrow & Deep": (2_290_176, "2.29M"),
                "Balanced": (2_428_640, "2.43M")}
    for name, (config, tradeoffs) in MICRO_TRANSFORMER.items():
        total = count_parameters(config)["total"]
        assert (total, f"{total / 1e6:.2f}M") == expected[name], name
        assert total == GPT(config).num_parameters()
        assert tradeoffs
    wide = MICRO_TRANSFORMER["Wide & Shallow"][0]
    assert (wide.vocab_size, wide.block_size, wide.n_embd, wide.n_head, wide.n_layer,
            wide.ffn_hidden, wide.tie_weights, wide.position) == \
        (5000, 512, 192, 6, 4, 512, True, "learned")


def test_size_mb() -> None:
    assert size_mb(124_439_808) == pytest.approx(497.759232)
    assert size_mb(1_000_000, "float16") == 2.0
    assert size_mb(1_000_000, "float64") == 8.0


def test_explore() -> None:
    grid = {"n_layer": [4, 5, 6], "n_embd": [128, 160, 192], "head_dim": [32],
            "ffn_hidden": [512, 640, 768]}
    found = explore(grid, (2.2e6, 2.5e6), base=MICRO_BASE)
    totals = [t for _, t in found]
    assert totals == sorted(totals) and all(2.2e6 <= t <= 2.5e6 for t in totals)
    shapes = {(c.n_layer, c.n_embd, c.n_head, c.ffn_hidden) for c, _ in found}
    assert {(4, 192, 6, 512), (6, 128, 4, 768), (5, 160, 5, 640)} <= shapes
    everything = explore(grid, (0, 1e12), base=MICRO_BASE)
    assert len(everything) == 27
    inside = [(c, t) for c, t in everything if 2.2e6 <= t <= 2.5e6]
    assert sorted(inside, key=lambda p: p[1]) == found


def test_explore_skips_invalid_combinations_and_checks_its_arguments() -> None:
    found = explore({"n_embd": [8, 10, 12], "n_head": [4]}, (0, 1e9),
                    base=GPTConfig(vocab_size=10, block_size=4, n_layer=1, n_head=1, n_embd=8))
    assert [c.n_embd for c, _ in found] == [8, 12]  # 10 is not divisible by 4
    with pytest.raises(ValueError, match=r"unknown GPTConfig field.*layers"):
        explore({"layers": [1]}, (0, 1))
    with pytest.raises(ValueError, match="low <= high"):
        explore({"n_layer": [1]}, (2, 1))
    with pytest.raises(ValueError, match="not both"):
        explore({"n_head": [1], "head_dim": [8]}, (0, 1))


# ----------------------------------------------------------------------------- nima params
def test_cli_preset(capsys) -> None:
    cli.main(["params", "--preset", "baby", "--instantiate"])
    out = capsys.readouterr().out
    assert "total: 804,096 parameters" in out and "agrees with the formula" in out


def test_cli_gpt2_small_by_flags(capsys) -> None:
    cli.main(["params", "--n-layer", "12", "--n-embd", "768", "--n-head", "12"])
    out = capsys.readouterr().out
    assert "total: 124,439,808 parameters = 497.8 MB in float32" in out


def test_cli_micro(capsys) -> None:
    cli.main(["params", "--micro"])
    out = capsys.readouterr().out
    for name, count in [("Wide & Shallow", "2.44M"), ("Narrow & Deep", "2.29M"),
                        ("Balanced", "2.43M")]:
        line = next(line for line in out.splitlines() if line.startswith(f"| {name} "))
        assert count in line


def test_cli_explore(capsys) -> None:
    cli.main(["params", "--explore", "--target", "2.0M-2.5M", "--top", "100"])
    out = capsys.readouterr().out
    assert "configurations with 2,000,000 to 2,500,000 parameters" in out
    assert "| 2,443,904 | 2.44M |" in out and "| 2,290,176 | 2.29M |" in out
    cli.main(["params", "--explore", "--target", "1M-3M", "--grid", "n_layer=4,6",
              "--n-embd", "128"])
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| #")]
    assert rows and all("| 128 |" in row for row in rows)


@pytest.mark.parametrize(("argv", "message"), [
    (["--n-embd", "100"], "GPTConfig.n_embd: must be divisible by n_head=12, got 100"),
    (["--explore", "--target", "2M"], "a range looks like 2.0M-2.5M"),
    (["--explore", "--target", "5M-1M"], "a range goes from low to high, got '5M-1M'"),
    (["--explore", "--grid", "head_dim=0"], "--grid head_dim: values must be integers >= 1"),
    (["--explore", "--grid", "n_layer=a"], "--grid n_layer: values must be integers"),
    (["--explore", "--top", "-1"], "--top: expected an integer >= 1, got '-1'"),
    (["--ffn", "mlp"], "GPTConfig.ffn: must be one of 'gelu', 'relu', 'glu', 'swiglu'"),
    (["--n-layer", "1e8"], "argument --n-layer: invalid int value: '1e8'"),
])
def test_cli_errors_are_one_line(capsys, argv, message) -> None:
    with pytest.raises(SystemExit) as done:
        cli.main(["params", *argv])
    shown = str(done.value.code) if isinstance(done.value.code, str) else \
        capsys.readouterr().err.strip().splitlines()[-1]
    assert message in shown


def test_config_fields_are_all_in_the_cli(capsys) -> None:
    """Every field of GPTConfig can be set from `nima params`, its choices and default in the
    help."""
    cli.main(["params", "--preset", "baby", "--n-kv-head", "2", "--ffn", "swiglu",
              "--no-bias", "--norm-eps", "1e-6", "--rope-theta", "5e5", "--position", "rope"])
    out = capsys.readouterr().out
    assert "n_kv_head=2" in out and "ffn='swiglu'" in out and "rope_theta=500000.0" in out
    with pytest.raises(SystemExit):
        cli.main(["params", "--help"])
    shown = capsys.readouterr().out
    for f in dataclasses.fields(GPTConfig):
        assert "--" + f.name.replace("_", "-") in shown, f.name
    assert "gelu, relu, glu, swiglu" in shown
