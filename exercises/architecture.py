r"""Exercises of the Architecture page (docs/architecture.md): reading the transformer map."""

import numpy as np

import nima
from exercises import equal
from nima.models import GPT, GPTConfig


def step_shapes(B: int, T: int, config: GPTConfig) -> dict[str, tuple[int, ...]]:
    r"""The shapes of one training step.

    Return the shapes, for a batch of `B` windows of `T` tokens and a GPT built from `config`,
    as a dictionary with the keys `"idx"` (the token ids), `"h"` (the residual stream between
    blocks), `"weights"` (one block's attention weights), `"logits"` and `"loss"`. Read them
    off the transformer map; `config.n_embd`, `config.n_head` and `config.vocab_size` are
    $C$, $n_h$ and $V$.
    """
    raise NotImplementedError


def check_step_shapes(step_shapes) -> None:
    """Runs small GPTs (with T shorter than the context) and compares with the shapes of the
    ids, of `model.embed(idx)`, of the first block's attention weights (`need_weights=True`),
    of the logits and of the loss."""
    for B, T, config in [(2, 5, GPTConfig.preset("baby", n_layer=1)),
                         (3, 4, GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2,
                                          n_embd=6))]:
        nima.manual_seed(0)
        model = GPT(config)
        idx = np.random.default_rng(0).integers(0, config.vocab_size, (B, T))
        with nima.no_grad():
            h = model.embed(idx)
            _, weights = model.blocks[0].attn(model.blocks[0].ln_1(h), need_weights=True)
            logits, loss = model(idx, idx)
        got = step_shapes(B, T, config)
        expected = {"idx": idx.shape, "h": h.shape, "weights": weights.shape,
                    "logits": logits.shape, "loss": loss.shape}
        equal(sorted(got), sorted(expected), "the keys")
        for key, shape in expected.items():
            equal(tuple(got[key]), tuple(shape), f"{key} at B={B}, T={T}")


def kv_cache_bytes(config: GPTConfig, B: int) -> int:
    r"""The memory of a GPT's KV caches.

    `model.new_caches()` gives one `KVCache` per block; the first forward allocates its keys
    and values, each `(B, n_kv_head, block_size, head_dim)` in the model's dtype. Return how
    many bytes all the caches of a float32 model hold for a batch of `B`. `config.n_kv_head`
    is `None` unless grouped-query attention shares keys and values between heads.
    """
    raise NotImplementedError


def check_kv_cache_bytes(kv_cache_bytes) -> None:
    """Decodes a one-token prompt with several configurations (grouped-query attention
    included) and adds up the `nbytes` of every cache's key and value arrays."""
    for B, config in [(2, GPTConfig.preset("baby")),
                      (1, GPTConfig.preset("baby", n_layer=2, n_head=8, n_kv_head=2)),
                      (3, GPTConfig(vocab_size=7, block_size=10, n_layer=3, n_head=3,
                                    n_embd=12, n_kv_head=1))]:
        model = GPT(config)
        caches = model.new_caches()
        with nima.no_grad():
            model(np.zeros((B, 1), dtype=np.int64), caches=caches)
        expected = sum(c.k.nbytes + c.v.nbytes for c in caches)
        equal(int(kv_cache_bytes(config, B)), expected, f"bytes for B={B}, {config.n_layer} "
                                                        f"layers, n_kv_head={config.n_kv_head}")
