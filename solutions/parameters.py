"""Solutions of exercises/parameters.py."""

from nima.models import GPTConfig


def gpt_parameters(config: GPTConfig) -> int:
    V, T, C, L, h = (config.vocab_size, config.block_size, config.n_embd, config.n_layer,
                     config.ffn_hidden)
    b = int(config.bias)
    gated = config.ffn in ("glu", "swiglu")
    embedding = V * C + (T * C if config.position == "learned" else 0)
    attention = 4 * C * C + 4 * C * b
    ffn = (3 * C * h + (2 * h + C) * b) if gated else (2 * C * h + (h + C) * b)
    norm = C + C * b if config.norm == "layernorm" else C  # gamma, and beta if biased
    final = norm if config.norm_placement == "pre" else 0
    head = 0 if config.tie_weights else V * C
    return embedding + L * (attention + ffn + 2 * norm) + final + head


def _gpt_parameters_no_final_norm(config: GPTConfig) -> int:
    """Forgets ln_f."""
    norm = config.n_embd * (2 if config.norm == "layernorm" and config.bias else 1)
    return gpt_parameters(config) - (norm if config.norm_placement == "pre" else 0)


def _gpt_parameters_head_always(config: GPTConfig) -> int:
    """Counts the head even when it is the tied embedding."""
    extra = config.vocab_size * config.n_embd if config.tie_weights else 0
    return gpt_parameters(config) + extra


def gpt2_small_parameters() -> int:
    V, T, C, L = 50257, 1024, 768, 12
    block = (4 * C * C + 4 * C) + (8 * C * C + 5 * C) + 4 * C  # attention, FFN, two norms
    return V * C + T * C + L * block + 2 * C  # + ln_f; the head is tied: nothing more


WRONG = {
    "gpt_parameters": [_gpt_parameters_no_final_norm, _gpt_parameters_head_always],
    "gpt2_small_parameters": [lambda: gpt2_small_parameters() + 50257 * 768,  # untied head
                              lambda: 12 * 12 * 768 * 768],  # the blocks' matrices only
}
