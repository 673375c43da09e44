r"""Where the training batches come from: `data.sampling` = `uniform`, `loss_guided` or `stream`.

* **uniform** — `batch_size` windows of `block_size + 1` tokens at random offsets
  (`TokenDataset.get_batch`), nanoGPT's way;
* **loss_guided** — windows that tile the data, drawn in proportion to the model's recent loss
  on them (`nima.data.sampler.LossGuidedSampler`): after each forward the trainer reports every
  row's loss (`record`);
* **stream** — the data cut into `batch_size` equal streams, read one segment of `block_size`
  tokens after another: row $b$ of each batch continues row $b$ of the one before,

  $$x^{(n)}_{b,t} = d_{bN + nT + t}, \qquad y^{(n)}_{b,t} = d_{bN + nT + t + 1},$$

  with $N$ the tokens per stream and $T$ = `block_size`. This is how a model with echo or memory
  layers trains: the state each layer carries into segment $n$ was written by segment $n - 1$
  of the same stream. One optimizer step reads `group` = `model.tbptt` segments, their losses
  summed into one backward — truncated backpropagation through time. When the streams are
  used up they start over (`starts_streams`), and the trainer resets the model's state.

Each source keeps its position in `state_dict()`, so a checkpoint resumes the same batches.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nima.data.dataset import TokenDataset
from nima.data.pairs import PairDataset
from nima.data.sampler import LossGuidedSampler

__all__ = ["Batches", "LossGuidedBatches", "PairBatches", "StreamBatches", "UniformBatches",
           "make_batches", "row_losses"]


def row_losses(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    r"""The mean cross-entropy of each row, `(B, T, V)` logits and `(B, T)` targets -> `(B,)`:
    $\frac1T \sum_t \bigl(\log\sum_i e^{z_{t,i}} - z_{t,y_t}\bigr)$, in float64."""
    z = np.asarray(logits, dtype=np.float64)
    top = z.max(-1, keepdims=True)
    lse = np.log(np.exp(z - top).sum(-1)) + top[..., 0]  # (B, T)
    picked = np.take_along_axis(z, np.asarray(targets)[..., None], -1)[..., 0]  # (B, T)
    return (lse - picked).mean(-1)


class Batches:
    """A source of `(B, T)` batches of `data`: `next()` gives inputs and next-token targets;
    `record` hears the model's logits on them; `group` batches make one optimizer step's
    micro-batch; `starts_streams` says the last batch began the streams anew."""

    group = 1
    starts_streams = False

    def __init__(self, data: TokenDataset, batch_size: int, block_size: int) -> None:
        self.data, self.batch_size, self.block_size = data, batch_size, block_size

    def next(self) -> tuple[np.ndarray, np.ndarray]:
        """Inputs and next-token targets, `(B, T)` int64 each."""
        raise NotImplementedError

    def record(self, logits: np.ndarray, targets: np.ndarray) -> None:
        """The model's logits `(B, T, V)` on the last batch (a source may learn from them)."""

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint needs to go on with the same batches (JSON-able)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class UniformBatches(Batches):
    """Random windows, drawn from `rng` (the trainer's data generator)."""

    def __init__(self, data: TokenDataset, batch_size: int, block_size: int,
                 rng: np.random.Generator) -> None:
        super().__init__(data, batch_size, block_size)
        self.rng = rng

    def next(self) -> tuple[np.ndarray, np.ndarray]:
        return self.data.get_batch(self.batch_size, self.block_size, self.rng)


class PairBatches(UniformBatches):
    """Random pairs of a `PairDataset`, for the encoder-decoder: `(src, tgt_in, tgt_out)`."""

    def next(self) -> tuple[np.ndarray, ...]:
        return self.data.get_batch(self.batch_size, self.rng)


class LossGuidedBatches(UniformBatches):
    """Windows drawn by their recent loss (`LossGuidedSampler`, its draws from `rng`)."""

    def __init__(self, data: TokenDataset, batch_size: int, block_size: int,
                 rng: np.random.Generator) -> None:
        super().__init__(data, batch_size, block_size, rng)
        self.sampler = LossGuidedSampler(len(data), block_size)
        self.sampler.rng = rng  # the trainer's generator, saved in every checkpoint
        self._drawn: np.ndarray | None = None

    def next(self) -> tuple[np.ndarray, np.ndarray]:
        x, y, self._drawn = self.sampler.get_batch(self.data.data, self.batch_size)
        return x, y

    def record(self, logits: np.ndarray, targets: np.ndarray) -> None:
        """Each drawn window's loss becomes its priority."""
        self.update(row_losses(logits, targets))

    def update(self, losses: np.ndarray) -> None:
        """The losses `(B,)` of the last batch's rows become their windows' priorities."""
        self.sampler.update(self._drawn, losses)

    def state_dict(self) -> dict[str, Any]:
        return {k: v.tolist() for k, v in self.sampler.state_dict().items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sampler.load_state_dict({k: np.asarray(v) for k, v in state.items()})


class StreamBatches(Batches):
    """`batch_size` consecutive streams, read `block_size` tokens at a time, in whole groups of
    `group` segments.

    Raises:
        ValueError: the data holds fewer than `group` segments per stream.
    """

    def __init__(self, data: TokenDataset, batch_size: int, block_size: int,
                 group: int = 1) -> None:
        super().__init__(data, batch_size, block_size)
        self.group = group
        length = len(data) // batch_size  # tokens per stream
        self.segments = (length - 1) // block_size // group * group  # segments per pass
        if self.segments == 0:
            raise ValueError(f"StreamBatches: {len(data)} tokens make {batch_size} streams of "
                             f"{length}, fewer than {group} segment(s) of block_size + 1 = "
                             f"{block_size + 1}")
        self.starts = np.arange(batch_size) * length  # (B,) where each stream begins
        self.position = 0  # the next segment of every stream
        self.starts_streams = False

    # --8<-- [start:stream_next]
    def next(self) -> tuple[np.ndarray, np.ndarray]:
        if self.position == self.segments:
            self.position = 0
        self.starts_streams = self.position == 0
        offset = self.starts + self.position * self.block_size  # (B,)
        window = offset[:, None] + np.arange(self.block_size + 1)  # (B, T+1)
        chunk = np.asarray(self.data.data[window], dtype=np.int64)
        self.position += 1
        return np.ascontiguousarray(chunk[:, :-1]), np.ascontiguousarray(chunk[:, 1:])
    # --8<-- [end:stream_next]

    def state_dict(self) -> dict[str, Any]:
        return {"position": self.position}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.position = int(state["position"])


def make_batches(sampling: str, data: TokenDataset, batch_size: int, block_size: int,
                 rng: np.random.Generator, group: int = 1) -> Batches:
    """The batch source `sampling` names (`group`: segments per step, streams only); pairs
    are drawn uniformly."""
    if isinstance(data, PairDataset):
        return PairBatches(data, batch_size, block_size, rng)
    if sampling == "stream":
        return StreamBatches(data, batch_size, block_size, group)
    kind = LossGuidedBatches if sampling == "loss_guided" else UniformBatches
    return kind(data, batch_size, block_size, rng)
