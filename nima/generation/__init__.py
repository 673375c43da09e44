"""Decoding: from a language model's next-token logits to text.

`generate` runs greedy decoding, sampling (temperature, top-k, top-p, repetition penalty),
entropy-aware sampling, beam search and tree beam search, all on the KV cache through the
model's one forward, for a batch of prompts, sliding the context window once it is full (or,
for a model that carries state, going on segment by segment); `GenerationConfig` holds the
settings of all of them. The pieces are public too: the logits
processors, the entropy-targeting temperature solver, beam search, the cached window and the
generation statistics.
"""

from nima.generation.beam import BeamHypotheses, beam_search
from nima.generation.config import BEAM_STRATEGIES, STRATEGIES, GenerationConfig
from nima.generation.decoding import generate, sample_tokens
from nima.generation.entropy import entropy_bits, entropy_temperature
from nima.generation.learned import LearnedInference, fit_inference_params
from nima.generation.output import GenerationOutput
from nima.generation.processors import (
    LogitsProcessor,
    LogitsProcessorList,
    RepetitionPenalty,
    Temperature,
    TopK,
    TopP,
    softmax,
)
from nima.generation.stats import GenerationStats
from nima.generation.tree_beam import SearchTree
from nima.generation.window import ContextWindow
