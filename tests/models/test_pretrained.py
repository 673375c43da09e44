"""Hugging Face model folders: config mapping and refusals, the weight-name mapping both ways on
tiny random folders written with Nima's own safetensors code, shards, and — when `transformers`
is installed — the same logits as `transformers`' GPT-2 and LLaMA from the same folder."""

from __future__ import annotations

import json

import numpy as np
import pytest

import nima
from nima.models import GPT, GPTConfig, count_parameters
from nima.models.pretrained import (
    PretrainedError,
    _llama_config,
    config_from_hf,
    hf_config,
    hf_state_dict,
    load_pretrained,
    read_weights,
    save_pretrained,
)
from nima.serialization import CheckpointError


def randomized(model: GPT, seed: int = 0) -> GPT:
    """Every parameter random (biases and norm gains too), so a swapped tensor shows."""
    rng = np.random.default_rng(seed)
    for p in model.parameters():
        p.data[...] = rng.standard_normal(p.shape) * 0.3
    return model.eval()


def gpt2(**overrides) -> GPT:
    fields = dict(vocab_size=40, block_size=12, n_layer=2, n_head=2, n_embd=8)
    return randomized(GPT(GPTConfig(**{**fields, **overrides})))


def llama_like(**overrides) -> GPT:
    fields = dict(vocab_size=40, block_size=12, n_layer=2, n_head=2, n_embd=8, ffn="swiglu",
                  ffn_hidden=12, norm="rmsnorm", position="rope", bias=False, tie_weights=False)
    return randomized(GPT(GPTConfig(**{**fields, **overrides})))


def ids(V: int = 40, T: int = 12) -> np.ndarray:
    return np.random.default_rng(1).integers(0, V, (2, T))


def logits(model: GPT, x: np.ndarray) -> np.ndarray:
    with nima.no_grad():
        return model(x)[0].data


# ---- config.json -------------------------------------------------------------------------------
def test_gpt2_small_from_its_config_alone() -> None:
    config = config_from_hf({"model_type": "gpt2"})  # every field at GPT2Config's default
    assert config == GPTConfig.preset("small")
    assert count_parameters(config)["total"] == 124_439_808
    medium = {"model_type": "gpt2", "n_embd": 1024, "n_layer": 24, "n_head": 16}
    assert count_parameters(config_from_hf(medium))["total"] == 354_823_168


def test_llama_config_fields() -> None:
    hf = {"model_type": "llama", "vocab_size": 32000, "hidden_size": 2048,
          "intermediate_size": 5632, "num_hidden_layers": 22, "num_attention_heads": 32,
          "num_key_value_heads": 4, "rms_norm_eps": 1e-5, "max_position_embeddings": 2048,
          "rope_theta": 10000.0, "tie_word_embeddings": False}  # TinyLlama 1.1B, 4.x style
    fields = _llama_config(hf)
    assert fields == dict(vocab_size=32000, block_size=2048, n_layer=22, n_head=32,
                          n_embd=2048, ffn="swiglu", ffn_hidden=5632, norm="rmsnorm",
                          position="rope", bias=False, tie_weights=False, norm_eps=1e-5,
                          rope_theta=10000.0, n_kv_head=4)
    v5 = {**hf, "rope_parameters": {"rope_type": "default", "rope_theta": 5e5},
          "num_key_value_heads": 32, "attention_bias": True, "mlp_bias": True}
    del v5["rope_theta"]
    fields = _llama_config(v5)
    assert fields["rope_theta"] == 5e5 and "n_kv_head" not in fields
    assert fields["attn_bias"] is True and fields["mlp_bias"] is True


