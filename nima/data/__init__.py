"""Data: tokenizers, datasets and corpora for training."""

from nima.data.dataset import TokenDataset, prepare, token_dtype
from nima.data.tokenizers import (
    ByteBPETokenizer,
    CharTokenizer,
    TokenizerFileError,
    get_stats,
    load_tokenizer,
    merge,
)
