"""Data: tokenizers, datasets and corpora for training."""

from nima.data.brackets import closing_bracket_accuracy, generate_brackets
from nima.data.dataset import TokenDataset, prepare, token_dtype
from nima.data.recall import generate_recall, recall_accuracy
from nima.data.sampler import LossGuidedSampler
from nima.data.tokenizers import (
    ByteBPETokenizer,
    CharTokenizer,
    TokenizerFileError,
    get_stats,
    load_tokenizer,
    merge,
)
