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

Decoding runs the same decoder with caches — per layer a `DecoderCache`, the self-attention's
KV cache and the cross-attention's keys and values of the memory — through `condition(src)`:
the decoder given the encoded sources, a language model over target tokens that
`nima.generation.generate` drives as it drives a GPT (greedy, sampling, beam search).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from nima import functional as F
from nima._tensor import Tensor
from nima.autograd import no_grad
from nima.models.gpt import make_norm, residual
from nima.nn import init
from nima.nn.attention import KVCache, MultiHeadAttention
from nima.nn.container import ModuleList
from nima.nn.dropout import Dropout
from nima.nn.embedding import Embedding
from nima.nn.feedforward import FeedForward
from nima.nn.linear import Linear
from nima.nn.module import Module
from nima.nn.positional import LearnedPositionalEmbedding, SinusoidalPositionalEncoding
from nima.settings import SettingsError, setting, validate


def _required(doc: str) -> Any:
    """A setting without a default (the vocabularies: a model cannot guess them)."""
    return dataclasses.field(metadata=dict(doc=doc, ge=1))


# --8<-- [start:config]
@dataclass
class TransformerConfig:
    """Shapes and choices of an encoder–decoder `Transformer`; every field a `setting`
    (`docs/configuration.md` lists them, as the YAML `model:` section of `kind: seq2seq`), a bad
    value a `SettingsError` naming it."""

    src_vocab_size: int = _required("source token ids")
    tgt_vocab_size: int = _required("target token ids")
    max_len: int = setting(128, "the longest source, and the longest target with its start or "
                                "end token", ge=1)
    d_model: int = setting(128, "width d of both stacks", ge=1)
    n_head: int = setting(4, "attention heads; must divide d_model", ge=1)
    n_encoder_layers: int = setting(2, "encoder blocks", ge=1)
    n_decoder_layers: int = setting(2, "decoder blocks", ge=1)
    ffn: str = setting("relu", "feed-forward kind (relu in 2017)",
                       choices=("relu", "gelu", "glu", "swiglu"))
    ffn_hidden: int | None = setting(None, "FFN inner width; null is 4·d_model", ge=1)
    norm: str = setting("layernorm", "normalization", choices=("layernorm", "rmsnorm"))
    norm_placement: str = setting("pre", "norm before (pre, easier to train) or after (post, "
                                         "2017) each branch", choices=("pre", "post"))
    position: str = setting("sinusoidal", "positions added to both stacks' embeddings",
                            choices=("sinusoidal", "learned"))
    bias: bool = setting(True, "biases in every Linear and LayerNorm")
    dropout: float = setting(0.0, "dropout on embeddings, attention weights and residual "
                                  "branches", ge=0.0, lt=1.0)
    pad_id: int = setting(0, "the padding id, in sources and targets alike", ge=0)
    tie_weights: bool = setting(True, "the output head shares the target embedding")

    owner: ClassVar[str] = "TransformerConfig"  # how errors name a field
# --8<-- [end:config]

    def __post_init__(self) -> None:
        validate(self, self.owner)
        if self.d_model % self.n_head:
            raise SettingsError(f"{self.owner}.d_model: must be divisible by n_head="
                                f"{self.n_head}, got {self.d_model}")

    @property
    def block_size(self) -> int:
        """`max_len`, under the name decoding reads (the longest target the decoder sees)."""
        return self.max_len


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

    def forward(self, y: Tensor, memory: Tensor, tgt_pad: np.ndarray, src_pad: np.ndarray,
                cache: DecoderCache | None = None) -> Tensor:
        """With a `cache`, `y` holds only the new target tokens and `tgt_pad` their padding;
        the cache supplies the earlier keys (and their padding) and the memory's."""
        self_cache = cross_cache = None
        if cache is not None:
            self_cache, cross_cache = cache.self_attn, cache.cross_attn
            tgt_pad = self_cache.padding_mask(y.shape[1], tgt_pad if tgt_pad.any() else None)
            if cross_cache.length:
                src_pad = cross_cache.padding_mask(0)  # recorded with the memory's keys

        def attend(h: Tensor) -> Tensor:  # earlier (and real) target tokens only
            return self.drop(self.self_attn(h, key_padding_mask=tgt_pad,
                                            cache=self_cache))  # (B, T, d)

        def look_up(h: Tensor) -> Tensor:  # queries from the target, keys/values from memory
            return self.drop(self.cross_attn(h, memory, key_padding_mask=src_pad,
                                             cache=cross_cache))  # (B, T, d)

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

    def _ids(self, name: str, ids: Any, offset: int = 0) -> np.ndarray:
        ids = np.asarray(ids.data if isinstance(ids, Tensor) else ids)
        if ids.ndim != 2 or ids.dtype.kind not in "iu":
            raise ValueError(f"Transformer: {name} must be integer ids of shape (B, T), "
                             f"got {ids.dtype} {ids.shape}")
        if offset + ids.shape[1] > self.config.max_len:
            cached = f" after {offset} cached" if offset else ""
            raise ValueError(f"Transformer: {name} has {ids.shape[1]} positions{cached}, more "
                             f"than max_len={self.config.max_len}")
        vocab = self.config.src_vocab_size if name == "src" else self.config.tgt_vocab_size
        if ids.size and (ids.min() < 0 or ids.max() >= vocab):
            bad = ids.min() if ids.min() < 0 else ids.max()
            raise ValueError(f"Transformer: {name} token id {bad} is outside the vocabulary "
                             f"[0, {vocab})")
        return ids

    def _embed(self, ids: np.ndarray, table: Embedding, pos: Module, offset: int = 0) -> Tensor:
        r"""$\sqrt d\, E[\text{ids}] + P_{\text{offset} \dots}$, then dropout."""
        x = table(ids) * math.sqrt(self.config.d_model)  # (B, T, d)
        return self.drop(x + pos(ids.shape[1], offset))  # (B, T, d) + (T, d)

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

    def decode(self, tgt_in: Any, memory: Tensor, src_pad: np.ndarray,
               caches: list[DecoderCache] | None = None) -> Tensor:
        """`tgt_in` `(B, T)` and the encoder's output -> next-token logits `(B, T, V_tgt)`.

        With `caches` (from `new_caches()`), `tgt_in` holds only the new target tokens, at
        positions `caches[0].length ...`."""
        if caches is not None and len(caches) != len(self.decoder):
            raise ValueError(f"Transformer: caches must hold one DecoderCache per decoder "
                             f"layer ({len(self.decoder)}), got {len(caches)}")
        offset = caches[0].length if caches else 0
        tgt_in = self._ids("tgt_in", tgt_in, offset)
        tgt_pad = tgt_in == self.config.pad_id  # (B, T)
        y = self._embed(tgt_in, self.tgt_embed, self.tgt_pos, offset)  # (B, T, d)
        for i, layer in enumerate(self.decoder):
            y = layer(y, memory, tgt_pad, src_pad, None if caches is None else caches[i])
        if self.dec_ln is not None:
            y = self.dec_ln(y)  # (B, T, d)
        return self.head(y)  # (B, T, V_tgt)
    # --8<-- [end:encode]

    def new_caches(self) -> list[DecoderCache]:
        """Empty decoding caches, one `DecoderCache` per decoder layer."""
        return [DecoderCache(self.config.max_len) for _ in self.decoder]

    def condition(self, src: Any) -> ConditionedDecoder:
        """The decoder given the sources `src` `(B, S)` (encoded once, here): a language model
        over target tokens for `nima.generation.generate` and beam search.

        Example:
            >>> bos = np.full((len(src), 1), BOS)
            >>> out = generate(model.condition(src), bos, 20, num_beams=4, eos_token_id=EOS)
        """
        return ConditionedDecoder(self, src)

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


