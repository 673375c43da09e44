r"""Exercises of the Parameters page (docs/parameters.md)."""

import itertools

from exercises import equal
from nima.models import GPT, GPTConfig, count_parameters


def gpt_parameters(config: GPTConfig) -> int:
    r"""Count a GPT's parameters on paper.

    Return the number of parameters of `GPT(config)` for content attention and any of: learned
    or other positions (`config.position`), biases or not (`config.bias`), a tied head or not
    (`config.tie_weights`), `config.ffn` in `"gelu"` / `"swiglu"` with `config.ffn_hidden` set,
    `config.norm` in `"layernorm"` / `"rmsnorm"`, `config.norm_placement` in `"pre"` / `"post"`.
    The table on the page has every part; build it up one line per part.
    """
    raise NotImplementedError


def check_gpt_parameters(gpt_parameters) -> None:
    """Instantiates 64 small GPTs, one per combination of the choices above, and compares with
    `num_parameters()`."""
    choices = itertools.product(("learned", "rope"), (True, False), (True, False),
                                ("gelu", "swiglu"), ("layernorm", "rmsnorm"), ("pre", "post"))
    for position, bias, tie, ffn, norm, placement in choices:
        config = GPTConfig(vocab_size=11, block_size=6, n_layer=2, n_head=2, n_embd=8,
                           ffn_hidden=12, position=position, bias=bias, tie_weights=tie, ffn=ffn,
                           norm=norm, norm_placement=placement)
        equal(int(gpt_parameters(config)), GPT(config).num_parameters(),
              f"parameters with position={position}, bias={bias}, tie_weights={tie}, "
              f"ffn={ffn}, norm={norm}, norm_placement={placement}")


def gpt2_small_parameters() -> int:
    r"""GPT-2 small, by hand.

    $V = 50257$, $T = 1024$, $C = 768$, $L = 12$, $h = 4C$, biases everywhere, LayerNorm,
    pre-norm, learned positions, a tied head. Return its parameter count as an arithmetic
    expression in these numbers — one term per part.
    """
    raise NotImplementedError


def check_gpt2_small_parameters(gpt2_small_parameters) -> None:
    """Compares with `count_parameters(GPTConfig.preset("small"))["total"]` (which the tests
    check against instantiated models)."""
    equal(int(gpt2_small_parameters()), count_parameters(GPTConfig.preset("small"))["total"],
          "GPT-2 small's parameters")
