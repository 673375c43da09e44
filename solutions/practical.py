"""Solutions of exercises/practical.py."""

import math

from nima.models import count_parameters


def training_flops(config, tokens):
    parts = count_parameters(config)
    weights = parts["blocks"] + config.vocab_size * config.n_embd  # the head: tied or not
    attention = 12 * config.n_layer * config.block_size * config.n_embd
    return (6 * weights + attention) * tokens


def _training_flops_all_parameters(config, tokens):
    """6N over every parameter: counts the free lookups and forgets attention's products."""
    return 6 * count_parameters(config)["total"] * tokens


def _training_flops_forward_only(config, tokens):
    """2 per weight, the forward alone."""
    return training_flops(config, tokens) / 3


def chinchilla_steps(config, tokens_per_step):
    return math.ceil(20 * count_parameters(config)["total"] / tokens_per_step)


WRONG = {
    "training_flops": [_training_flops_all_parameters, _training_flops_forward_only],
    "chinchilla_steps": [lambda config, tokens_per_step:
                         20 * count_parameters(config)["total"] // tokens_per_step],
}
