r"""Evaluation over a whole split, in order: loss, perplexity and bits per character (or byte).

The trainer's `estimate_loss` averages random batches — quick, noisy, and enough to follow a
run. To *report* a model, every token of the split is predicted once, in order, and the
numbers are exact for that text:

$$\mathcal L = -\frac{1}{N}\sum_{i=1}^{N} \ln p(x_i \mid \text{context}_i), \qquad
\text{perplexity} = e^{\mathcal L}, \qquad
\text{bits per character} = \frac{N\,\mathcal L}{C \ln 2},$$

with $N$ the predicted tokens and $C$ the characters they spell (for a byte-level tokenizer,
bytes: **bits per byte**; for characters, $C = N$ and bits per character are bits per token).
Perplexity depends on the tokenizer — a model with a bigger vocabulary predicts fewer, harder
tokens — so only bits per character (or byte) compares models across tokenizers.

A model sees at most `block_size` tokens, so the text is cut into windows (`windows`), the
convention of Hugging Face's "perplexity of fixed-length models": a window of `context` tokens
starts every `stride` tokens, and scores only the tokens no earlier window scored. With
`stride = context` (the default) the windows do not overlap, each token is predicted once with
$0 \dots T - 1$ tokens before it in its window (the first of each window with none), and the
loss is what the model computes on its own training windows. A smaller `stride` gives every
scored token at least `context - stride` tokens of context — for a model that uses its context,
a lower loss — at `context / stride` times the cost.

An encoder–decoder is evaluated on every pair of a pairs file (`evaluate_pairs`): each target
token, its end token included, predicted from the whole source and the target before it; bits
per character divide by the targets' characters (the end tokens' cost counted, their
characters not).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TextIO

import numpy as np

from nima import functional as F
from nima.autograd import no_grad
from nima.data.pairs import PAD, PairDataset
from nima.data.tokenizers import ByteBPETokenizer
from nima.settings import check_int
from nima.training.metrics import perplexity
from nima.training.progress import ProgressBar

__all__ = ["Evaluation", "evaluate_pairs", "evaluate_tokens", "units_of", "windows"]

LN2 = math.log(2.0)


@dataclass(frozen=True)
class Evaluation:
    """What `evaluate_tokens` measured.

    Attributes:
        nats: the summed negative log-likelihood of the predicted tokens, in nats.
        tokens: how many tokens were predicted, $N$.
        units: the characters (or bytes) those tokens spell, $C$; None if unknown.
        unit: `"character"` or `"byte"`.
        windows: how many windows the text was cut into (or pairs evaluated).
        of: what `windows` counts, `"windows"` or `"pairs"`.
    """

    nats: float
    tokens: int
    units: int | None = None
    unit: str = "character"
    windows: int = 0
    of: str = "windows"

    @property
    def loss(self) -> float:
        """Mean nats per predicted token."""
        return self.nats / self.tokens if self.tokens else math.nan

    @property
    def perplexity(self) -> float:
        return perplexity(self.loss)

    @property
    def bits_per_token(self) -> float:
        return self.loss / LN2

    @property
    def bits_per_unit(self) -> float | None:
        """Bits per character (or byte), or None without a count of units."""
        return None if not self.units else self.nats / LN2 / self.units

    def summary(self) -> str:
        """Two lines for a terminal."""
        per_unit = "" if self.bits_per_unit is None else \
            f", {self.bits_per_unit:.4f} bits per {self.unit}"
        return (f"{self.tokens:,} tokens predicted in {self.windows:,} {self.of}\n"
                f"loss {self.loss:.4f} nats/token, perplexity {self.perplexity:.3f}, "
                f"{self.bits_per_token:.4f} bits/token{per_unit}")


# --8<-- [start:windows]
def windows(n: int, context: int, stride: int | None = None) -> Iterator[tuple[int, int, int]]:
    """The windows over `n` tokens: `(begin, end, first)` — the model reads tokens
    `begin .. end - 1` and predicts tokens `begin + 1 .. end`, of which it scores those from
    `begin + 1 + first` on (the ones no earlier window scored). Every token but the first is
    scored exactly once.

    Example: 10 tokens, context 4, stride 2 give `(0, 4, 0)`, `(2, 6, 2)`, `(4, 8, 2)`,
    `(6, 9, 2)`: the first window scores tokens 1–4, the next two tokens 5–6 and 7–8, and the
    last, cut at the text's end, token 9.
    """
    stride = context if stride is None else stride
    scored = 0  # tokens 1 .. scored have been scored
    for begin in range(0, max(n - 1, 0), stride):
        end = min(begin + context, n - 1)
        yield begin, end, scored - begin  # the first `scored - begin` are already scored
        scored = end
        if end == n - 1:
            return
# --8<-- [end:windows]


# --8<-- [start:evaluate_tokens]
@no_grad()
def evaluate_tokens(model: Any, tokens: np.ndarray, *, context: int | None = None,
                    stride: int | None = None, batch_size: int = 8,
                    stream: TextIO | None = None) -> Evaluation:
    """The summed loss of `model` predicting every token of `tokens` `(N,)` but the first,
    through `windows`, in eval mode; `batch_size` windows share a forward.

    Args:
        model: a language model, `model(idx, targets) -> (logits, loss)`, with
            `config.block_size`.
        tokens: the text's token ids, in order.
        context: tokens per window (default `block_size`).
        stride: tokens between window starts (default `context`: no overlap).
        batch_size: windows per forward.
        stream: where the progress bar goes (None: nowhere).

    Raises:
        ValueError: `context` beyond `block_size`, `stride` outside `[1, context]`, or fewer
            than two tokens.
    """
    block_size = model.config.block_size
    context = block_size if context is None else check_int("evaluate.context", context, ge=1)
    stride = context if stride is None else check_int("evaluate.stride", stride, ge=1)
    batch_size = check_int("evaluate.batch_size", batch_size, ge=1)
    if context > block_size:
        raise ValueError(f"evaluate: context {context} exceeds the model's block_size="
                         f"{block_size}")
    if stride > context:
        raise ValueError(f"evaluate: stride {stride} exceeds context {context}: tokens "
                         f"between windows would never be scored")
    tokens = np.asarray(tokens, dtype=np.int64)
    if tokens.ndim != 1 or tokens.size < 2:
        raise ValueError(f"evaluate: need at least 2 tokens in a 1-D array, got shape "
                         f"{tokens.shape}")
    spans = list(windows(tokens.size, context, stride))
    bar = ProgressBar(len(spans), stream=stream, label="window") if stream else None
    was_training = getattr(model, "training", False)
    model.eval()
    nats, scored, start = 0.0, 0, time.perf_counter()
    try:
        for i in range(0, len(spans), batch_size):
            group = spans[i:i + batch_size]
            for length in sorted({end - begin for begin, end, _ in group}):
                same = [s for s in group if s[1] - s[0] == length]  # a full batch, or the end
                x = np.stack([tokens[b:e] for b, e, _ in same])  # (n, length)
                y = np.stack([tokens[b + 1:e + 1] for b, e, _ in same])  # (n, length)
                for row, (_, _, first) in enumerate(same):
                    y[row, :first] = -100  # scored by an earlier window
                logits, _ = model(x)  # (n, length, V)
                nats += F.cross_entropy(logits, y, reduction="sum").item()
                scored += int((y != -100).sum())
            if bar is not None:
                done = min(i + batch_size, len(spans))
                bar.update(done, nats / scored, None, scored / (time.perf_counter() - start))
    finally:
        model.train(was_training)
        if bar is not None:
            bar.close()
    return Evaluation(nats=nats, tokens=scored, windows=len(spans))
# --8<-- [end:evaluate_tokens]


@no_grad()
def evaluate_pairs(model: Any, data: PairDataset, *, batch_size: int = 64,
                   stream: TextIO | None = None) -> Evaluation:
    """The summed loss of an encoder-decoder `model` on every pair of `data`, in order
    (teacher forcing, padding ignored); `units` counts the targets' characters.

    Raises:
        ValueError: `batch_size` below 1.
    """
    batch_size = check_int("evaluate.batch_size", batch_size, ge=1)
    n = -(-len(data) // batch_size)
    bar = ProgressBar(n, stream=stream, label="batch") if stream else None
    was_training = getattr(model, "training", False)
    model.eval()
    nats, scored, start = 0.0, 0, time.perf_counter()
    try:
        for i, (src, tgt_in, tgt_out) in enumerate(data.batches(batch_size)):
            logits, _ = model(src, tgt_in)  # (B, T, V)
            nats += F.cross_entropy(logits, tgt_out, reduction="sum", ignore_index=PAD).item()
            scored += int((tgt_out != PAD).sum())
            if bar is not None:
                bar.update(i + 1, nats / scored, None, scored / (time.perf_counter() - start))
    finally:
        model.train(was_training)
        if bar is not None:
            bar.close()
    return Evaluation(nats=nats, tokens=scored, units=sum(len(t) for t in data.targets),
                      windows=len(data), of="pairs")


def units_of(tokenizer: Any, tokens: np.ndarray) -> tuple[int, str]:
    """How many characters the predicted tokens (all but the first) spell — or bytes, for a
    byte-level BPE tokenizer, counted token by token (a split multi-byte character counts
    its bytes) — and which."""
    ids = np.asarray(tokens[1:]).tolist()
    if isinstance(tokenizer, ByteBPETokenizer):
        special = {i: len(s.encode("utf-8")) for s, i in tokenizer.special_tokens.items()}
        return sum(len(tokenizer.vocab[i]) if i in tokenizer.vocab else special[i]
                   for i in ids), "byte"
    return len(tokenizer.decode(ids)), "character"
