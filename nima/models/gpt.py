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

Every choice the literature argues about is a field of `GPTConfig`; the presets `baby`,
`tiny`, `small` and `medium` fix them to nanoGPT's CPU "baby GPT", a ≈10M-parameter model of
width 256, and GPT-2's 124M and 350M models.
Decoding (`nima.generation`) calls the same `forward`, with one cache per block, so that every
attention, position, feed-forward and norm variant decodes through the code it trained with.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from nima import functional as F
from nima._tensor import Tensor
from nima.nn import init
from nima.nn.attention import MultiHeadAttention
from nima.nn.cache import CacheGroup, next_segment
from nima.nn.checkpoint import checkpoint
from nima.nn.container import ModuleList
from nima.nn.dropout import Dropout
from nima.nn.echo_layer import EchoLayer
from nima.nn.embedding import Embedding
from nima.nn.feedforward import FeedForward
from nima.nn.hierarchical_pooling import POOLS
from nima.nn.hybrid_attention import HybridAttention
from nima.nn.linear import Linear
from nima.nn.memory_attention import MemoryAttention
from nima.nn.memory_bank import MemoryBank
from nima.nn.module import Module
from nima.nn.normalization import LayerNorm, RMSNorm
from nima.nn.parameter import Parameter
from nima.nn.positional import (
    ALiBi,
    LearnedPositionalEmbedding,
    RotaryEmbedding,
    SinusoidalPositionalEncoding,
    positions_from_padding,
)
from nima.nn.recursive_block import RecursiveBlock
from nima.nn.tree_attention import GATES, TreeAttention, tree_levels
from nima.settings import SettingsError, setting, validate

CHOICES: dict[str, tuple[str, ...]] = {
    "ffn": ("gelu", "relu", "glu", "swiglu"),
    "gelu_approximate": ("tanh", "none"),
    "norm": ("layernorm", "rmsnorm"),
    "norm_placement": ("pre", "post"),
    "position": ("learned", "sinusoidal", "rope", "alibi"),
    "attention": ("content", "reweight", "hybrid", "tree"),
    "tree_gate": GATES,
    "tree_pooling": POOLS,
    "init": ("gpt2", "xavier"),
}


