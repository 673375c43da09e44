r"""The generated corpora, reading a text as a stream of segments, and the task metrics a run is
measured by beyond its loss.

**Corpora.** `data.corpus` may name a generated corpus instead of a file, drawn with
`training.seed` into `out_dir/corpus.txt` before it is tokenized: `synthetic` (the grammar of
`nima.data.synthetic`), `brackets` (Dyck lines, `nima.data.brackets`) or `recall` (key–value
definitions queried far away, `nima.data.recall`; by default every definition lies more than
`block_size` characters before its query).

**Streams.** `stream_logits` and `stream_loss` read tokens the way stream training does: one
segment of `block_size` tokens after another, through the model's decoding caches, with
`model.next_segment` between segments. A position sees the earlier tokens of its own segment —
and, in a model with echo or memory layers, whatever the state carried from the segments
before. Every model is measured the same way; the caches are the model's own decoding state,
so the training streams' state is never touched.

**Metrics.** `task_metrics` scores the next-token predictions on a text of the bracket corpus
by **closing-bracket accuracy** (all closers, and those whose opener lies at least `block_size`
back) and on the recall corpus by **recall accuracy** (both value digits right), overall and by
distance; `run_task_metrics` computes them for a run directory on its validation text.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from nima.autograd import no_grad
from nima.data.brackets import closing_bracket_accuracy, generate_brackets
from nima.data.dataset import TokenDataset, token_dtype
from nima.data.pairs import reversal_pairs
from nima.data.recall import generate_recall, recall_accuracy
from nima.data.synthetic import generate_corpus
from nima.models.gpt import GPT
from nima.training.batches import StreamBatches
from nima.training.config import GENERATED, DataConfig

__all__ = ["corpus_text", "run_task_metrics", "stream_logits", "stream_loss",
           "task_metrics"]

# --8<-- [start:corpus_text]
def corpus_text(data: DataConfig, seed: int, block_size: int) -> str:
    """The text of the generated corpus `data.corpus` (one of `config.GENERATED`), drawn
    with `seed`."""
    if data.corpus == "synthetic":
        return generate_corpus(n_sections=data.synthetic_sections, seed=seed)
    if data.corpus == "brackets":
        return generate_brackets(n_lines=data.bracket_lines, length=data.bracket_length,
                                 seed=seed)
    if data.corpus == "recall":
        low, high = data.recall_distance or (block_size + 1, 2 * block_size)
        return generate_recall(n_queries=data.recall_queries, min_distance=low,
                               max_distance=high, seed=seed)
    if data.corpus == "reversal":
        return reversal_pairs(data.synthetic_pairs, seed)
    raise ValueError(f"corpus_text: data.corpus must be one of {', '.join(GENERATED)}, got "
                     f"{data.corpus!r}")
# --8<-- [end:corpus_text]


# --8<-- [start:stream_logits]
@no_grad()
def stream_logits(model: GPT, ids: np.ndarray) -> np.ndarray:
    """The logits `(B, n, V)` of `ids` `(B, n)` read in segments of `block_size` tokens, the
    model's state carried from segment to segment (in eval mode)."""
    T, was_training = model.config.block_size, model.training
    model.eval()
    try:
        caches = model.new_caches()
        out = []
        for start in range(0, ids.shape[1], T):
            if start:
                model.next_segment(caches)  # the window empties; echo state and memory stay
            out.append(model(ids[:, start:start + T], caches=caches)[0].data)
        return np.concatenate(out, axis=1)
    finally:
        model.train(was_training)
# --8<-- [end:stream_logits]


@no_grad()
def stream_loss(model: GPT, data: TokenDataset, batch_size: int, segments: int) -> float:
    """Mean loss over the first `segments` segments of `batch_size` streams of `data`, read as
    stream training reads them but from a fresh state (the caller sets eval mode)."""
    streams = StreamBatches(data, batch_size, model.config.block_size)
    caches = model.new_caches()
    losses = []
    for i in range(min(segments, streams.segments)):
        x, y = streams.next()
        if i:
            model.next_segment(caches)
        losses.append(model(x, y, caches=caches)[1].item())
    return float(np.mean(losses))


def task_metrics(model: GPT, tokenizer: Any, text: str, corpus: str) -> dict[str, Any]:
    """The task metric of `corpus` on `text`, from the model's predictions read as a stream;
    `{}` for a corpus without one.

    Returns, for `brackets`: `closing_accuracy` and `closing_accuracy_beyond_window` (openers at
    least `block_size` back); for `recall`: `recall_accuracy` and `recall_by_distance`, a list of
    `[low, high, count, accuracy]` bins of width `block_size`, doubling.
    """
    if corpus not in ("brackets", "recall"):
        return {}
    ids = np.asarray([tokenizer.encode(text)], dtype=np.int64)  # (1, n)
    out = stream_logits(model, ids)[0]  # (n, V): row i predicts token i + 1
    logits = np.concatenate([np.zeros_like(out[:1]), out[:-1]])  # row i predicts token i
    token_of = tokenizer.stoi
    T = model.config.block_size
    if corpus == "brackets":
        return {"closing_accuracy": closing_bracket_accuracy(text, logits, token_of),
                "closing_accuracy_beyond_window": closing_bracket_accuracy(
                    text, logits, token_of, min_span=T)}
    edges = [0, T]
    while edges[-1] < len(text):
        edges.append(2 * edges[-1])
    bins = recall_accuracy(text, logits, token_of, edges)
    hits = sum(b.count * b.accuracy for b in bins if b.count)
    count = sum(b.count for b in bins)
    return {"recall_accuracy": hits / count if count else float("nan"),
            "recall_by_distance": [list(b) for b in bins if b.count]}


def run_task_metrics(run: Any, which: str = "best") -> dict[str, Any]:
    """`task_metrics` of a run directory's model on its validation text (its prepared
    `val.bin`, decoded)."""
    from nima.training.trainer import load_run  # the trainer builds on this module

    model, tokenizer, config = load_run(Path(run), which=which)
    val = TokenDataset(Path(config.data.out_dir) / "val.bin", token_dtype(tokenizer.vocab_size))
    text = tokenizer.decode(np.asarray(val.data).tolist())
    return task_metrics(model, tokenizer, text, config.data.corpus)
