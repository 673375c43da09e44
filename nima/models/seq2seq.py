r"""The encoder–decoder `Transformer` of "Attention Is All You Need", for sequence-to-sequence.

The **encoder** reads the whole source at once — self-attention without a causal mask, so every
source token sees every other — and turns it into a *memory* $M$, one vector per source token.
The **decoder** is a GPT with one more sublayer per block: after causal self-attention over
the target so far, **cross-attention** lets each target position query the memory:

$$\operatorname{CrossAttn}(Y, M) = \operatorname{softmax}\!\left(\frac{(Y W_Q)(M W_K)^\top}
{\sqrt{d_k}}\right) M W_V.$$

Batches hold sequences of different lengths, padded with `pad_id`. Padding must not leak into
real tokens: a **source padding mask** hides padded source keys from the encoder's
self-attention and from the decoder's cross-attention; a **target padding mask** (with the
causal mask) hides padded target keys, and the loss ignores padded target positions.

Training uses **teacher forcing**: the decoder gets the true target shifted right
(`tgt_in = [BOS, y_1, ..., y_{n-1}]`) and predicts `tgt_out = [y_1, ..., y_n]` at every
position in one forward pass, instead of feeding back its own guesses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from nima import functional as F
from nima._tensor import Tensor
from nima.models.gpt import make_norm, residual
from nima.nn import init
from nima.nn.attention import MultiHeadAttention
from nima.nn.container import ModuleList
from nima.nn.dropout import Dropout
from nima.nn.embedding import Embedding
from nima.nn.feedforward import FeedForward
from nima.nn.linear import Linear
from nima.nn.module import Module
from nima.nn.positional import LearnedPositionalEmbedding, SinusoidalPositionalEncoding
from nima.settings import check_int


@dataclass
class TransformerConfig:
    """Shapes and choices of an encoder–decoder `Transformer`.

    Attributes:
        src_vocab_size: source token ids.
        tgt_vocab_size: target token ids.
        max_len: the longest source or target sequence.
        d_model: the width $d$ of both stacks.
        n_head: attention heads; must divide `d_model`.
        n_encoder_layers: encoder blocks.
        n_decoder_layers: decoder blocks.
        ffn: feed-forward kind (`"relu"` in 2017, or `"gelu"`, `"glu"`, `"swiglu"`).
        ffn_hidden: the FFN's inner width; None is the `FeedForward` default ($4d$).
        norm: `"layernorm"` | `"rmsnorm"`.
        norm_placement: `"pre"` (easier to train) | `"post"` (the 2017 paper).
        position: `"sinusoidal"` (2017) | `"learned"`, added to both stacks' embeddings.
        bias: biases in every `Linear` and `LayerNorm`.
        dropout: on embeddings, attention weights and residual branches.
        pad_id: the padding id, in sources and targets alike.
        tie_weights: the output head reuses the target embedding.
    """

    src_vocab_size: int
    tgt_vocab_size: int
    max_len: int = 128
    d_model: int = 128
    n_head: int = 4
    n_encoder_layers: int = 2
    n_decoder_layers: int = 2
    ffn: str = "relu"
    ffn_hidden: int | None = None
    norm: str = "layernorm"
    norm_placement: str = "pre"
    position: str = "sinusoidal"
    bias: bool = True
    dropout: float = 0.0
    pad_id: int = 0
    tie_weights: bool = True

    def __post_init__(self) -> None:
        for name in ("src_vocab_size", "tgt_vocab_size", "max_len", "d_model", "n_head",
                     "n_encoder_layers", "n_decoder_layers"):
            check_int(f"TransformerConfig.{name}", getattr(self, name), ge=1)
        if self.d_model % self.n_head:
            raise ValueError(f"TransformerConfig: d_model={self.d_model} must be divisible by "
                             f"n_head={self.n_head}")
        if self.ffn_hidden is not None and (not isinstance(self.ffn_hidden, int)
                                            or self.ffn_hidden < 1):
            raise ValueError(f"TransformerConfig: ffn_hidden must be a positive int or None, "
                             f"got {self.ffn_hidden!r}")
        choices = {"ffn": ("relu", "gelu", "glu", "swiglu"), "norm": ("layernorm", "rmsnorm"),
                   "norm_placement": ("pre", "post"), "position": ("sinusoidal", "learned")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"TransformerConfig: {name} must be one of "
                                 f"{', '.join(map(repr, allowed))}, got {getattr(self, name)!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"TransformerConfig: dropout must be in [0, 1), got {self.dropout!r}")


# --8<-- [start:layers]
class EncoderLayer(Module):
    r"""$x \leftarrow x + \operatorname{SelfAttn}(\operatorname{N}_1(x))$ (no causal mask),
    then $x \leftarrow x + \operatorname{FFN}(\operatorname{N}_2(x))$."""

    def __init__(self, c: TransformerConfig) -> None:
        super().__init__()
        self.pre_norm = c.norm_placement == "pre"
        self.ln_1 = make_norm(c.norm, c.d_model, c.bias)
        self.self_attn = MultiHeadAttention(c.d_model, c.n_head, bias=c.bias, dropout=c.dropout)
        self.ln_2 = make_norm(c.norm, c.d_model, c.bias)
        self.ffn = FeedForward(c.d_model, c.ffn_hidden, kind=c.ffn, bias=c.bias,
                               dropout=c.dropout)
        self.drop = Dropout(c.dropout)

    def forward(self, x: Tensor, src_pad: np.ndarray) -> Tensor:
        def attend(h: Tensor) -> Tensor:  # every source token sees every real source token
            return self.drop(self.self_attn(h, key_padding_mask=src_pad))  # (B, S, d)

        x = residual(x, attend, self.ln_1, self.pre_norm)  # (B, S, d)
        return residual(x, self.ffn, self.ln_2, self.pre_norm)  # (B, S, d)


class DecoderLayer(Module):
    r"""Causal self-attention, then cross-attention to the memory $M$, then the FFN:

    $$y \leftarrow y + \operatorname{SelfAttn}_\text{causal}(\operatorname{N}_1(y)), \quad
    y \leftarrow y + \operatorname{CrossAttn}(\operatorname{N}_2(y), M), \quad
    y \leftarrow y + \operatorname{FFN}(\operatorname{N}_3(y)).$$
    """

    def __init__(self, c: TransformerConfig) -> None:
        super().__init__()
        self.pre_norm = c.norm_placement == "pre"
        self.ln_1 = make_norm(c.norm, c.d_model, c.bias)
        self.self_attn = MultiHeadAttention(c.d_model, c.n_head, bias=c.bias, dropout=c.dropout,
                                            causal=True)
        self.ln_2 = make_norm(c.norm, c.d_model, c.bias)
        self.cross_attn = MultiHeadAttention(c.d_model, c.n_head, bias=c.bias,
                                             dropout=c.dropout, cross=True)
        self.ln_3 = make_norm(c.norm, c.d_model, c.bias)
        self.ffn = FeedForward(c.d_model, c.ffn_hidden, kind=c.ffn, bias=c.bias,
                               dropout=c.dropout)
        self.drop = Dropout(c.dropout)

    def forward(self, y: Tensor, memory: Tensor, tgt_pad: np.ndarray,
                src_pad: np.ndarray) -> Tensor:
        def attend(h: Tensor) -> Tensor:  # earlier (and real) target tokens only
            return self.drop(self.self_attn(h, key_padding_mask=tgt_pad))  # (B, T, d)

        def look_up(h: Tensor) -> Tensor:  # queries from the target, keys/values from memory
            return self.drop(self.cross_attn(h, memory, key_padding_mask=src_pad))  # (B, T, d)

        y = residual(y, attend, self.ln_1, self.pre_norm)  # (B, T, d)
        y = residual(y, look_up, self.ln_2, self.pre_norm)  # (B, T, d)
        return residual(y, self.ffn, self.ln_3, self.pre_norm)  # (B, T, d)
# --8<-- [end:layers]


class Transformer(Module):
    """Encoder–decoder transformer: `forward(src, tgt_in, tgt_out)` -> `(logits, loss)`.

    Example:
        >>> model = Transformer(TransformerConfig(src_vocab_size=13, tgt_vocab_size=13))
        >>> logits, loss = model(src, tgt_in, tgt_out)  # (B, S), (B, T), (B, T) ints
    """

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.config = c = config
        self.src_embed = Embedding(c.src_vocab_size, c.d_model)  # (V_src, d)
        self.tgt_embed = Embedding(c.tgt_vocab_size, c.d_model)  # (V_tgt, d)
        position = LearnedPositionalEmbedding if c.position == "learned" \
            else SinusoidalPositionalEncoding
        self.src_pos = position(c.max_len, c.d_model)  # (max_len, d)
        self.tgt_pos = position(c.max_len, c.d_model)  # (max_len, d)
        self.drop = Dropout(c.dropout)
        self.encoder = ModuleList(EncoderLayer(c) for _ in range(c.n_encoder_layers))
        self.decoder = ModuleList(DecoderLayer(c) for _ in range(c.n_decoder_layers))
        pre = c.norm_placement == "pre"
        self.enc_ln = make_norm(c.norm, c.d_model, c.bias) if pre else None
        self.dec_ln = make_norm(c.norm, c.d_model, c.bias) if pre else None
        self.head = Linear(c.d_model, c.tgt_vocab_size, bias=False)  # (V_tgt, d) weight
        # embeddings ~ N(0, 1/d), scaled by sqrt(d) in `_embed`: unit-variance inputs, and
        # small logits from a head that shares them (as in the 2017 paper and fairseq)
        init.normal_(self.src_embed.weight, 0.0, c.d_model ** -0.5)
        init.normal_(self.tgt_embed.weight, 0.0, c.d_model ** -0.5)
        if c.tie_weights:
            self.head.weight = self.tgt_embed.weight

    def _ids(self, name: str, ids: Any) -> np.ndarray:
        ids = np.asarray(ids.data if isinstance(ids, Tensor) else ids)
        if ids.ndim != 2 or ids.dtype.kind not in "iu":
            raise ValueError(f"Transformer: {name} must be integer ids of shape (B, T), "
                             f"got {ids.dtype} {ids.shape}")
        if ids.shape[1] > self.config.max_len:
            raise ValueError(f"Transformer: {name} has {ids.shape[1]} positions, more than "
                             f"max_len={self.config.max_len}")
        return ids

    def _embed(self, ids: np.ndarray, table: Embedding, pos: Module) -> Tensor:
        r"""$\sqrt d\, E[\text{ids}] + P$, then dropout."""
        x = table(ids) * math.sqrt(self.config.d_model)  # (B, T, d)
        return self.drop(x + pos(ids.shape[1]))  # (B, T, d) + (T, d)

    # --8<-- [start:encode]
    def encode(self, src: Any) -> tuple[Tensor, np.ndarray]:
        """`src` `(B, S)` -> (memory `(B, S, d)`, source padding mask `(B, S)`, True at pads)."""
        src = self._ids("src", src)
        src_pad = src == self.config.pad_id  # (B, S)
        x = self._embed(src, self.src_embed, self.src_pos)  # (B, S, d)
        for layer in self.encoder:
            x = layer(x, src_pad)  # (B, S, d)
        if self.enc_ln is not None:
            x = self.enc_ln(x)  # (B, S, d)
        return x, src_pad

    def decode(self, tgt_in: Any, memory: Tensor, src_pad: np.ndarray) -> Tensor:
        """`tgt_in` `(B, T)` and the encoder's output -> next-token logits `(B, T, V_tgt)`."""
        tgt_in = self._ids("tgt_in", tgt_in)
        tgt_pad = tgt_in == self.config.pad_id  # (B, T)
        y = self._embed(tgt_in, self.tgt_embed, self.tgt_pos)  # (B, T, d)
        for layer in self.decoder:
            y = layer(y, memory, tgt_pad, src_pad)  # (B, T, d)
        if self.dec_ln is not None:
            y = self.dec_ln(y)  # (B, T, d)
        return self.head(y)  # (B, T, V_tgt)
    # --8<-- [end:encode]

    # --8<-- [start:forward]
    def forward(self, src: Any, tgt_in: Any,
                tgt_out: Any = None) -> tuple[Tensor, Tensor | None]:
        """Teacher forcing: logits for every target position given the true prefix `tgt_in`;
        with `tgt_out` also the mean cross-entropy over its non-padding positions."""
        memory, src_pad = self.encode(src)  # (B, S, d), (B, S)
        logits = self.decode(tgt_in, memory, src_pad)  # (B, T, V_tgt)
        loss = None
        if tgt_out is not None:
            loss = F.cross_entropy(logits, tgt_out, ignore_index=self.config.pad_id)
        return logits, loss
    # --8<-- [end:forward]
