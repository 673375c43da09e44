r"""GPT: a decoder-only transformer language model, top to bottom.

Tokens in, a distribution over the next token out, at every position at once:

$$h_0 = W_E[\text{idx}] + P, \qquad h_\ell = \operatorname{Block}_\ell(h_{\ell-1}), \qquad
\text{logits} = \operatorname{LN}_f(h_L)\,W_E^\top.$$

* **embeddings** — row `idx` of the token table $W_E$ (`wte`, `(V, C)`), plus a position
  vector $P$ (`wpe`) when positions are *added* (learned or sinusoidal); RoPE and ALiBi act
  inside attention instead, so they add nothing here;
* **blocks** — `n_layer` times: causal self-attention (tokens look at earlier tokens) and a
  position-wise feed-forward network, each wrapped in a residual connection and a norm;
* **head** — a final norm (pre-norm only) and a linear map back to the vocabulary, whose
  weight is $W_E$ itself when `tie_weights` (GPT-2 does this; it saves $VC$ parameters).

Every choice the literature argues about is a field of `GPTConfig`; the presets `tiny`,
`small` and `medium` fix them to nanoGPT's CPU "baby GPT" and to GPT-2's 124M and 350M models.
Generation (sampling loops) lives elsewhere; `forward` with `caches` is the one step it needs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from nima import functional as F
from nima._tensor import Tensor
from nima.nn import init
from nima.nn.attention import KVCache, MultiHeadAttention
from nima.nn.checkpoint import checkpoint
from nima.nn.container import ModuleList
from nima.nn.dropout import Dropout
from nima.nn.embedding import Embedding
from nima.nn.feedforward import FeedForward
from nima.nn.hybrid_attention import HybridAttention
from nima.nn.linear import Linear
from nima.nn.module import Module
from nima.nn.normalization import LayerNorm, RMSNorm
from nima.nn.positional import (
    ALiBi,
    LearnedPositionalEmbedding,
    RotaryEmbedding,
    SinusoidalPositionalEncoding,
)

CHOICES: dict[str, tuple[str, ...]] = {
    "ffn": ("gelu", "relu", "glu", "swiglu"),
    "norm": ("layernorm", "rmsnorm"),
    "norm_placement": ("pre", "post"),
    "position": ("learned", "sinusoidal", "rope", "alibi"),
    "attention": ("content", "reweight", "hybrid"),
}


# --8<-- [start:config]
@dataclass
class GPTConfig:
    r"""Every shape and architectural choice of a `GPT`; the defaults are GPT-2 small's.

    Attributes:
        vocab_size: $V$, the number of token ids.
        block_size: the context length, the most positions one forward sees.
        n_layer: $L$, how many blocks.
        n_head: attention heads per block; must divide `n_embd`.
        n_embd: $C$ (also $d$), the width of the residual stream.
        ffn: feed-forward kind, `"gelu"` | `"relu"` | `"glu"` | `"swiglu"`.
        ffn_hidden: the FFN's inner width; None is $4C$ (or LLaMA's rounding for gated kinds).
        norm: `"layernorm"` | `"rmsnorm"`.
        norm_placement: `"pre"` (GPT-2: $x + f(N(x))$) | `"post"` (2017: $N(x + f(x))$).
        position: `"learned"` | `"sinusoidal"` (added to the embeddings) | `"rope"` |
            `"alibi"` (inside attention).
        bias: biases in every `Linear` and `LayerNorm` (GPT-2 yes, LLaMA no).
        dropout: on embeddings, attention weights and both residual branches.
        tie_weights: the output head reuses the token embedding `wte.weight`.
        attention: `"content"` ($QK^\top$), `"reweight"` or `"hybrid"` (`HybridAttention`).
        gradient_checkpointing: recompute each block in the backward instead of storing it.
    """

    vocab_size: int = 50257
    block_size: int = 1024
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    ffn: str = "gelu"
    ffn_hidden: int | None = None
    norm: str = "layernorm"
    norm_placement: str = "pre"
    position: str = "learned"
    bias: bool = True
    dropout: float = 0.0
    tie_weights: bool = True
    attention: str = "content"
    gradient_checkpointing: bool = False

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        # nanoGPT's CPU "baby GPT" on characters of Shakespeare (0.80M parameters)
        "tiny": dict(vocab_size=65, block_size=64, n_layer=4, n_head=4, n_embd=128, bias=False),
        # GPT-2 small, 124,439,808 parameters
        "small": dict(vocab_size=50257, block_size=1024, n_layer=12, n_head=12, n_embd=768),
        # GPT-2 medium, 354,823,168 parameters
        "medium": dict(vocab_size=50257, block_size=1024, n_layer=24, n_head=16, n_embd=1024),
    }
# --8<-- [end:config]

    def __post_init__(self) -> None:
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                raise ValueError(f"GPTConfig: {name} must be a positive int, got {value!r}")
        if self.ffn_hidden is not None and (isinstance(self.ffn_hidden, bool) or not
                                            isinstance(self.ffn_hidden, int | np.integer)
                                            or self.ffn_hidden < 1):
            raise ValueError(f"GPTConfig: ffn_hidden must be a positive int or None, "
                             f"got {self.ffn_hidden!r}")
        for name, allowed in CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"GPTConfig: {name} must be one of "
                                 f"{', '.join(map(repr, allowed))}, got {getattr(self, name)!r}")
        if self.n_embd % self.n_head:
            raise ValueError(f"GPTConfig: n_embd={self.n_embd} must be divisible by "
                             f"n_head={self.n_head}")
        if self.position == "rope" and self.head_dim % 2:
            raise ValueError(f"GPTConfig: position='rope' needs an even head size, got "
                             f"n_embd // n_head = {self.head_dim}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"GPTConfig: dropout must be in [0, 1), got {self.dropout!r}")

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> GPTConfig:
        """A named configuration, with any field overridden: `preset("tiny", vocab_size=256)`.

        `tiny`: 4 layers, 4 heads, 128 wide, context 64, 65 characters, no biases (nanoGPT's
        Shakespeare baby GPT, trainable on a laptop CPU); `small` and `medium`: GPT-2's
        shapes (12/12/768 and 24/16/1024, context 1024, vocab 50257, biases, tied head).
        """
        if name not in cls.PRESETS:
            raise ValueError(f"GPTConfig.preset: unknown preset {name!r}; "
                             f"choose from {', '.join(map(repr, cls.PRESETS))}")
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(overrides) - fields)
        if unknown:
            raise ValueError(f"GPTConfig.preset: unknown field(s) {', '.join(unknown)}; "
                             f"GPTConfig has {', '.join(sorted(fields))}")
        return cls(**{**cls.PRESETS[name], **overrides})


def make_norm(kind: str, d: int, bias: bool) -> Module:
    """The norm a config asks for: `LayerNorm` (with a bias if `bias`) or `RMSNorm`."""
    return LayerNorm(d, bias=bias) if kind == "layernorm" else RMSNorm(d)


# --8<-- [start:residual]
def residual(x: Tensor, sublayer: Callable[[Tensor], Tensor], norm: Module,
             pre_norm: bool) -> Tensor:
    r"""One residual sublayer, with the norm before or after the addition.

    $$\text{pre-norm (GPT-2):}\quad x + f(\operatorname{N}(x)) \qquad\qquad
    \text{post-norm (2017):}\quad \operatorname{N}(x + f(x))$$

    Pre-norm leaves a clean identity path from the embeddings to the head, so gradients reach
    early layers undiminished and deep stacks train without warm-up tricks; post-norm
    normalises the stream itself after every sublayer.
    """
    if pre_norm:
        return x + sublayer(norm(x))  # (B, T, C)
    return norm(x + sublayer(x))  # (B, T, C)
# --8<-- [end:residual]


def make_attention(config: GPTConfig, rope: RotaryEmbedding | None,
                   alibi: ALiBi | None) -> Module:
    """Causal self-attention of the kind `config.attention` names."""
    common = dict(bias=config.bias, dropout=config.dropout, rope=rope, alibi=alibi)
    if config.attention == "content":
        return MultiHeadAttention(config.n_embd, config.n_head, causal=True, **common)
    return HybridAttention(config.n_embd, config.n_head, config.block_size,
                           mode=config.attention, **common)


# --8<-- [start:block]
class Block(Module):
    r"""One transformer block: tokens talk (attention), then think (feed-forward).

    $$x \leftarrow x + \operatorname{Attn}(\operatorname{N}_1(x)), \qquad
    x \leftarrow x + \operatorname{FFN}(\operatorname{N}_2(x))$$

    (pre-norm; post-norm moves each norm after its addition, see `residual`).
    """

    def __init__(self, config: GPTConfig, rope: RotaryEmbedding | None = None,
                 alibi: ALiBi | None = None) -> None:
        super().__init__()
        self.pre_norm = config.norm_placement == "pre"
        self.ln_1 = make_norm(config.norm, config.n_embd, config.bias)
        self.attn = make_attention(config, rope, alibi)
        self.drop = Dropout(config.dropout)  # on the attention branch (the FFN drops its own)
        self.ln_2 = make_norm(config.norm, config.n_embd, config.bias)
        self.ffn = FeedForward(config.n_embd, config.ffn_hidden, kind=config.ffn,
                               bias=config.bias, dropout=config.dropout)

    def forward(self, x: Tensor, cache: KVCache | None = None,
                head_gate: Tensor | None = None) -> Tensor:
        gate = {} if head_gate is None else {"head_gate": head_gate}  # (nh,) per-head scales

        def attend(h: Tensor) -> Tensor:
            return self.drop(self.attn(h, cache=cache, **gate))  # (B, T, C)

        x = residual(x, attend, self.ln_1, self.pre_norm)  # (B, T, C): tokens mix
        x = residual(x, self.ffn, self.ln_2, self.pre_norm)  # (B, T, C): each token alone
        return x
# --8<-- [end:block]


class GPT(Module):
    """A decoder-only transformer language model built from a `GPTConfig`.

    Example:
        >>> model = GPT(GPTConfig.preset("tiny"))
        >>> logits, loss = model(idx, targets)  # idx, targets: (B, T) ints
    """

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        if not isinstance(config, GPTConfig):
            raise TypeError(f"GPT: config must be a GPTConfig, got {type(config).__name__}")
        self.config = config
        C = config.n_embd
        # --8<-- [start:embeddings]
        self.wte = Embedding(config.vocab_size, C)  # token table W_E, (V, C)
        if config.position == "learned":
            self.wpe = LearnedPositionalEmbedding(config.block_size, C)  # (block_size, C)
        elif config.position == "sinusoidal":
            self.wpe = SinusoidalPositionalEncoding(config.block_size, C)  # fixed (block_size, C)
        else:
            self.wpe = None  # RoPE / ALiBi: positions enter inside attention
        rope = RotaryEmbedding(config.head_dim, config.block_size) \
            if config.position == "rope" else None  # one cos/sin table, shared by every layer
        alibi = ALiBi(config.n_head) if config.position == "alibi" else None
        self.drop = Dropout(config.dropout)
        # --8<-- [end:embeddings]
        self.blocks = ModuleList(Block(config, rope, alibi) for _ in range(config.n_layer))
        # --8<-- [start:head]
        # post-norm blocks already end in a norm; pre-norm needs one before the head
        self.ln_f = make_norm(config.norm, C, config.bias) \
            if config.norm_placement == "pre" else None
        self.lm_head = Linear(C, config.vocab_size, bias=False)  # (V, C) weight
        if config.tie_weights:
            self.lm_head.weight = self.wte.weight  # one Parameter, two uses, one gradient
        # --8<-- [end:head]
        self._init_gpt2()

    # --8<-- [start:init]
    def _init_gpt2(self) -> None:
        r"""GPT-2's initialisation: every `Linear` and `Embedding` weight
        $\sim \mathcal N(0, 0.02^2)$, biases zero, and the projections that write into the
        residual stream (`attn.proj`, `ffn.proj`) $\sim \mathcal N(0, (0.02/\sqrt{2L})^2)$:
        $2L$ of them add up in the stream, so its variance stays $O(1)$ with depth."""
        for module in self.modules():
            if isinstance(module, Linear):
                init.normal_(module.weight, 0.0, 0.02)
                if module.bias is not None:
                    init.zeros_(module.bias)
            elif isinstance(module, Embedding):
                init.normal_(module.weight, 0.0, 0.02)
        for name, param in self.named_parameters():
            if name.endswith("proj.weight"):
                init.scaled_residual_normal_(param, self.config.n_layer)
    # --8<-- [end:init]

    def forward(self, idx: Any, targets: Any = None,
                caches: list[KVCache] | None = None) -> tuple[Tensor, Tensor | None]:
        """`idx` `(B, T)` token ids -> `(logits (B, T, V), loss or None)`.

        `targets` `(B, T)`: the next token at every position (ids equal to -100 are ignored);
        the loss is their mean cross-entropy. `caches` (one `KVCache` per block, from
        `new_caches()`): `idx` holds only the *new* tokens, which sit at positions
        `cache.length ...`; keys and values of earlier ones come from the caches.
        """
        idx = np.asarray(idx.data if isinstance(idx, Tensor) else idx)
        if idx.ndim != 2 or idx.dtype.kind not in "iu":
            raise ValueError(f"GPT: idx must be integer token ids of shape (B, T), "
                             f"got {idx.dtype} {idx.shape}")
        T = idx.shape[1]
        if caches is not None and len(caches) != len(self.blocks):
            raise ValueError(f"GPT: caches must hold one KVCache per block ({len(self.blocks)}), "
                             f"got {len(caches)}")
        offset = caches[0].length if caches else 0
        if offset + T > self.config.block_size:
            raise ValueError(f"GPT: {T} tokens" + (f" after {offset} cached" if offset else "")
                             + f" exceed block_size={self.config.block_size}; crop the input "
                             f"to the last {self.config.block_size - offset} tokens")
        # --8<-- [start:forward]
        x = self.wte(idx)  # (B, T, C): $W_E[\text{idx}]$
        if self.wpe is not None:
            x = x + self.wpe(T, offset)  # (B, T, C) + (T, C): positions offset .. offset+T-1
        x = self.drop(x)  # (B, T, C)
        for i, block in enumerate(self.blocks):
            if caches is not None:
                x = block(x, caches[i])  # (B, T, C), appending this step's keys and values
            elif self.config.gradient_checkpointing:
                x = checkpoint(block, x)  # (B, T, C), intermediates recomputed in backward
            else:
                x = block(x)  # (B, T, C)
        if self.ln_f is not None:
            x = self.ln_f(x)  # (B, T, C)
        logits = self.lm_head(x)  # (B, T, V): $h W_E^\top$ when tied
        # --8<-- [end:forward]
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits, targets)  # mean over (B, T) of $-\log p(\text{target})$
        return logits, loss

    def new_caches(self) -> list[KVCache]:
        """Empty KV caches, one per block, for incremental decoding with `forward(caches=...)`."""
        return [KVCache() for _ in self.blocks]

    def generate(self, idx: Any, max_new_tokens: int, **kwargs: Any) -> Any:
        """`nima.generation.generate(self, idx, max_new_tokens, **kwargs)`: greedy, sampling,
        entropy-aware or beam search on the KV cache, in eval mode; the model's train/eval
        mode is restored afterwards. Returns a `GenerationOutput`."""
        from nima.generation import generate  # lazily: the model does not depend on decoding

        return generate(self, idx, max_new_tokens, **kwargs)

    def extra_repr(self) -> str:
        return f"{self.num_parameters():,} parameters"