# --8<-- [start:config]
@dataclass
class GPTConfig:
    r"""Every shape and architectural choice of a `GPT`; the defaults are GPT-2 small's.

    Each field is a `setting` carrying its meaning and range (listed in `docs/configuration.md`,
    where the YAML `model:` section takes exactly these fields); a bad value raises
    `SettingsError` naming the field. $V$ is `vocab_size`, $T$ `block_size`, $L$ `n_layer`,
    $C$ (also $d$) `n_embd`.
    """

    vocab_size: int = setting(50257, "token ids, V", ge=1)
    block_size: int = setting(1024, "context length, the most positions one forward sees", ge=1)
    n_layer: int = setting(12, "transformer blocks, L", ge=1)
    n_head: int = setting(12, "attention heads per block; must divide n_embd", ge=1)
    n_kv_head: int | None = setting(None, "key/value heads (grouped-query attention; 1 is "
                                          "multi-query); null is n_head", ge=1)
    n_embd: int = setting(768, "width of the residual stream, C", ge=1)
    ffn: str = setting("gelu", "feed-forward kind", choices=CHOICES["ffn"])
    ffn_hidden: int | None = setting(None, "FFN inner width; null is 4·n_embd (LLaMA's "
                                           "rounding for glu/swiglu)", ge=1)
    gelu_approximate: str = setting("tanh", "GELU of ffn 'gelu': tanh (GPT-2) or none (exact "
                                            "erf)", choices=CHOICES["gelu_approximate"])
    norm: str = setting("layernorm", "normalization", choices=CHOICES["norm"])
    norm_placement: str = setting("pre", "norm before (pre, GPT-2) or after (post, 2017) each "
                                         "branch", choices=CHOICES["norm_placement"])
    norm_eps: float | None = setting(None, "the norms' epsilon; null is 1e-5 for layernorm, "
                                           "1e-6 for rmsnorm", gt=0.0)
    position: str = setting("learned", "position encoding (learned and sinusoidal are added to "
                                       "the embeddings)", choices=CHOICES["position"])
    rope_theta: float = setting(10000.0, "RoPE's base θ", gt=0.0)
    bias: bool = setting(True, "biases in every Linear and LayerNorm (GPT-2 yes, LLaMA no)")
    attn_bias: bool | None = setting(None, "biases in attention's Linears; null follows bias")
    mlp_bias: bool | None = setting(None, "biases in the FFN's Linears; null follows bias")
    dropout: float = setting(0.0, "dropout on embeddings, attention weights and both residual "
                                  "branches", ge=0.0, lt=1.0)
    tie_weights: bool = setting(True, "the output head shares the token embedding")
    attention: str = setting("content", "attention kind (see HybridAttention; tree: "
                                        "TreeAttention)", choices=CHOICES["attention"])
    tree_layers: tuple[int, ...] | None = setting(None, "attention 'tree': its blocks, the others "
                                                        "content; null: every block without "
                                                        "memory", ge=0)
    tree_chunk: int = setting(16, "tree attention: children per node b", ge=2)
    tree_levels: int | None = setting(None, "tree attention: levels L above the tokens; null: "
                                            "b^L < block_size <= b^(L+1)", ge=1)
    tree_gate: str = setting("sigmoid", "tree attention: branch gates over the levels",
                             choices=CHOICES["tree_gate"])
    tree_pooling: str = setting("mean", "tree attention: how a chunk is summarised",
                                choices=CHOICES["tree_pooling"])
    memory_layers: tuple[int, ...] = setting((), "blocks whose attention also reads a bank of "
                                                 "earlier segments' keys (MemoryAttention)", ge=0)
    memory_capacity: int = setting(1024, "memory bank: entries per stream and head", ge=1)
    memory_top_k: int | None = setting(None, "memory bank: entries each query reads, the "
                                             "best-scoring; null reads them all", ge=1)
    memory_contrastive: float = setting(0.0, "weight of the memory keys' InfoNCE loss in the "
                                             "training loss; 0 is off", ge=0.0)
    echo_layers: tuple[int, ...] = setting((), "blocks with an echo layer: state slots carried "
                                               "from segment to segment (EchoLayer)", ge=0)
    echo_slots: int = setting(4, "echo layer: state vectors S", ge=1)
    tbptt: int = setting(1, "stream training: segments per backward, the echo state's graph kept "
                            "(TBPTT)", ge=1)
    streams: int = setting(1, "rows of the echo state and memory bank training carries: the "
                              "training batch size", ge=1)
    recursion_depth: int = setting(1, "blocks without echo or memory run R times, weights "
                                      "shared (RecursiveBlock); 1 is off", ge=1)
    act: bool = setting(False, "recursion halts per position (adaptive computation time)")
    ponder_cost: float = setting(0.01, "ACT: weight τ of the ponder cost in the training loss",
                                 ge=0.0)
    hybrid_alpha: float = setting(0.5, "hybrid attention: the reweight distribution's weight "
                                       "alpha (or each head's initial one)", ge=0.0, le=1.0)
    hybrid_learn_alpha: bool = setting(True, "hybrid attention: learn alpha_h = sigmoid(a_h) "
                                             "per head")
    embed_scale: bool = setting(False, "multiply the token embeddings by √n_embd (the 2017 "
                                       "Transformer's scaling)")
    init: str = setting("gpt2", "weight init: gpt2 (N(0, 0.02²), residual projections / "
                                "√(2L)) or xavier (Glorot uniform)",
                        choices=CHOICES["init"])
    gradient_checkpointing: bool = setting(False, "recompute each block in the backward "
                                                  "instead of storing it")

    owner: ClassVar[str] = "GPTConfig"  # how errors name a field: GPTConfig.n_head
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        # nanoGPT's CPU "baby GPT" on characters of Shakespeare, 804,096 parameters
        "baby": dict(vocab_size=65, block_size=64, n_layer=4, n_head=4, n_embd=128, bias=False),
        # ≈10M: 256 wide, 4 layers, 4 heads, FFN 1024, context 512, LLaMA's 32,000-token
        # vocabulary; 11,482,624 parameters (8,192,000 of them the token table)
        "tiny": dict(vocab_size=32000, block_size=512, n_layer=4, n_head=4, n_embd=256,
                     ffn_hidden=1024),
        # GPT-2 small, 124,439,808 parameters
        "small": dict(vocab_size=50257, block_size=1024, n_layer=12, n_head=12, n_embd=768),
        # GPT-2 medium, 354,823,168 parameters
        "medium": dict(vocab_size=50257, block_size=1024, n_layer=24, n_head=16, n_embd=1024),
    }