# --8<-- [start:decoder_cache]
class DecoderCache:
    """One decoder layer's decoding state: the self-attention's `KVCache` (the target so far,
    with its padding) and the cross-attention's (the memory's keys and values, computed at the
    first step, with the source padding). It follows the decoding-cache protocol of
    `nima.nn.cache`: `length` is the target's, and `reorder` moves both (beam search)."""

    def __init__(self, max_len: int | None = None) -> None:
        self.self_attn = KVCache(max_len)
        self.cross_attn = KVCache()

    @property
    def length(self) -> int:
        """Target positions seen: the position of the next token."""
        return self.self_attn.length

    def reorder(self, indices: np.ndarray) -> None:
        """Keep batch rows `indices` in that order, in both caches."""
        self.self_attn.reorder(indices)
        self.cross_attn.reorder(indices)

    def reset(self) -> None:
        self.self_attn.reset()
        self.cross_attn.reset()

    def __repr__(self) -> str:
        return f"DecoderCache(self_attn={self.self_attn!r}, cross_attn={self.cross_attn!r})"
# --8<-- [end:decoder_cache]


# --8<-- [start:conditioned]
class ConditionedDecoder(Module):
    """A `Transformer`'s decoder given encoded sources: a language model over target tokens.

    It follows the decoding protocol `nima.generation.generate` drives — `forward(idx,
    caches=...) -> (logits, None)`, `new_caches()`, `config.block_size`, `eval()` — so greedy
    decoding, sampling and beam search run through the same code as for a GPT, the decoder
    through its one forward with `DecoderCache`s. `generate` repeats each prompt in
    consecutive rows (`num_beams`, `num_return_sequences` copies); when the decoder sees
    `r * B` rows for `B` sources, source `b` conditions rows `b r ... b r + r - 1`.
    """

    def __init__(self, model: Transformer, src: Any) -> None:
        super().__init__()
        self.model = model
        with no_grad():
            self.memory, self.src_pad = model.encode(src)  # (B, S, d), (B, S)

    @property
    def config(self) -> TransformerConfig:
        return self.model.config

    def new_caches(self) -> list[DecoderCache]:
        return self.model.new_caches()

    def forward(self, idx: Any, targets: Any = None, attention_mask: Any = None,
                caches: list[DecoderCache] | None = None) -> tuple[Tensor, Tensor | None]:
        """`idx` `(r B, T)` target tokens -> `(logits (r B, T, V_tgt), loss or None)`."""
        if attention_mask is not None:
            raise ValueError("ConditionedDecoder: target prompts take no attention_mask "
                             "(padding is the pad_id token); give prompts of one length")
        rows, B = np.shape(idx.data if isinstance(idx, Tensor) else idx)[0], len(self.src_pad)
        if rows % B:
            raise ValueError(f"ConditionedDecoder: {rows} target rows for {B} sources; "
                             f"need a multiple (each source's rows side by side)")
        r = rows // B
        memory = self.memory if r == 1 else self.memory[np.repeat(np.arange(B), r)]
        src_pad = np.repeat(self.src_pad, r, axis=0)  # (r B, S)
        logits = self.model.decode(idx, memory, src_pad, caches)  # (r B, T, V_tgt)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits, targets, ignore_index=self.config.pad_id)
        return logits, loss
# --8<-- [end:conditioned]
