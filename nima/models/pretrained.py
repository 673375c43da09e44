r"""Hugging Face model folders: `load_pretrained(path) -> GPT` and `save_pretrained(model, path)`.

A model folder as `transformers`' `save_pretrained` writes it holds `config.json` and the weights
in safetensors: one `model.safetensors`, or shards `model-00001-of-00003.safetensors`, ... with
`model.safetensors.index.json` mapping each tensor name to its shard. Nima reads and writes these
with its own safetensors code (`nima.serialization`); `pytorch_model.bin` (a pickle) is never
read. Two families map onto `GPTConfig`:

| | GPT-2 (`"model_type": "gpt2"`) | LLaMA (`"model_type": "llama"`) |
|---|---|---|
| norm | LayerNorm, `layer_norm_epsilon` | RMSNorm, `rms_norm_eps` |
| positions | learned `wpe` | RoPE, `rope_theta` |
| FFN | GELU (`gelu_new` = tanh), `n_inner` | SwiGLU `gate`/`up`/`down`, `intermediate_size` |
| attention | fused `c_attn`, biases | `q`/`k`/`v`/`o`, `num_key_value_heads` (GQA) |
| head | tied to `wte` | tied or not (`tie_word_embeddings`) |

The weights map name by name, `h.{i}` ↔ `blocks.{i}`:

| Nima | GPT-2 (`transformer.` prefix) | LLaMA (`model.layers.{i}.` prefix) |
|---|---|---|
| `wte.weight` | `wte.weight` | `model.embed_tokens.weight` |
| `wpe.weight` | `wpe.weight` | — |
| `blocks.{i}.ln_1` | `h.{i}.ln_1` | `input_layernorm` |
| `blocks.{i}.attn.qkv` | `h.{i}.attn.c_attn`, transposed | `self_attn.{q,k,v}_proj`, stacked |
| `blocks.{i}.attn.proj` | `h.{i}.attn.c_proj`, transposed | `self_attn.o_proj` |
| `blocks.{i}.ln_2` | `h.{i}.ln_2` | `post_attention_layernorm` |
| `blocks.{i}.ffn.fc` | `h.{i}.mlp.c_fc`, transposed | `mlp.{gate,up}_proj`, stacked |
| `blocks.{i}.ffn.proj` | `h.{i}.mlp.c_proj`, transposed | `mlp.down_proj` |
| `ln_f` | `ln_f` | `model.norm` |
| `lm_head.weight` | (tied) | `lm_head.weight` (absent when tied) |

GPT-2's `Conv1D` layers store their weight as (in, out), the transpose of a `Linear`'s.
LLaMA's rotary embedding pairs dimension $i$ of a head with $i + d/2$ (`rotate_half`), as Nima's
`RotaryEmbedding` does, so `q_proj` and `k_proj` copy as they are; only Meta's original
checkpoints pair neighbours $(2i, 2i+1)$, and `transformers`' conversion already permuted those.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nima.models.gpt import GPT, GPTConfig
from nima.nn.feedforward import FeedForward
from nima.nn.normalization import LayerNorm, RMSNorm
from nima.nn.positional import RotaryEmbedding
from nima.serialization import CheckpointError, atomic_write_text, load, save

CONFIG, WEIGHTS, INDEX = "config.json", "model.safetensors", "model.safetensors.index.json"
_SHARD = re.compile(r"^model-\d{5}-of-\d{5}\.safetensors$")
# GELU flavours of `transformers`' ACT2FN that Nima computes: tanh approximation or exact erf
_GELU = {"gelu_new": "tanh", "gelu_pytorch_tanh": "tanh", "gelu": "none"}


class PretrainedError(ValueError):
    """A model folder Nima cannot read, or a model it cannot write as one; the message names
    the file and the field or tensor."""


# ------------------------------------------------------------------------------ config.json
def _get(hf: dict[str, Any], key: str, default: Any, kind: type | tuple[type, ...]) -> Any:
    """`hf[key]` (or `transformers`' default), checked to be of `kind`."""
    value = hf.get(key, default)
    if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
        raise PretrainedError(f"{CONFIG}: {key}={value!r} should be of type "
                              f"{getattr(kind, '__name__', kind)}")
    return value


def _refuse(key: str, value: Any, why: str) -> PretrainedError:
    return PretrainedError(f"{CONFIG}: {key}={value!r} is not supported: {why}")


# --8<-- [start:config_gpt2]
def _gpt2_config(hf: dict[str, Any]) -> dict[str, Any]:
    """`GPTConfig` fields of a GPT-2 `config.json` (missing keys take `GPT2Config`'s defaults)."""
    C = _get(hf, "n_embd", 768, int)
    act = _get(hf, "activation_function", "gelu_new", str)
    if act not in (*_GELU, "relu"):
        raise _refuse("activation_function", act, f"Nima computes {', '.join(_GELU)} and relu")
    for key, supported in (("scale_attn_weights", True), ("scale_attn_by_inverse_layer_idx",
                                                          False), ("add_cross_attention", False)):
        if _get(hf, key, supported, bool) != supported:
            raise _refuse(key, not supported, f"Nima's GPT-2 has {key}={supported}")
    fields = dict(
        vocab_size=_get(hf, "vocab_size", 50257, int),
        block_size=_get(hf, "n_positions", 1024, int),
        n_layer=_get(hf, "n_layer", 12, int), n_head=_get(hf, "n_head", 12, int), n_embd=C,
        ffn="relu" if act == "relu" else "gelu",
        ffn_hidden=_get(hf, "n_inner", None, (int, type(None))),  # None: 4C, in both
        norm="layernorm", position="learned", bias=True,
        tie_weights=_get(hf, "tie_word_embeddings", True, bool),
    )
    # GPTConfig's defaults are GPT-2's: only departures are passed
    eps = _get(hf, "layer_norm_epsilon", 1e-5, (int, float))
    if eps != 1e-5:
        fields["norm_eps"] = float(eps)
    if _GELU.get(act) == "none":
        fields["gelu_approximate"] = "none"
    return fields
# --8<-- [end:config_gpt2]


# --8<-- [start:config_llama]
def _llama_config(hf: dict[str, Any]) -> dict[str, Any]:
    """`GPTConfig` fields of a LLaMA `config.json` (missing keys take `LlamaConfig`'s
    defaults)."""
    C, n_head = _get(hf, "hidden_size", 4096, int), _get(hf, "num_attention_heads", 32, int)
    n_kv_head = _get(hf, "num_key_value_heads", None, (int, type(None))) or n_head
    act = _get(hf, "hidden_act", "silu", str)
    if act != "silu":
        raise _refuse("hidden_act", act, "Nima's gated FFN for LLaMA is SwiGLU (silu)")
    if n_head % n_kv_head:
        raise _refuse("num_key_value_heads", n_kv_head,
                      f"it must divide num_attention_heads={n_head}")
    head_dim = hf.get("head_dim")
    if head_dim is not None and (C % n_head or head_dim != C // n_head):
        raise _refuse("head_dim", head_dim, f"Nima's heads are hidden_size / "
                      f"num_attention_heads = {C} / {n_head} wide")
    # RoPE: `rope_parameters` (transformers 5) or `rope_theta` + `rope_scaling` (4.x)
    rope = hf.get("rope_parameters") or {}
    scaling = hf.get("rope_scaling") or {}
    for key, params in (("rope_parameters", rope), ("rope_scaling", scaling)):
        kind = params.get("rope_type", params.get("type", "default"))
        if kind != "default":
            raise _refuse(key, params, "Nima's RoPE has no scaling (rope_type 'default' only)")
    theta = rope.get("rope_theta", hf.get("rope_theta", 10000.0))
    fields = dict(
        vocab_size=_get(hf, "vocab_size", 32000, int),
        block_size=_get(hf, "max_position_embeddings", 2048, int),
        n_layer=_get(hf, "num_hidden_layers", 32, int), n_head=n_head, n_embd=C,
        ffn="swiglu", ffn_hidden=_get(hf, "intermediate_size", 11008, int),
        norm="rmsnorm", position="rope", bias=False,
        tie_weights=_get(hf, "tie_word_embeddings", False, bool),
        norm_eps=float(_get(hf, "rms_norm_eps", 1e-6, (int, float))),
        rope_theta=float(theta),
    )
    if n_kv_head != n_head:
        fields["n_kv_head"] = n_kv_head  # grouped-query attention
    if _get(hf, "attention_bias", False, bool):
        fields["attn_bias"] = True
    if _get(hf, "mlp_bias", False, bool):
        fields["mlp_bias"] = True
    return fields
# --8<-- [end:config_llama]


_FAMILIES: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "gpt2": _gpt2_config, "llama": _llama_config}


def config_from_hf(hf: dict[str, Any]) -> GPTConfig:
    """The `GPTConfig` of a Hugging Face `config.json` (as a dict) of a GPT-2 or LLaMA model.

    Example:
        >>> config_from_hf({"model_type": "gpt2"})  # GPT-2 small, all defaults
        GPTConfig(vocab_size=50257, block_size=1024, n_layer=12, n_head=12, n_embd=768, ...)

    Raises:
        PretrainedError: another `model_type`, or a setting Nima does not compute (the
            message names the field).
    """
    model_type = hf.get("model_type")
    if model_type not in _FAMILIES:
        raise _refuse("model_type", model_type, f"Nima reads {', '.join(map(repr, _FAMILIES))}")
    fields = _FAMILIES[model_type](hf)
    try:
        return GPTConfig(**fields)
    except TypeError as e:  # a field this version of GPTConfig does not have
        raise PretrainedError(f"{CONFIG}: this model needs GPTConfig fields "
                              f"{sorted(set(fields))} ({e})") from None
    except ValueError as e:
        raise PretrainedError(f"{CONFIG}: {e}") from None


# ------------------------------------------------------------------------------ weight names
@dataclass(frozen=True)
class _Tensor:
    """One Nima tensor and the Hugging Face tensor(s) it is made of: several are stacked along
    the first axis (q, k, v into qkv), a Conv1D weight is transposed."""

    nima: str
    hf: tuple[str, ...]
    transpose: bool = False


@dataclass(frozen=True)
class _Shapes:
    """What the name map needs to know beyond the family: depth, untied head, biases."""

    n_layer: int
    tied: bool
    attn_bias: bool
    mlp_bias: bool


# --8<-- [start:names_gpt2]
def _gpt2_names(s: _Shapes, prefix: str = "transformer.") -> list[_Tensor]:
    names = [_Tensor("wte.weight", (f"{prefix}wte.weight",)),
             _Tensor("wpe.weight", (f"{prefix}wpe.weight",))]
    for i in range(s.n_layer):
        h, b = f"{prefix}h.{i}.", f"blocks.{i}."
        for nima, hf, conv1d in (("ln_1", "ln_1", False), ("attn.qkv", "attn.c_attn", True),
                                 ("attn.proj", "attn.c_proj", True), ("ln_2", "ln_2", False),
                                 ("ffn.fc", "mlp.c_fc", True), ("ffn.proj", "mlp.c_proj", True)):
            names.append(_Tensor(f"{b}{nima}.weight", (f"{h}{hf}.weight",), transpose=conv1d))
            names.append(_Tensor(f"{b}{nima}.bias", (f"{h}{hf}.bias",)))
    names += [_Tensor("ln_f.weight", (f"{prefix}ln_f.weight",)),
              _Tensor("ln_f.bias", (f"{prefix}ln_f.bias",))]
    if not s.tied:
        names.append(_Tensor("lm_head.weight", ("lm_head.weight",)))
    return names
# --8<-- [end:names_gpt2]


# --8<-- [start:names_llama]
def _llama_names(s: _Shapes) -> list[_Tensor]:
    names = [_Tensor("wte.weight", ("model.embed_tokens.weight",))]
    for i in range(s.n_layer):
        h, b = f"model.layers.{i}.", f"blocks.{i}."
        attn = (f"{h}self_attn.q_proj", f"{h}self_attn.k_proj", f"{h}self_attn.v_proj")
        gate_up = (f"{h}mlp.gate_proj", f"{h}mlp.up_proj")  # gate first, as FeedForward's fc
        linears = [("attn.qkv", attn, s.attn_bias), ("attn.proj", (f"{h}self_attn.o_proj",),
                                                      s.attn_bias),
                   ("ffn.fc", gate_up, s.mlp_bias), ("ffn.proj", (f"{h}mlp.down_proj",),
                                                     s.mlp_bias)]
        names.append(_Tensor(f"{b}ln_1.weight", (f"{h}input_layernorm.weight",)))
        names.append(_Tensor(f"{b}ln_2.weight", (f"{h}post_attention_layernorm.weight",)))
        for nima, hf, bias in linears:
            names.append(_Tensor(f"{b}{nima}.weight", tuple(f"{n}.weight" for n in hf)))
            if bias:
                names.append(_Tensor(f"{b}{nima}.bias", tuple(f"{n}.bias" for n in hf)))
    names.append(_Tensor("ln_f.weight", ("model.norm.weight",)))
    if not s.tied:
        names.append(_Tensor("lm_head.weight", ("lm_head.weight",)))
    return names
# --8<-- [end:names_llama]


def _to_nima(names: list[_Tensor], tensors: dict[str, np.ndarray],
             ignore: Callable[[str], bool]) -> dict[str, np.ndarray]:
    """Nima's state dict from Hugging Face tensors; every name must be used (or ignored)."""
    missing = [n for t in names for n in t.hf if n not in tensors]
    if missing:
        raise PretrainedError(f"weights: missing tensor(s) {missing[:5]}"
                              + (f" and {len(missing) - 5} more" if len(missing) > 5 else ""))
    used = {n for t in names for n in t.hf}
    unexpected = sorted(n for n in tensors if n not in used and not ignore(n))
    if unexpected:
        raise PretrainedError(f"weights: unexpected tensor(s) {unexpected[:5]}: not part of "
                              f"this model as config.json describes it")
    state = {}
    for t in names:
        parts = [tensors[n].T if t.transpose else tensors[n] for n in t.hf]
        state[t.nima] = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)
    return state


