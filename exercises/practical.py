r"""Exercises of the Practical ranges page (docs/practical.md)."""

from exercises import close, equal
from nima.models import GPT, GPTConfig, count_parameters
from nima.models.budget import MICRO_TRANSFORMER


def training_flops(config: GPTConfig, tokens: int) -> float:
    r"""The compute of a training run.

    Return the FLOPs of training a GPT of `config` on `tokens` tokens: $6$ per weight that
    multiplies — the blocks' and the output head's $V C$ (tied or not; the embedding lookup and
    learned positions are free) — plus attention's $12 L T C$ per token at full context $T$.
    `count_parameters(config)` gives the parts, e.g. `["blocks"]`.
    """
    raise NotImplementedError


def check_training_flops(training_flops) -> None:
    """Builds the baby GPT and the three Micro-Transformer shapes, counts the parameters under
    `blocks.` plus the head's $VC$, and compares with 6 FLOPs per such weight plus attention's
    term, per token of the run (the count behind this page's table)."""
    for config in [GPTConfig.preset("baby"), *(c for c, _ in MICRO_TRANSFORMER.values())]:
        model = GPT(config)
        weights = sum(p.size for name, p in model.named_parameters() if name.startswith("blocks."))
        weights += config.vocab_size * config.n_embd
        per_token = 6 * weights + 12 * config.n_layer * config.block_size * config.n_embd
        tokens = 2000 * 12 * 64
        close(training_flops(config, tokens), per_token * tokens,
              f"FLOPs of {config.n_layer} layers x {config.n_embd}", rtol=1e-12)


def chinchilla_steps(config: GPTConfig, tokens_per_step: int) -> int:
    r"""How long is a compute-optimal run?

    Return the number of training steps of `tokens_per_step` tokens each (rounded up) that give
    a GPT of `config` Chinchilla's 20 tokens per parameter, counting all of its parameters.
    """
    raise NotImplementedError


def check_chinchilla_steps(chinchilla_steps) -> None:
    """Compares with 20 × `count_parameters(config)["total"]` tokens for the baby GPT's batch of
    12 × 64 tokens, and for GPT-2 small with a batch of half a million tokens."""
    for config, per_step in [(GPTConfig.preset("baby"), 768), (GPTConfig.preset("small"), 2**19)]:
        total = 20 * count_parameters(config)["total"]
        equal(int(chinchilla_steps(config, per_step)), -(-total // per_step),
              f"steps for {config.n_layer} layers at {per_step} tokens per step")
