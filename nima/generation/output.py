"""What `generate` returns: the sequences, their log-probabilities and the statistics."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nima.generation.stats import GenerationStats
from nima.generation.tree_beam import SearchTree

__all__ = ["GenerationOutput"]


@dataclass
class GenerationOutput:
    """The result of `generate` (cf. Hugging Face's `GenerateOutput`).

    Rows are grouped by prompt: with `B` prompts and `num_return_sequences = n`, row
    `b * n + j` is the `j`-th sequence for prompt `b` (for beam search, the `j`-th best).

    Attributes:
        sequences: `(N, T0 + L)` int64, each prompt followed by its generated tokens; a row
            that stopped early is padded with `pad_token_id` after `lengths[row]`, and a
            shorter prompt before `starts[row]`.
        lengths: `(N,)` how many tokens of each row are valid (prompt included; an end token
            or a completed stop string counts).
        sequence_logprobs: `(N,)` the sum of the log-probabilities of each row's generated
            tokens under the distributions they were chosen from (after the processors).
        scores: `(N,)` beam search: `sequence_logprobs / generated_length ** length_penalty`,
            what the beams were ranked by; other strategies: `sequence_logprobs`.
        prompt_length: `T0`.
        strategy: `"greedy"`, `"sample"`, `"entropy"`, `"beam"` or `"tree_beam"`.
        stats: per-step entropy, confidence and temperature (`GenerationStats`), or None.
        trees: tree beam search: each prompt's `SearchTree`; otherwise None.
        starts: `(N,)` the column where each row's prompt begins, after its left padding
            (None: 0 for every row, prompts of one length).
    """

    sequences: np.ndarray
    lengths: np.ndarray
    sequence_logprobs: np.ndarray
    scores: np.ndarray
    prompt_length: int
    strategy: str
    stats: GenerationStats | None = None
    trees: list[SearchTree] | None = None
    starts: np.ndarray | None = None

    def generated(self, row: int = 0) -> list[int]:
        """The tokens row `row` generated, without the prompt and the padding."""
        return self.sequences[row, self.prompt_length:self.lengths[row]].tolist()

    def tolist(self) -> list[list[int]]:
        """Every row's valid tokens, prompt included (without its padding)."""
        starts = np.zeros(len(self.lengths), dtype=np.int64) if self.starts is None \
            else self.starts
        return [self.sequences[i, s:n].tolist()
                for i, (s, n) in enumerate(zip(starts, self.lengths, strict=True))]
