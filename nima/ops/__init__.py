"""The differentiable ops, one family per module; `nima.ops.<name>` reaches every one."""

from nima.ops.attention import causal_self_attention, scaled_dot_product_attention
from nima.ops.dropout import dropout
from nima.ops.elementwise import (
    abs,
    add,
    clamp,
    div,
    eq,
    exp,
    ge,
    gelu,
    gt,
    le,
    log,
    lt,
    masked_fill,
    maximum,
    minimum,
    mul,
    ne,
    neg,
    pow,
    relu,
    sigmoid,
    silu,
    softplus,
    sqrt,
    sub,
    tanh,
    where,
)
from nima.ops.indexing import getitem
from nima.ops.linalg import linear, matmul
from nima.ops.nn import cross_entropy, embedding, log_softmax, one_hot, softmax
from nima.ops.normalization import layer_norm, rms_norm
from nima.ops.operands import cast
from nima.ops.reduce import argmax, argmin, logsumexp, max, mean, min, sum, var
from nima.ops.shape import (
    cat,
    chunk,
    expand,
    flatten,
    narrow,
    permute,
    reshape,
    split,
    squeeze,
    stack,
    transpose,
    tril,
    triu,
    unsqueeze,
    view,
)
