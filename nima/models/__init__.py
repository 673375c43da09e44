"""Models built from `nima.nn`: `GPT` (decoder-only), `Transformer` (encoder–decoder), and the
parameter budget (`count_parameters`, `size_mb`, `explore`)."""

from nima.models.budget import count_parameters, explore, size_mb
from nima.models.gpt import GPT, GPTConfig
from nima.models.seq2seq import Transformer, TransformerConfig
