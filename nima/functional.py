"""The `F` namespace: `import nima.functional as F`, then `F.softmax(x)`, `F.cross_entropy(...)`.

Stateless functions on tensors, named as in `torch.nn.functional`; each is re-exported from the
`nima.ops` module that defines it. More join as they land.
"""

from nima.ops.attention import causal_self_attention, scaled_dot_product_attention
from nima.ops.dropout import dropout
from nima.ops.elementwise import gelu, relu, sigmoid, silu, softplus, tanh
from nima.ops.linalg import linear
from nima.ops.nn import cross_entropy, embedding, log_softmax, one_hot, softmax
from nima.ops.normalization import layer_norm, rms_norm

__all__ = [
    "causal_self_attention",
    "cross_entropy",
    "dropout",
    "embedding",
    "gelu",
    "layer_norm",
    "linear",
    "log_softmax",
    "one_hot",
    "relu",
    "rms_norm",
    "scaled_dot_product_attention",
    "sigmoid",
    "silu",
    "softmax",
    "softplus",
    "tanh",
]
