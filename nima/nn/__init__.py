"""Neural-network building blocks: `Module`, `Parameter`, containers, layers and init."""

from nima.nn import functional, init
from nima.nn.activation import GELU, ReLU, Sigmoid, SiLU, Tanh
from nima.nn.attention import KVCache, MultiHeadAttention
from nima.nn.checkpoint import checkpoint
from nima.nn.container import ModuleDict, ModuleList, Sequential
from nima.nn.dropout import Dropout
from nima.nn.echo_layer import EchoLayer
from nima.nn.embedding import Embedding
from nima.nn.feedforward import FeedForward, swiglu_hidden
from nima.nn.hierarchical_pooling import HierarchicalPooling
from nima.nn.hybrid_attention import HybridAttention
from nima.nn.linear import Linear
from nima.nn.memory_attention import MemoryAttention
from nima.nn.memory_bank import MemoryBank
from nima.nn.module import LoadResult, Module
from nima.nn.normalization import LayerNorm, RMSNorm
from nima.nn.parameter import Parameter
from nima.nn.positional import (
    ALiBi,
    LearnedPositionalEmbedding,
    RotaryEmbedding,
    SinusoidalPositionalEncoding,
)
from nima.nn.recursive_block import ProgressiveDepth, RecursiveBlock
from nima.nn.tree_attention import TreeAttention
