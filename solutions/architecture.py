"""Solutions of exercises/architecture.py."""

from nima.models import GPTConfig


def step_shapes(B: int, T: int, config: GPTConfig) -> dict[str, tuple[int, ...]]:
    return {"idx": (B, T), "h": (B, T, config.n_embd),
            "weights": (B, config.n_head, T, T),  # every query against every key, per head
            "logits": (B, T, config.vocab_size), "loss": ()}


def _step_shapes_one_head(B: int, T: int, config: GPTConfig) -> dict[str, tuple[int, ...]]:
    """Forgets that every head has its own weights."""
    return {**step_shapes(B, T, config), "weights": (B, T, T)}


def _step_shapes_loss_per_token(B: int, T: int, config: GPTConfig) -> dict[str, tuple]:
    """Takes the loss for one number per position; it is their mean."""
    return {**step_shapes(B, T, config), "loss": (B, T)}


def kv_cache_bytes(config: GPTConfig, B: int) -> int:
    n_kv = config.n_kv_head or config.n_head
    per_array = B * n_kv * config.block_size * config.head_dim * 4  # float32: 4 bytes
    return config.n_layer * 2 * per_array  # keys and values, in every block


def _kv_cache_bytes_all_heads(config: GPTConfig, B: int) -> int:
    """Ignores grouped-query attention: one key/value head per query head."""
    return config.n_layer * 2 * B * config.n_head * config.block_size * config.head_dim * 4


def _kv_cache_bytes_keys_only(config: GPTConfig, B: int) -> int:
    """Counts the keys and forgets the values."""
    return kv_cache_bytes(config, B) // 2


WRONG = {
    "step_shapes": [_step_shapes_one_head, _step_shapes_loss_per_token],
    "kv_cache_bytes": [_kv_cache_bytes_all_heads, _kv_cache_bytes_keys_only],
}
