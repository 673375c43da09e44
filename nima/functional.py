"""The `F` namespace: `import nima.functional as F`, then `F.softmax(x)`, `F.cross_entropy(...)`.

Stateless functions on tensors, named as in `torch.nn.functional`; each is re-exported from the
`nima.ops` module that defines it. More (layer norm, dropout, attention, ...) join as they land.
"""

from nima.ops.elementwise import gelu, relu, sigmoid, silu, softplus, tanh
from nima.ops.nn import cross_entropy, embedding, log_softmax, one_hot, softmax

__all__ = [
    "cross_entropy",
    "embedding",
    "gelu",
    "log_softmax",
    "one_hot",
    "relu",
    "sigmoid",
    "silu",
    "softmax",
    "softplus",
    "tanh",
]
