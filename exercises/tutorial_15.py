r"""Exercises of tutorial 15, GPT-2 from a local folder."""

import dataclasses
from typing import Any

from exercises import equal
from nima.models.pretrained import config_from_hf


def gpt2_fields(hf: dict[str, Any]) -> dict[str, Any]:
    r"""Read a GPT-2 `config.json`.

    Return the `GPTConfig` fields `vocab_size`, `block_size`, `n_layer`, `n_head`, `n_embd`
    and `gelu_approximate` for the Hugging Face GPT-2 config `hf` (a dict). Keys it leaves out
    take `GPT2Config`'s defaults: 50257 tokens, 1024 positions (`n_positions`), 12 layers,
    12 heads, 768 wide, `activation_function` `"gelu_new"` — GPT-2's tanh approximation;
    `"gelu"` is the exact one, `"none"` in Nima's terms.
    """
    raise NotImplementedError


def check_gpt2_fields(gpt2_fields) -> None:
    """Compares with `nima.models.pretrained.config_from_hf` on an empty GPT-2 config (GPT-2
    small), on GPT-2 medium's shape, and on a tiny model with the exact GELU."""
    keys = ("vocab_size", "block_size", "n_layer", "n_head", "n_embd", "gelu_approximate")
    for hf in [{"model_type": "gpt2"},
               {"model_type": "gpt2", "n_layer": 24, "n_head": 16, "n_embd": 1024},
               {"model_type": "gpt2", "vocab_size": 300, "n_positions": 64, "n_layer": 2,
                "n_head": 2, "n_embd": 32, "activation_function": "gelu"}]:
        config = dataclasses.asdict(config_from_hf(hf))
        got = gpt2_fields(dict(hf))
        equal({k: got[k] for k in keys}, {k: config[k] for k in keys}, f"the fields of {hf}")