@pytest.mark.parametrize("hf, field", [
    ({"model_type": "bert"}, "model_type"),
    ({}, "model_type"),
    ({"model_type": "gpt2", "activation_function": "swish"}, "activation_function"),
    ({"model_type": "gpt2", "scale_attn_by_inverse_layer_idx": True},
     "scale_attn_by_inverse_layer_idx"),
    ({"model_type": "gpt2", "scale_attn_weights": False}, "scale_attn_weights"),
    ({"model_type": "gpt2", "add_cross_attention": True}, "add_cross_attention"),
    ({"model_type": "gpt2", "n_embd": "768"}, "n_embd"),
    ({"model_type": "gpt2", "n_layer": True}, "n_layer"),
    ({"model_type": "gpt2", "n_embd": 10, "n_head": 3}, "must be divisible by n_head=3, got 10"),
    ({"model_type": "llama", "hidden_act": "gelu"}, "hidden_act"),
    ({"model_type": "llama", "rope_scaling": {"type": "linear", "factor": 2.0}}, "rope_scaling"),
    ({"model_type": "llama", "rope_parameters": {"rope_type": "yarn"}}, "rope_parameters"),
    ({"model_type": "llama", "head_dim": 256}, "head_dim"),
    ({"model_type": "llama", "num_key_value_heads": 5}, "num_key_value_heads"),
    ({"model_type": "llama", "rms_norm_eps": "tiny"}, "rms_norm_eps"),
])
def test_unsupported_configs_name_the_field(hf: dict, field: str) -> None:
    with pytest.raises(PretrainedError, match=field):
        config_from_hf(hf)


@pytest.mark.parametrize("overrides, field", [
    (dict(position="alibi"), "position='alibi'"),
    (dict(position="sinusoidal"), "position='sinusoidal'"),
    (dict(norm_placement="post"), "norm_placement='post'"),
    (dict(embed_scale=True), "embed_scale=True"),
    (dict(attention="hybrid"), "attention='hybrid'"),
    (dict(attention="tree"), "attention='tree'"),
    (dict(memory_layers=(1,)), r"memory_layers=\[1\]"),
    (dict(echo_layers=(0,)), r"echo_layers=\[0\]"),
    (dict(recursion_depth=2), "recursion_depth=2"),
    (dict(bias=False), "bias=False"),
    (dict(ffn="swiglu"), "ffn='swiglu'"),
    (dict(norm="rmsnorm"), "norm='rmsnorm'"),
])
def test_models_without_a_hugging_face_equivalent_are_refused(tmp_path, overrides, field):
    with pytest.raises(PretrainedError, match=field):
        save_pretrained(gpt2(**overrides), tmp_path / "m")
    assert not (tmp_path / "m" / "config.json").exists()