# --8<-- [end:config]

    def __post_init__(self) -> None:
        owner = self.owner
        validate(self, owner)
        if self.n_embd % self.n_head:
            raise SettingsError(f"{owner}.n_embd: must be divisible by n_head={self.n_head}, "
                                f"got {self.n_embd}")
        if self.n_kv_head is not None and self.n_head % self.n_kv_head:
            raise SettingsError(f"{owner}.n_kv_head: must divide n_head={self.n_head}, got "
                                f"{self.n_kv_head}")
        if self.position == "rope" and self.head_dim % 2:
            raise SettingsError(f"{owner}.position: 'rope' needs an even head size, got "
                                f"n_embd // n_head = {self.head_dim}")
        if self.attention != "content" and self.n_kv_head not in (None, self.n_head):
            raise SettingsError(f"{owner}.n_kv_head: attention {self.attention!r} needs "
                                f"n_kv_head = n_head, got {self.n_kv_head}")
        if self.hybrid_learn_alpha and self.hybrid_alpha in (0.0, 1.0):
            raise SettingsError(f"{owner}.hybrid_alpha: must be inside (0, 1) to be learned as "
                                f"sigmoid(logit) (or set hybrid_learn_alpha false), got "
                                f"{self.hybrid_alpha}")
        self._check_deep_tree_echo()

    # --8<-- [start:check_deep_tree_echo]
    def _check_deep_tree_echo(self) -> None:
        """The rules of the tree, memory, echo and recursion fields; each error names the field
        to change and its value."""
        owner = self.owner
        for key in ("tree_layers", "memory_layers", "echo_layers"):
            layers = list(getattr(self, key) or ())
            if any(i >= self.n_layer for i in layers) or len(set(layers)) < len(layers):
                raise SettingsError(f"{owner}.{key}: must be distinct blocks in [0, n_layer="
                                    f"{self.n_layer}), got {layers}")
        if self.tree_layers is not None and self.attention != "tree":
            raise SettingsError(f"{owner}.tree_layers: needs attention 'tree', got attention "
                                f"{self.attention!r}")
        both = sorted(set(self.tree_layers or ()) & set(self.memory_layers))
        if both:
            raise SettingsError(f"{owner}.memory_layers: block {both[0]} is in tree_layers too; "
                                f"a block's attention is tree or memory, got "
                                f"{list(self.memory_layers)}")
        if (self.tree_blocks or self.memory_layers) and self.position in ("rope", "alibi"):
            raise SettingsError(f"{owner}.position: tree and memory attention need positions "
                                f"added to the embeddings (learned, sinusoidal), got "
                                f"{self.position!r}")
        if self.memory_layers and self.n_kv_head not in (None, self.n_head):
            raise SettingsError(f"{owner}.n_kv_head: memory attention needs n_kv_head = n_head, "
                                f"got {self.n_kv_head}")
        if self.tree_blocks:
            if self.block_size < 2:
                raise SettingsError(f"{owner}.block_size: tree attention needs at least 2 "
                                    f"positions, got {self.block_size}")
            fits = tree_levels(self.block_size, self.tree_chunk)
            b, L = self.tree_chunk, self.tree_levels
            if L is not None and fits > L:
                raise SettingsError(f"{owner}.tree_levels: tree_chunk={b} with tree_levels={L} "
                                    f"reaches {b ** (L + 1)} positions, fewer than block_size="
                                    f"{self.block_size}; use tree_levels={fits} or a larger "
                                    f"tree_chunk, got {L}")
            if L is not None and fits < L:
                raise SettingsError(f"{owner}.tree_levels: tree_chunk={b} with tree_levels={L} "
                                    f"summarises chunks of {b ** L} tokens, no shorter than "
                                    f"block_size={self.block_size} (no query would see the top "
                                    f"level); use tree_levels={fits}, got {L}")
        if self.memory_contrastive > 0 and not self.memory_layers:
            raise SettingsError(f"{owner}.memory_contrastive: needs memory_layers, got "
                                f"{self.memory_contrastive}")
        if self.act and self.recursion_depth == 1:
            raise SettingsError(f"{owner}.act: adaptive halting needs recursion_depth > 1, got "
                                f"act true with recursion_depth=1")
        if self.recursion_depth > 1 and not self.recursive_blocks:
            raise SettingsError(f"{owner}.recursion_depth: every block has an echo or memory "
                                f"layer, whose state a recursion would write once per step; "
                                f"none can recurse, got {self.recursion_depth}")
        if self.gradient_checkpointing and (self.carries_state or self.act or
                                            self.memory_contrastive):
            raise SettingsError(f"{owner}.gradient_checkpointing: recomputing a block would "
                                f"write its echo state or memory bank twice and drop its side "
                                f"losses; not with echo_layers, memory_layers or act, got true")

    @property
    def tree_blocks(self) -> tuple[int, ...]:
        """The blocks with tree attention."""
        if self.attention != "tree":
            return ()
        if self.tree_layers is not None:
            return tuple(sorted(self.tree_layers))
        return tuple(i for i in range(self.n_layer) if i not in self.memory_layers)

    @property
    def recursive_blocks(self) -> tuple[int, ...]:
        """The blocks applied `recursion_depth` times: those without echo or memory."""
        if self.recursion_depth == 1:
            return ()
        stateful = set(self.echo_layers) | set(self.memory_layers)
        return tuple(i for i in range(self.n_layer) if i not in stateful)

    @property
    def stateful_or_recursive(self) -> str | None:
        """The first of the memory, echo and recursion fields switched on, as `field=value`
        (None if none is): a part that formats holding a plain GPT (Hugging Face folders, the
        NumPy export) cannot represent."""
        for key in ("memory_layers", "echo_layers", "recursion_depth"):
            value = getattr(self, key)
            if value and value != 1:  # a non-empty list of blocks, or a depth above 1
                return f"{key}={list(value) if isinstance(value, tuple) else value}"
        return None

    @property
    def carries_state(self) -> bool:
        """Whether the model carries state from one segment to the next (echo or memory
        layers): it trains on streams and decodes beyond `block_size`."""
        return bool(self.echo_layers or self.memory_layers)
    # --8<-- [end:check_deep_tree_echo]

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> GPTConfig:
        """A named configuration, with any field overridden: `preset("baby", vocab_size=256)`.

        `baby`: 4 layers, 4 heads, 128 wide, context 64, 65 characters, no biases (nanoGPT's
        Shakespeare baby GPT, trainable on a laptop CPU); `tiny`: ≈10M parameters at 4 layers,
        4 heads, 256 wide, FFN 1024, context 512, a 32,000-token vocabulary (11,482,624; big
        enough matrices that the GEMMs dominate a step); `small` and `medium`: GPT-2's shapes
        (12/12/768 and 24/16/1024, context 1024, vocab 50257, biases, tied head).
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


def make_norm(kind: str, d: int, bias: bool, eps: float | None = None) -> Module:
    """The norm a config asks for: `LayerNorm` (with a bias if `bias`) or `RMSNorm`, with
    epsilon `eps` (None: the norm's own default)."""
    extra = {} if eps is None else {"eps": eps}
    return LayerNorm(d, bias=bias, **extra) if kind == "layernorm" else RMSNorm(d, **extra)


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


def _bias(config: GPTConfig, which: bool | None) -> bool:
    return config.bias if which is None else which


# --8<-- [start:make_attention]
def make_attention(config: GPTConfig, rope: RotaryEmbedding | None,
                   alibi: ALiBi | None, layer: int = 0) -> Module:
    """Causal self-attention for block `layer`: `MemoryAttention` in the memory layers,
    `TreeAttention` in the tree layers, else the kind `config.attention` names."""
    bias, dropout = _bias(config, config.attn_bias), config.dropout
    if layer in config.memory_layers:
        return MemoryAttention(config.n_embd, config.n_head, config.block_size,
                               config.memory_capacity, batch_size=config.streams,
                               top_k=config.memory_top_k,
                               contrastive=config.memory_contrastive > 0, bias=bias,
                               dropout=dropout)
    if layer in config.tree_blocks:
        return TreeAttention(config.n_embd, config.n_head, config.block_size,
                             chunk_size=config.tree_chunk, levels=config.tree_levels,
                             pooling=config.tree_pooling, gate=config.tree_gate, bias=bias,
                             dropout=dropout)
    common = dict(bias=bias, dropout=dropout, rope=rope, alibi=alibi)
    if config.attention in ("content", "tree"):
        return MultiHeadAttention(config.n_embd, config.n_head, n_kv_head=config.n_kv_head,
                                  causal=True, **common)
    return HybridAttention(config.n_embd, config.n_head, config.block_size,
                           mode=config.attention, alpha=config.hybrid_alpha,
                           learn_alpha=config.hybrid_learn_alpha, **common)
# --8<-- [end:make_attention]


# --8<-- [start:block]
class Block(Module):
    r"""One transformer block: tokens talk (attention), then think (feed-forward).

    $$x \leftarrow x + \operatorname{Attn}(\operatorname{N}_1(x)), \qquad
    x \leftarrow x + \operatorname{FFN}(\operatorname{N}_2(x))$$

    (pre-norm; post-norm moves each norm after its addition, see `residual`). With a `cache`
    (from `new_cache`), `x` holds only the new tokens and attention appends their keys and
    values to it: the same code trains on whole sequences and decodes token by token. A padded
    batch adds `key_padding_mask` `(B, S)` and the keys' `positions` `(B, S)` (see
    `GPT.padding`), which only attention reads.

    In the blocks `config.echo_layers` an echo layer reads the state carried from earlier
    segments between the two, $x \leftarrow x + \operatorname{Echo}(\operatorname{N}_e(x))$.
    """

    def __init__(self, config: GPTConfig, rope: RotaryEmbedding | None = None,
                 alibi: ALiBi | None = None, layer: int = 0) -> None:
        super().__init__()
        self.pre_norm = config.norm_placement == "pre"
        self.ln_1 = make_norm(config.norm, config.n_embd, config.bias, config.norm_eps)
        self.attn = make_attention(config, rope, alibi, layer)
        self.drop = Dropout(config.dropout)  # on the attention branch (the FFN drops its own)
        self.echo = None
        if layer in config.echo_layers:
            self.ln_e = make_norm(config.norm, config.n_embd, config.bias, config.norm_eps)
            self.echo = EchoLayer(config.n_embd, config.n_head, config.block_size,
                                  slots=config.echo_slots, batch_size=config.streams,
                                  tbptt=config.tbptt, bias=_bias(config, config.attn_bias))
        self.ln_2 = make_norm(config.norm, config.n_embd, config.bias, config.norm_eps)
        self.ffn = FeedForward(config.n_embd, config.ffn_hidden, kind=config.ffn,
                               bias=_bias(config, config.mlp_bias), dropout=config.dropout,
                               approximate=config.gelu_approximate)

    def forward(self, x: Tensor, cache: Any = None, *, key_padding_mask: Any = None,
                positions: np.ndarray | None = None) -> Tensor:
        attn_cache, echo_cache = cache.parts if self.echo is not None and cache is not None \
            else (cache, None)

        def attend(h: Tensor) -> Tensor:
            if key_padding_mask is None:  # the unpadded batch: nothing more to say
                return self.drop(self.attn(h, cache=attn_cache))  # (B, T, C)
            return self.drop(self.attn(h, cache=attn_cache, key_padding_mask=key_padding_mask,
                                       positions=positions))  # (B, T, C)

        def recall(h: Tensor) -> Tensor:
            return self.drop(self.echo(h, cache=echo_cache))  # (B, T, C): the carried state

        x = residual(x, attend, self.ln_1, self.pre_norm)  # (B, T, C): tokens mix
        if self.echo is not None:
            x = residual(x, recall, self.ln_e, self.pre_norm)  # (B, T, C): earlier segments
        x = residual(x, self.ffn, self.ln_2, self.pre_norm)  # (B, T, C): each token alone
        return x
# --8<-- [end:block]

    def new_cache(self, max_len: int | None = None) -> Any:
        """The block's empty decoding state for sequences of at most `max_len` positions: its
        attention's (with an echo layer, a `CacheGroup` of the attention's and the echo's)."""
        attn = self.attn.new_cache(max_len)
        return attn if self.echo is None else CacheGroup([attn, self.echo.new_cache(max_len)])


class GPT(Module):
    """A decoder-only transformer language model built from a `GPTConfig`.

    Three pieces, each usable alone: `embed` (token ids at a position offset -> the residual
    stream $h_0$), the `blocks`, and `head` (final norm and output layer -> logits). `forward`
    strings them together, for training on whole sequences and for decoding with KV caches
    alike — one forward, so what trains is what samples.

    Example:
        >>> model = GPT(GPTConfig.preset("baby"))
        >>> logits, loss = model(idx, targets)  # idx, targets: (B, T) ints
    """

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        if not isinstance(config, GPTConfig):
            raise TypeError(f"GPT: config must be a GPTConfig, got {type(config).__name__}")
        self.config = config
        # padded batches: content, reweight or hybrid attention only, and no carried state
        self.pads = not (config.tree_blocks or config.carries_state or config.recursive_blocks)
        C = config.n_embd
        # --8<-- [start:embeddings]
        self.wte = Embedding(config.vocab_size, C)  # token table W_E, (V, C)
        if config.position == "learned":
            self.wpe = LearnedPositionalEmbedding(config.block_size, C)  # (block_size, C)
        elif config.position == "sinusoidal":
            self.wpe = SinusoidalPositionalEncoding(config.block_size, C)  # fixed (block_size, C)
        else:
            self.wpe = None  # RoPE / ALiBi: positions enter inside attention
        rope = RotaryEmbedding(config.head_dim, config.block_size, base=config.rope_theta) \
            if config.position == "rope" else None  # one cos/sin table, shared by every layer
        alibi = ALiBi(config.n_head) if config.position == "alibi" else None
        self.drop = Dropout(config.dropout)
        # --8<-- [end:embeddings]
        self.blocks = ModuleList(self._block(config, rope, alibi, i) for i in range(config.n_layer))
        # --8<-- [start:head]
        # post-norm blocks already end in a norm; pre-norm needs one before the head
        self.ln_f = make_norm(config.norm, C, config.bias, config.norm_eps) \
            if config.norm_placement == "pre" else None
        self.lm_head = Linear(C, config.vocab_size, bias=False)  # (V, C) weight
        if config.tie_weights:
            self.lm_head.weight = self.wte.weight  # one Parameter, two uses, one gradient
        # --8<-- [end:head]
        if config.init == "xavier":
            self._init_xavier()
        else:
            self._init_gpt2()

    # --8<-- [start:recursive_blocks]
    @staticmethod
    def _block(config: GPTConfig, rope: RotaryEmbedding | None, alibi: ALiBi | None,
               layer: int) -> Module:
        """Block `layer`; in `config.recursive_blocks`, wrapped to be applied `recursion_depth`
        times with shared weights."""
        block = Block(config, rope, alibi, layer)
        if layer not in config.recursive_blocks:
            return block
        return RecursiveBlock(block, config.n_embd, config.recursion_depth, act=config.act,
                              ponder_weight=config.ponder_cost)
    # --8<-- [end:recursive_blocks]

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
        for module in self.modules():
            if isinstance(module, RecursiveBlock) and module.act:
                init.ones_(module.halt.bias)  # ACT's own start: p = 0.73, halting after ~2 steps
    # --8<-- [end:init]

    # --8<-- [start:init_xavier]
    def _init_xavier(self) -> None:
        r"""The 2017 Transformer's initialisation (as the Annotated Transformer writes it):
        every matrix — `Linear` weights, the token table, learned positions —
        $\sim \mathcal U(-a, a)$ with $a = \sqrt{6 / (n_\text{in} + n_\text{out})}$, biases
        zero; norms keep their ones. A fused layer (`qkv`) counts its whole output width, as
        PyTorch's `nn.MultiheadAttention` does with its `in_proj_weight`."""
        for module in self.modules():
            if isinstance(module, Linear) and module.bias is not None:
                init.zeros_(module.bias)
        for _, param in self.named_parameters():
            if param.ndim >= 2:
                init.xavier_uniform_(param)
    # --8<-- [end:init_xavier]

    def token_ids(self, idx: Any, caches: list[Any] | None = None) -> tuple[np.ndarray, int]:
        """Check the model's inputs once, at its boundary: `idx` as int ids `(B, T)` and the
        position `offset` of its first token (the caches' length, 0 without caches).

        Raises:
            ValueError: `idx` is not `(B, T)` integer ids in `[0, vocab_size)`, the caches are
                not one per block, or `offset + T` exceeds `block_size`.
        """
        idx = np.asarray(idx.data if isinstance(idx, Tensor) else idx)
        V = self.config.vocab_size
        if idx.ndim != 2 or idx.dtype.kind not in "iu":
            raise ValueError(f"GPT: idx must be integer token ids of shape (B, T), "
                             f"got {idx.dtype} {idx.shape}")
        if idx.size and (idx.min() < 0 or idx.max() >= V):
            bad = idx.min() if idx.min() < 0 else idx.max()
            raise ValueError(f"GPT: token id {bad} is outside the vocabulary [0, {V})")
        if caches is not None and len(caches) != len(self.blocks):
            raise ValueError(f"GPT: caches must hold one cache per block ({len(self.blocks)}), "
                             f"got {len(caches)}")
        offset = caches[0].length if caches else 0
        T = idx.shape[1]
        if offset + T > self.config.block_size:
            raise ValueError(f"GPT: {T} tokens" + (f" after {offset} cached" if offset else "")
                             + f" exceed block_size={self.config.block_size}; crop the input "
                             f"to the last {self.config.block_size - offset} tokens")
        return idx, offset

    # --8<-- [start:padding]
    def padding(self, idx: np.ndarray, attention_mask: Any = None,
                caches: list[Any] | None = None) -> tuple[np.ndarray | None, np.ndarray | None]:
        r"""The padding of a batch and the positions it implies: `(key_padding_mask, positions)`,
        both `(B, S)` over every key (`S` = cached + new), or `(None, None)` when nothing is
        padding — then positions are $0, 1, \dots$ and the forward needs no mask at all.

        `attention_mask` `(B, T)` marks `idx`'s real tokens with 1 (or True) and padding with 0,
        as Hugging Face's; left and right padding alike. The caches remember the padding of
        earlier steps (`KVCache.padding`), so decoding passes the mask with the prompt only.
        A token's position counts the real tokens before it (`positions_from_padding`), so each
        row gets the positions — hence the logits — it would have alone.

        Raises:
            ValueError: `attention_mask` is not 0/1 (or bool) of `idx`'s shape.
        """
        new = None
        if attention_mask is not None:
            mask = np.asarray(attention_mask.data if isinstance(attention_mask, Tensor)
                              else attention_mask)
            if mask.shape != idx.shape or (mask.dtype != np.bool_ and (
                    mask.dtype.kind not in "iu" or (mask.size and mask.max() > 1)
                    or (mask.size and mask.min() < 0))):
                raise ValueError(f"GPT: attention_mask must be 0/1 or bool of idx's shape "
                                 f"{idx.shape} (1 = real token, 0 = padding), got {mask.dtype} "
                                 f"{mask.shape}")
            new = ~mask.astype(bool)  # (B, T): True at padding
            if not new.any():
                new = None
        if not self.pads:
            if new is not None:
                raise ValueError(f"GPT: attention_mask with padding needs content, reweight or "
                                 f"hybrid attention in every block, without echo, memory or "
                                 f"recursion; this model has "
                                 f"{self.config.stateful_or_recursive or 'tree attention'}")
            return None, None
        # (B, S): the caches' padding, then the new tokens'
        padding = caches[0].padding_mask(idx.shape[1], new) if caches else new
        if padding is None:
            return None, None
        return padding, positions_from_padding(padding)  # (B, S) each
    # --8<-- [end:padding]

    # --8<-- [start:embed]
    def embed(self, idx: np.ndarray, offset: int = 0,
              positions: np.ndarray | None = None) -> Tensor:
        r"""$h_0 = W_E[\text{idx}] + P_{\text{offset} \dots \text{offset} + T - 1}$ (or, given
        `positions` `(B, T)`, $P$ at each token's own position), then dropout: `(B, T)` ids
        (checked by `token_ids`) -> `(B, T, C)`. With `embed_scale`, the token embeddings are
        multiplied by $\sqrt C$ first."""
        x = self.wte(idx)  # (B, T, C): $W_E[\text{idx}]$
        if self.config.embed_scale:
            x = x * math.sqrt(self.config.n_embd)  # $\sqrt{C}\,W_E[\text{idx}]$
        if self.wpe is not None:
            # (B, T, C) + (T, C) from offset, or + (B, T, C) at each token's position
            x = x + self.wpe(idx.shape[1], offset, positions)
        return self.drop(x)  # (B, T, C)
    # --8<-- [end:embed]

    # --8<-- [start:head_fn]
    def head(self, x: Tensor) -> Tensor:
        r"""Logits $\operatorname{N}_f(h_L)\,W_E^\top$ (tied) from the last residual stream:
        `(B, T, C)` -> `(B, T, V)`."""
        if self.ln_f is not None:
            x = self.ln_f(x)  # (B, T, C)
        return self.lm_head(x)  # (B, T, V)
    # --8<-- [end:head_fn]

    def forward(self, idx: Any, targets: Any = None, attention_mask: Any = None,
                caches: list[Any] | None = None) -> tuple[Tensor, Tensor | None]:
        """`idx` `(B, T)` token ids -> `(logits (B, T, V), loss or None)`.

        `targets` `(B, T)`: the next token at every position (ids equal to -100 are ignored);
        the loss is their mean cross-entropy. `attention_mask` `(B, T)`: 1 at real tokens, 0
        at padding (left or right), as Hugging Face's; each row's logits are then those of its
        real tokens alone, and targets at padding are ignored. `caches` (one per block, from
        `new_caches()`): `idx` holds only the *new* tokens, which sit at positions
        `cache.length ...`; keys and values (and the padding) of earlier ones come from the
        caches.
        """
        idx, offset = self.token_ids(idx, caches)
        padding, positions = self.padding(idx, attention_mask, caches)  # (B, S) each, or None
        T = idx.shape[1]
        # --8<-- [start:forward]
        x = self.embed(idx, offset, None if positions is None else positions[:, -T:])  # $h_0$
        for i, block in enumerate(self.blocks):
            run = block if padding is None else \
                functools.partial(block, key_padding_mask=padding, positions=positions)
            if caches is not None:
                x = run(x, caches[i])  # (B, T, C), appending this step's keys and values
            elif self.config.gradient_checkpointing:
                x = checkpoint(run, x)  # (B, T, C), intermediates recomputed in backward
            else:
                x = run(x)  # (B, T, C)
        logits = self.head(x)  # (B, T, V)
        # --8<-- [end:forward]
        loss = None
        if targets is not None:
            if padding is not None:  # nothing is predicted at padding
                targets = np.asarray(targets.data if isinstance(targets, Tensor) else targets)
                if targets.shape != idx.shape:
                    raise ValueError(f"GPT: targets must have idx's shape {idx.shape}, got "
                                     f"{targets.shape}")
                targets = np.where(padding[:, -T:], -100, targets)  # (B, T)
            loss = F.cross_entropy(logits, targets)  # mean over (B, T) of $-\log p(\text{target})$
            side = self.side_loss() if self.training and caches is None else None
            if side is not None:
                loss = loss + side  # ACT's ponder cost, the memory keys' InfoNCE
        return logits, loss

    # --8<-- [start:side_loss]
    def side_loss(self) -> Tensor | None:
        r"""The side losses of the last forward, weighted and summed (None if there are none):
        $\tau\bar\rho$ of each recursion with ACT (`ponder_cost` $\tau$) and $w\,\mathcal
        L_\text{InfoNCE}$ of each memory layer (`memory_contrastive` $w$). In training mode
        `forward` adds them to the cross-entropy it returns; in eval mode the loss is the
        cross-entropy alone, comparable with any other model's."""
        terms = []
        for module in self.modules():
            if isinstance(module, RecursiveBlock) and module.act:
                terms.append(module.aux_loss)  # already times ponder_cost
            elif isinstance(module, MemoryAttention) and module.aux_loss is not None:
                terms.append(module.aux_loss * self.config.memory_contrastive)
        return sum(terms[1:], terms[0]) if terms else None
    # --8<-- [end:side_loss]

    @classmethod
    def from_pretrained(cls, path: Any, *, dtype: Any = np.float32) -> GPT:
        """A GPT-2 or LLaMA-style model from a Hugging Face folder (`config.json` and
        `model.safetensors`, sharded or not): `nima.models.pretrained.load_pretrained`."""
        from nima.models.pretrained import load_pretrained  # it maps this module's names

        return load_pretrained(path, dtype=dtype)

    def save_pretrained(self, path: Any, **options: Any) -> None:
        """Write this model as a Hugging Face folder that `transformers` loads:
        `nima.models.pretrained.save_pretrained`."""
        from nima.models.pretrained import save_pretrained

        save_pretrained(self, path, **options)

    # --8<-- [start:crop_block_size]
    def crop_block_size(self, block_size: int) -> None:
        """Shorten the context to `block_size` positions, in place (nanoGPT's model surgery
        for fine-tuning on shorter sequences): every per-position table keeps its first
        `block_size` rows — the learned positions `wpe`, the sinusoidal and RoPE tables,
        reweight attention's logits per key position — so the model computes exactly the
        logits it did on any sequence that fits.

        Raises:
            ValueError: `block_size` is not in `[1, config.block_size]`.
        """
        old = self.config.block_size
        if not isinstance(block_size, int) or not 1 <= block_size <= old:
            raise ValueError(f"GPT.crop_block_size: block_size must be in [1, {old}] (a model "
                             f"cannot learn positions it never had), got {block_size!r}")
        self.config = dataclasses.replace(self.config, block_size=block_size)
        for module in self.modules():  # slicing is idempotent: a shared table may come twice
            if isinstance(module, LearnedPositionalEmbedding):
                w = module.weight  # (block_size, C)
                module.weight = Parameter(w.data[:block_size].copy(), decay=w.decay)
                module.max_len = block_size
            elif isinstance(module, SinusoidalPositionalEncoding):
                module.pe = Tensor(module.pe.data[:block_size].copy())  # (block_size, C)
                module.max_len = block_size
            elif isinstance(module, RotaryEmbedding):
                module.cos = Tensor(module.cos.data[:block_size].copy())  # (block_size, hd/2)
                module.sin = Tensor(module.sin.data[:block_size].copy())
                module.max_len = block_size
            elif isinstance(module, HybridAttention):
                if module.mode != "content":  # reweight rows: head h, key position j
                    rw, nh = module.reweight, module.n_head
                    rows = (np.arange(nh)[:, None] * old + np.arange(block_size)).ravel()
                    rw.weight = Parameter(rw.weight.data[rows].copy(), decay=rw.weight.decay)
                    if rw.bias is not None:
                        rw.bias = Parameter(rw.bias.data[rows].copy(), decay=rw.bias.decay)
                    rw.out_features = nh * block_size
                module.block_size = block_size
    # --8<-- [end:crop_block_size]

    def new_caches(self) -> list[Any]:
        """Empty decoding caches, one per block, each holding up to `block_size` positions, for
        incremental decoding with `forward(caches=...)`."""
        return [block.new_cache(self.config.block_size) for block in self.blocks]

    # --8<-- [start:segments]
    def next_segment(self, caches: list[Any]) -> None:
        """Decoding past `block_size` with echo or memory layers: after a full segment, forget
        the window (positions start again at 0) and keep the echo state and memory bank —
        exactly what training on consecutive segments does."""
        for cache in caches:
            next_segment(cache)

    def reset_state(self) -> None:
        """Start the training streams afresh: empty every memory bank, return every echo layer
        to its initial state."""
        for module in self.modules():
            if isinstance(module, EchoLayer | MemoryBank):
                module.reset()
    # --8<-- [end:segments]

    def extra_repr(self) -> str:
        return f"{self.num_parameters():,} parameters"