def _to_hf(names: list[_Tensor], state: dict[str, np.ndarray],
           sizes: Callable[[_Tensor], list[int]]) -> dict[str, np.ndarray]:
    """Hugging Face tensors from Nima's state dict: stacked tensors are cut at `sizes(t)`."""
    tensors = {}
    for t in names:
        value = state[t.nima]
        parts = np.split(value, np.cumsum(sizes(t))[:-1], axis=0) if len(t.hf) > 1 else [value]
        for name, part in zip(t.hf, parts, strict=True):
            tensors[name] = np.ascontiguousarray(part.T if t.transpose else part)
    return tensors


# ------------------------------------------------------------------------------ files
def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PretrainedError(f"{path}: no such file; a model folder holds {CONFIG} and "
                              f"{WEIGHTS} (or its shards and {INDEX})") from None
    except (UnicodeDecodeError, ValueError) as e:
        raise PretrainedError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(value, dict):
        raise PretrainedError(f"{path}: expected a JSON object, got {type(value).__name__}")
    return value


def read_weights(folder: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Every tensor of a model folder: `model.safetensors`, or the shards its index names.

    Raises:
        PretrainedError: no weights file, a malformed index, a shard missing a tensor the index
            puts there or holding one it does not, or only a `pytorch_model.bin` (a pickle,
            which Nima never loads).
        CheckpointError: a shard that is not a valid safetensors file.
    """
    folder = Path(folder)
    if (folder / INDEX).exists():
        index = _read_json(folder / INDEX)
        weight_map = index.get("weight_map")
        if not isinstance(weight_map, dict) or not all(
                (isinstance(v, str) and _SHARD.match(v)) or v == WEIGHTS
                for v in weight_map.values()):
            raise PretrainedError(f"{folder / INDEX}: weight_map must map tensor names to shard "
                                  f"files named like model-00001-of-00002.safetensors")
        tensors: dict[str, np.ndarray] = {}
        for shard in sorted(set(weight_map.values())):
            if not (folder / shard).exists():
                raise PretrainedError(f"{folder / INDEX}: names {shard}, which is not in the "
                                      f"folder")
            content = load(folder / shard)
            expected = {name for name, file in weight_map.items() if file == shard}
            if set(content) != expected:
                odd = sorted(set(content) ^ expected)[:3]
                raise PretrainedError(f"{folder / shard}: holds other tensors than {INDEX} "
                                      f"says (e.g. {odd})")
            tensors.update(content)
        return tensors
    if (folder / WEIGHTS).exists():
        return load(folder / WEIGHTS)
    pickled = [p.name for p in folder.glob("*.bin")] + [p.name for p in folder.glob("*.pt")]
    why = (f"; {', '.join(pickled)} is a pickle, which Nima never loads — convert it to "
           f"safetensors with transformers' save_pretrained" if pickled else "")
    raise PretrainedError(f"{folder}: no {WEIGHTS} or {INDEX}{why}")


# --8<-- [start:load_pretrained]
def load_pretrained(path: str | os.PathLike[str], *, dtype: Any = np.float32) -> GPT:
    """A `GPT` from a Hugging Face model folder of a GPT-2 or LLaMA model, in eval mode.

    Args:
        path: the folder, with `config.json` and `model.safetensors` (or shards + index).
        dtype: the parameters' dtype (the files may hold float16, bfloat16, float32 or
            float64; values are converted).

    Raises:
        PretrainedError: an unsupported `model_type` or setting (the message names the
            field), or tensors missing, unexpected or mis-shaped for the config.
        CheckpointError: a weights file that is not valid safetensors.
    """
    folder = Path(path)
    hf = _read_json(folder / CONFIG)
    config = config_from_hf(hf)
    shapes = _Shapes(config.n_layer, config.tie_weights,
                     attn_bias=bool(hf.get("attention_bias", False)),
                     mlp_bias=bool(hf.get("mlp_bias", False)))
    tensors = read_weights(folder)
    if hf["model_type"] == "gpt2":
        # transformers saves GPT2LMHeadModel's names (transformer.h.0...); older files hold
        # GPT2Model's (h.0...) and the attention's causal-mask buffers (attn.bias, masked_bias)
        prefix = "transformer." if "transformer.wte.weight" in tensors else ""
        names = _gpt2_names(shapes, prefix)
        mask_buffer = re.compile(rf"^{re.escape(prefix)}h\.\d+\.attn\.(masked_)?bias$")
        state = _to_nima(names, tensors, lambda n: bool(mask_buffer.match(n))
                         or (config.tie_weights and n == "lm_head.weight"))
    else:
        state = _to_nima(_llama_names(shapes), tensors,
                         lambda n: config.tie_weights and n == "lm_head.weight")
    if config.tie_weights:
        state["lm_head.weight"] = state["wte.weight"]  # one Parameter under both names
    model = GPT(config).to(dtype)
    try:
        model.load_state_dict(state)
    except ValueError as e:
        raise PretrainedError(f"{folder}: the weights do not fit config.json: {e}") from None
    return model.eval()
# --8<-- [end:load_pretrained]


# ------------------------------------------------------------------------------ writing
def _the(model: GPT, kind: type, what: str) -> Any:
    """The one value of attribute `what` shared by every module of `kind` in `model` (None
    when there is none)."""
    values = {getattr(m, what) for m in model.modules() if isinstance(m, kind)}
    if len(values) > 1:
        raise PretrainedError(f"the model's {kind.__name__} modules differ in {what} "
                              f"({sorted(values)}); a config holds one value")
    return values.pop() if values else None


# --8<-- [start:model_settings]
def model_settings(model: GPT) -> dict[str, Any]:
    """What a file must record, beyond `GPTConfig`'s shapes, to rebuild what `model` computes,
    read off its modules: `norm_eps`, `gelu_approximate`, `rope_theta` (None without RoPE or
    GELU), `n_kv_head`, `head_dim`, the FFN width `ffn_hidden`, and whether the attention and
    FFN layers have biases (`attn_bias`, `mlp_bias`)."""
    c = model.config
    block = model.blocks[0]
    head_dim = c.n_embd // c.n_head
    qkv_rows = block.attn.qkv.weight.shape[0]  # (n_head + 2 n_kv_head) head_dim
    return {"norm_eps": _the(model, LayerNorm if c.norm == "layernorm" else RMSNorm, "eps"),
            "gelu_approximate": _the(model, FeedForward, "approximate") if c.ffn == "gelu"
            else None,
            "rope_theta": _the(model, RotaryEmbedding, "base"),
            "n_kv_head": (qkv_rows // head_dim - c.n_head) // 2, "head_dim": head_dim,
            "ffn_hidden": block.ffn.proj.weight.shape[1],
            "attn_bias": block.attn.qkv.bias is not None,
            "mlp_bias": block.ffn.fc.bias is not None}
# --8<-- [end:model_settings]


def hf_config(model: GPT) -> dict[str, Any]:
    """The Hugging Face `config.json` (as a dict) describing `model`, GPT-2 or LLaMA style.

    Raises:
        PretrainedError: the model is neither (the message names the `GPTConfig` field that
            has no equivalent).
    """
    c = model.config
    if c.stateful_or_recursive is not None:
        raise PretrainedError(f"save_pretrained: {c.stateful_or_recursive} has no GPT-2 or "
                              f"LLaMA equivalent")
    s = model_settings(model)
    common = {"vocab_size": c.vocab_size, "tie_word_embeddings": c.tie_weights,
              "torch_dtype": str(model.wte.weight.dtype)}
    if c.attention != "content" or c.norm_placement != "pre" or c.embed_scale:
        field = "attention" if c.attention != "content" else \
            "norm_placement" if c.norm_placement != "pre" else "embed_scale"
        raise PretrainedError(f"save_pretrained: {field}={getattr(c, field)!r} has no GPT-2 or "
                              f"LLaMA equivalent")
    if (c.position, c.norm) == ("learned", "layernorm"):
        biases = c.bias and s["attn_bias"] and s["mlp_bias"]  # GPT-2 has them everywhere
        if c.ffn not in ("gelu", "relu") or not biases or s["n_kv_head"] != c.n_head:
            field, value = (("ffn", c.ffn) if c.ffn not in ("gelu", "relu") else
                            ("bias", False) if not biases else ("n_kv_head", s["n_kv_head"]))
            raise PretrainedError(f"save_pretrained: a GPT-2 model (learned positions, "
                                  f"layernorm) has gelu/relu, biases and n_kv_head = n_head; "
                                  f"this one has {field}={value!r}")
        act = "relu" if c.ffn == "relu" else \
            {"tanh": "gelu_new", "none": "gelu"}[s["gelu_approximate"]]
        return {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], **common,
                "n_positions": c.block_size, "n_embd": c.n_embd, "n_layer": c.n_layer,
                "n_head": c.n_head, "n_inner": c.ffn_hidden, "activation_function": act,
                "layer_norm_epsilon": s["norm_eps"],
                "resid_pdrop": c.dropout, "embd_pdrop": c.dropout, "attn_pdrop": c.dropout}
    if (c.position, c.norm, c.ffn) == ("rope", "rmsnorm", "swiglu"):
        theta = s["rope_theta"]
        return {"model_type": "llama", "architectures": ["LlamaForCausalLM"], **common,
                "max_position_embeddings": c.block_size, "hidden_size": c.n_embd,
                "intermediate_size": s["ffn_hidden"], "num_hidden_layers": c.n_layer,
                "num_attention_heads": c.n_head, "num_key_value_heads": s["n_kv_head"],
                "head_dim": s["head_dim"], "hidden_act": "silu", "rms_norm_eps": s["norm_eps"],
                "rope_theta": theta, "rope_parameters": {"rope_type": "default",
                                                          "rope_theta": theta},
                "attention_bias": s["attn_bias"], "mlp_bias": s["mlp_bias"],
                "attention_dropout": c.dropout}
    raise PretrainedError(f"save_pretrained: position={c.position!r}, norm={c.norm!r}, "
                          f"ffn={c.ffn!r} is neither GPT-2 (learned, layernorm, gelu/relu) nor "
                          f"LLaMA (rope, rmsnorm, swiglu)")


def hf_state_dict(model: GPT, hf: dict[str, Any] | None = None) -> dict[str, np.ndarray]:
    """`model`'s weights under Hugging Face's names and layouts (`hf`: its `hf_config`)."""
    hf = hf_config(model) if hf is None else hf
    state = model.state_dict()
    shapes = _Shapes(model.config.n_layer, model.config.tie_weights,
                     attn_bias=bool(hf.get("attention_bias")), mlp_bias=bool(hf.get("mlp_bias")))
    if hf["model_type"] == "gpt2":
        return _to_hf(_gpt2_names(shapes), state, lambda t: [])
    q = hf["num_attention_heads"] * hf["head_dim"]
    kv = hf["num_key_value_heads"] * hf["head_dim"]
    ffn = hf["intermediate_size"]
    return _to_hf(_llama_names(shapes), state,
                  lambda t: [q, kv, kv] if len(t.hf) == 3 else [ffn, ffn])


# --8<-- [start:save_pretrained]
def save_pretrained(model: GPT, path: str | os.PathLike[str], *,
                    max_shard_size: int | None = None) -> None:
    """Write `model` as a Hugging Face model folder that `transformers` (and `load_pretrained`)
    read: `config.json` and `model.safetensors`, or shards of at most `max_shard_size` bytes
    each (a tensor larger than that gets a shard of its own) with their index.

    The folder is created if needed. Each file is written atomically; weights files of an
    earlier save that this one does not use are removed afterwards, so the folder never mixes
    two saves.

    Raises:
        PretrainedError: the model is neither GPT-2 nor LLaMA shaped (see `hf_config`).
    """
    if max_shard_size is not None and max_shard_size < 1:
        raise ValueError(f"save_pretrained: max_shard_size must be a positive number of bytes, "
                         f"got {max_shard_size!r}")
    hf = hf_config(model)
    tensors = hf_state_dict(model, hf)
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    meta = {"format": "pt"}  # transformers refuses safetensors files without it
    shards: list[dict[str, np.ndarray]] = [{}]
    for name, value in tensors.items():
        size = sum(t.nbytes for t in shards[-1].values())
        if max_shard_size is not None and shards[-1] and size + value.nbytes > max_shard_size:
            shards.append({})
        shards[-1][name] = value
    if len(shards) == 1:
        written = [WEIGHTS]
        save(tensors, folder / WEIGHTS, meta)
    else:
        written = [f"model-{k:05d}-of-{len(shards):05d}.safetensors"
                   for k in range(1, len(shards) + 1)]
        for file, shard in zip(written, shards, strict=True):
            save(shard, folder / file, meta)
        index = {"metadata": {"total_size": sum(t.nbytes for t in tensors.values())},
                 "weight_map": {name: file for file, shard in zip(written, shards, strict=True)
                                for name in shard}}
        atomic_write_text(folder / INDEX, json.dumps(index, indent=2) + "\n")
        written.append(INDEX)
    atomic_write_text(folder / CONFIG, json.dumps(hf, indent=2) + "\n")
    for stale in [*folder.glob("model*.safetensors"), folder / INDEX]:
        if stale.name not in written and (stale.name == WEIGHTS or stale.name == INDEX
                                          or _SHARD.match(stale.name)):
            stale.unlink(missing_ok=True)
# --8<-- [end:save_pretrained]


__all__ = ["CheckpointError", "PretrainedError", "config_from_hf", "hf_config",
           "hf_state_dict", "load_pretrained", "model_settings", "read_weights",
           "save_pretrained"]