# ---- the name mapping, both ways ---------------------------------------------------------------
@pytest.mark.parametrize("tied", [True, False])
def test_gpt2_names_and_layouts(tmp_path, tied: bool) -> None:
    model = gpt2(tie_weights=tied)
    save_pretrained(model, tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert (config["model_type"], config["n_inner"], config["activation_function"]) == \
        ("gpt2", None, "gelu_new")
    hf = nima.load(tmp_path / "model.safetensors")
    assert nima.serialization.load_metadata(tmp_path / "model.safetensors")["format"] == "pt"
    sd = model.state_dict()
    expected = {"transformer.wte.weight", "transformer.wpe.weight", "transformer.ln_f.weight",
                "transformer.ln_f.bias"} | ({"lm_head.weight"} if not tied else set())
    for i in range(2):
        for name in ("ln_1", "attn.c_attn", "attn.c_proj", "ln_2", "mlp.c_fc", "mlp.c_proj"):
            expected |= {f"transformer.h.{i}.{name}.weight", f"transformer.h.{i}.{name}.bias"}
    assert set(hf) == expected
    # Conv1D weights are (in, out): the transpose of Nima's Linear (out, in)
    assert hf["transformer.h.1.attn.c_attn.weight"].shape == (8, 24)
    np.testing.assert_array_equal(hf["transformer.h.1.attn.c_attn.weight"],
                                  sd["blocks.1.attn.qkv.weight"].T)
    np.testing.assert_array_equal(hf["transformer.h.0.mlp.c_proj.weight"],
                                  sd["blocks.0.ffn.proj.weight"].T)
    np.testing.assert_array_equal(hf["transformer.h.0.attn.c_attn.bias"],
                                  sd["blocks.0.attn.qkv.bias"])
    np.testing.assert_array_equal(hf["transformer.ln_f.weight"], sd["ln_f.weight"])
    back = load_pretrained(tmp_path)
    assert back.config == model.config
    for name, value in back.state_dict().items():
        np.testing.assert_array_equal(value, sd[name], err_msg=name)
    assert (back.lm_head.weight is back.wte.weight) == tied
    np.testing.assert_array_equal(logits(back, ids()), logits(model, ids()))


def test_hand_built_gpt2model_folder(tmp_path) -> None:
    # GPT2Model's names (no "transformer." prefix) and the causal-mask buffers older
    # checkpoints hold, written with Nima's own safetensors writer
    rng = np.random.default_rng(2)
    C, V, T = 4, 10, 6
    tensors = {"wte.weight": rng.standard_normal((V, C)),
               "wpe.weight": rng.standard_normal((T, C)),
               "ln_f.weight": rng.standard_normal(C), "ln_f.bias": rng.standard_normal(C),
               "h.0.attn.bias": np.tril(np.ones((1, 1, T, T))),
               "h.0.attn.masked_bias": np.array(-1e4)}
    for name, shape in (("ln_1", (C,)), ("attn.c_attn", (C, 3 * C)), ("attn.c_proj", (C, C)),
                        ("ln_2", (C,)), ("mlp.c_fc", (C, 4 * C)), ("mlp.c_proj", (4 * C, C))):
        tensors[f"h.0.{name}.weight"] = rng.standard_normal(shape)
        tensors[f"h.0.{name}.bias"] = rng.standard_normal(shape[-1])
    tensors = {k: v.astype(np.float16) for k, v in tensors.items()}  # any float dtype reads
    nima.save(tensors, tmp_path / "model.safetensors")
    (tmp_path / "config.json").write_text(json.dumps(
        {"model_type": "gpt2", "vocab_size": V, "n_positions": T, "n_embd": C, "n_layer": 1,
         "n_head": 2}))
    model = load_pretrained(tmp_path, dtype=np.float64)
    assert model.wte.weight.dtype == np.float64 and not model.training
    np.testing.assert_array_equal(model.blocks[0].attn.qkv.weight.data,
                                  tensors["h.0.attn.c_attn.weight"].T)
    np.testing.assert_array_equal(model.blocks[0].ffn.fc.bias.data, tensors["h.0.mlp.c_fc.bias"])
    np.testing.assert_array_equal(model.wpe.weight.data, tensors["wpe.weight"])


def test_llama_names_and_layouts(tmp_path) -> None:
    model = llama_like()
    save_pretrained(model, tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert {k: config[k] for k in ("model_type", "num_key_value_heads", "head_dim",
                                   "intermediate_size", "rms_norm_eps", "rope_theta",
                                   "tie_word_embeddings", "attention_bias", "mlp_bias")} == \
        {"model_type": "llama", "num_key_value_heads": 2, "head_dim": 4, "intermediate_size": 12,
         "rms_norm_eps": model.blocks[0].ln_1.eps, "rope_theta": 10000.0,
         "tie_word_embeddings": False, "attention_bias": False, "mlp_bias": False}
    assert config["rope_parameters"] == {"rope_type": "default", "rope_theta": 10000.0}
    hf = nima.load(tmp_path / "model.safetensors")
    sd = model.state_dict()
    layer = "model.layers.1."
    assert set(hf) == {"model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"} | {
        f"model.layers.{i}.{n}.weight" for i in range(2) for n in (
            "input_layernorm", "post_attention_layernorm", "self_attn.q_proj", "self_attn.k_proj",
            "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj",
            "mlp.down_proj")}
    q, k, v = np.split(sd["blocks.1.attn.qkv.weight"], 3)  # Nima stacks q, k, v
    for name, part in (("q_proj", q), ("k_proj", k), ("v_proj", v)):
        np.testing.assert_array_equal(hf[f"{layer}self_attn.{name}.weight"], part)
    gate, up = np.split(sd["blocks.1.ffn.fc.weight"], 2)  # and the gate before the value
    np.testing.assert_array_equal(hf[f"{layer}mlp.gate_proj.weight"], gate)
    np.testing.assert_array_equal(hf[f"{layer}mlp.up_proj.weight"], up)
    np.testing.assert_array_equal(hf[f"{layer}mlp.down_proj.weight"],
                                  sd["blocks.1.ffn.proj.weight"])
    np.testing.assert_array_equal(hf["model.norm.weight"], sd["ln_f.weight"])
    tied = llama_like(tie_weights=True)
    assert "lm_head.weight" not in hf_state_dict(tied)


@pytest.mark.parametrize("tied", [True, False])
def test_llama_folder_loads_back(tmp_path, tied: bool) -> None:
    model = llama_like(tie_weights=tied)
    save_pretrained(model, tmp_path)
    back = load_pretrained(tmp_path)
    for name, value in back.state_dict().items():
        np.testing.assert_array_equal(value, model.state_dict()[name], err_msg=name)
    np.testing.assert_array_equal(logits(back, ids()), logits(model, ids()))


# ---- shards and files --------------------------------------------------------------------------
def test_sharded_save_and_load(tmp_path) -> None:
    model = gpt2(tie_weights=False)
    save_pretrained(model, tmp_path, max_shard_size=1500)
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    shards = sorted(p.name for p in tmp_path.glob("model-*.safetensors"))
    assert len(shards) > 2 and shards[0] == f"model-00001-of-{len(shards):05d}.safetensors"
    assert sorted(set(index["weight_map"].values())) == shards
    assert index["metadata"]["total_size"] == sum(v.nbytes for v in hf_state_dict(model).values())
    for shard in shards:  # each within the limit, unless one tensor alone is larger
        tensors = nima.load(tmp_path / shard)
        assert sum(t.nbytes for t in tensors.values()) <= 1500 or len(tensors) == 1
    assert not (tmp_path / "model.safetensors").exists()
    np.testing.assert_array_equal(logits(load_pretrained(tmp_path), ids()), logits(model, ids()))
    # saving again unsharded removes the shards and the index: the folder holds one model
    other = gpt2(tie_weights=False)
    randomized(other, seed=5)
    save_pretrained(other, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
    np.testing.assert_array_equal(logits(load_pretrained(tmp_path), ids()), logits(other, ids()))


def test_bad_folders_are_refused(tmp_path) -> None:
    with pytest.raises(PretrainedError, match=r"config\.json: no such file"):
        load_pretrained(tmp_path)
    save_pretrained(gpt2(), tmp_path / "good")
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "config.json").write_text((tmp_path / "good" / "config.json").read_text())
    (tmp_path / "bin" / "pytorch_model.bin").write_bytes(b"\x80\x02}q\x00.")
    with pytest.raises(PretrainedError, match=r"pytorch_model\.bin is a pickle"):
        load_pretrained(tmp_path / "bin")
    (tmp_path / "bin" / "config.json").write_text("[1, 2]")
    with pytest.raises(PretrainedError, match="expected a JSON object"):
        load_pretrained(tmp_path / "bin")


@pytest.mark.parametrize("change, message", [
    (lambda t: t.pop("transformer.h.1.ln_2.bias"), r"missing tensor\(s\) \['transformer.h.1.ln_2"),
    (lambda t: t.update({"transformer.h.2.ln_1.weight": np.ones(8)}), "unexpected tensor"),
    (lambda t: t.update({"transformer.wpe.weight": np.ones((13, 8))}), "wpe.weight: checkpoint"),
])
def test_weights_that_do_not_fit_the_config(tmp_path, change, message) -> None:
    model = gpt2()
    save_pretrained(model, tmp_path)
    tensors = nima.load(tmp_path / "model.safetensors")
    change(tensors)
    nima.save(tensors, tmp_path / "model.safetensors")
    with pytest.raises(PretrainedError, match=message):
        load_pretrained(tmp_path)


def test_bad_shards_are_refused(tmp_path) -> None:
    save_pretrained(gpt2(), tmp_path, max_shard_size=1500)
    index_path = tmp_path / "model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    first, second = sorted(set(index["weight_map"].values()))[:2]
    name = next(n for n, file in index["weight_map"].items() if file == first)

    def refused(file: str, error: type, message: str) -> None:
        index_path.write_text(json.dumps({**index, "weight_map": {**index["weight_map"],
                                                                   name: file}}))
        with pytest.raises(error, match=message):
            read_weights(tmp_path)

    refused(second, PretrainedError, "holds other tensors than")  # not where it is
    refused("../../etc/passwd", PretrainedError, "weight_map must map tensor names to shard")
    refused("model-00009-of-00009.safetensors", PretrainedError, "which is not in the folder")
    (tmp_path / first).write_bytes((tmp_path / first).read_bytes()[:-3])
    refused(first, CheckpointError, first)


def test_max_shard_size_is_checked(tmp_path) -> None:
    with pytest.raises(ValueError, match="max_shard_size must be a positive"):
        save_pretrained(gpt2(), tmp_path, max_shard_size=0)


# ---- against transformers (optional) -----------------------------------------------------------
@pytest.fixture(scope="module")
def hf():
    pytest.importorskip("torch")
    return pytest.importorskip("transformers")


def hf_logits(model, x: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        return model(torch.tensor(x)).logits.numpy()


GPT2_CASES = {
    "gpt2": {},
    "untied head, relu": dict(tie_word_embeddings=False, activation_function="relu"),
    "n_inner": dict(n_inner=20),
    "exact gelu": dict(activation_function="gelu"),
    "eps 1e-6": dict(layer_norm_epsilon=1e-6),
}


@pytest.mark.parametrize("overrides", GPT2_CASES.values(), ids=GPT2_CASES.keys())
def test_gpt2_logits_equal_transformers(tmp_path, hf, overrides) -> None:
    import torch

    torch.manual_seed(0)
    config = hf.GPT2Config(vocab_size=40, n_positions=12, n_embd=8, n_layer=2, n_head=2,
                           bos_token_id=0, eos_token_id=0, **overrides)
    reference = hf.GPT2LMHeadModel(config).double().eval()
    reference.save_pretrained(tmp_path / "hf")
    model = load_pretrained(tmp_path / "hf", dtype=np.float64)
    x = ids()
    np.testing.assert_allclose(logits(model, x), hf_logits(reference, x), rtol=0, atol=1e-12)
    # and back: Nima's folder loads in transformers with the same logits
    save_pretrained(model, tmp_path / "nima")
    again = hf.GPT2LMHeadModel.from_pretrained(tmp_path / "nima").eval()
    assert again.dtype == torch.float64
    np.testing.assert_array_equal(hf_logits(again, x), hf_logits(reference, x))


LLAMA_CASES = {
    "llama": {},
    "tied head": dict(tie_word_embeddings=True),
    "grouped-query": dict(num_attention_heads=4, num_key_value_heads=2),
    "multi-query": dict(num_attention_heads=4, num_key_value_heads=1),
    "rope_theta, eps": dict(rope_theta=5e5, rms_norm_eps=1e-5),
    "biases": dict(attention_bias=True, mlp_bias=True),
}


@pytest.mark.parametrize("overrides", LLAMA_CASES.values(), ids=LLAMA_CASES.keys())
def test_llama_logits_equal_transformers(tmp_path, hf, overrides) -> None:
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    fields = dict(vocab_size=40, hidden_size=16, intermediate_size=24, num_hidden_layers=2,
                  num_attention_heads=2, max_position_embeddings=12, bos_token_id=0,
                  eos_token_id=0, pad_token_id=None)
    reference = hf.LlamaForCausalLM(hf.LlamaConfig(**{**fields, **overrides})).double().eval()
    with torch.no_grad():  # random norm gains and biases, so that their mapping shows
        for name, p in reference.named_parameters():
            if name.endswith("norm.weight") or name.endswith(".bias"):
                p.copy_(1 + 0.3 * torch.randn_like(p) if name.endswith("weight")
                        else 0.3 * torch.randn_like(p))
    reference.save_pretrained(tmp_path / "hf")
    model = load_pretrained(tmp_path / "hf", dtype=np.float64)
    x = ids()
    # transformers computes LLaMA's RMSNorm and rotary angles in float32 even in a float64
    # model, so agreement is to float32 rounding
    np.testing.assert_allclose(logits(model, x), hf_logits(reference, x), rtol=0, atol=1e-6)
    save_pretrained(model, tmp_path / "nima")
    again = hf.LlamaForCausalLM.from_pretrained(tmp_path / "nima").eval()
    np.testing.assert_array_equal(hf_logits(again, x), hf_logits(reference, x))


def test_llama_like_nima_model_loads_in_transformers(tmp_path, hf) -> None:
    # a Nima model with LLaMA's shape, saved and read by transformers: same logits (this runs
    # without the new GPTConfig fields, since nothing is loaded back into Nima)
    model = llama_like(n_embd=16, n_head=4).double()
    save_pretrained(model, tmp_path)
    reference = hf.LlamaForCausalLM.from_pretrained(tmp_path).eval()
    x = ids()
    np.testing.assert_allclose(hf_logits(reference, x), logits(model, x), rtol=0, atol=1e-6)
    assert hf_config(model)["rms_norm_eps"] == reference.config.rms_norm_eps


def test_the_gpt_methods_are_the_functions(tmp_path) -> None:
    model = randomized(gpt2())
    model.save_pretrained(tmp_path / "m")
    again = GPT.from_pretrained(tmp_path / "m")
    idx = np.array([[1, 2, 3]])
    np.testing.assert_array_equal(again(idx)[0].data, model(idx)[0].data)
