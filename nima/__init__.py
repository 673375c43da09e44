"""Nima: an educational deep-learning framework — tensors, reverse-mode autograd and numba
kernels, written from scratch so that every gradient can be read and checked."""

import numpy as np

from nima._tensor import Tensor  # first: everything below is built on it
from nima.amp import autocast
from nima.autograd import Function, enable_grad, is_grad_enabled, no_grad
from nima.creation import (
    arange,
    full,
    full_like,
    ones,
    ones_like,
    rand,
    rand_like,
    randn,
    randn_like,
    tensor,
    zeros,
    zeros_like,
)
from nima.gradcheck import GradcheckError, gradcheck
from nima.ops import (
    abs,
    argmax,
    argmin,
    cat,
    chunk,
    clamp,
    exp,
    expand,
    flatten,
    gelu,
    log,
    log_softmax,
    logsumexp,
    masked_fill,
    matmul,
    max,
    maximum,
    mean,
    min,
    minimum,
    permute,
    relu,
    reshape,
    sigmoid,
    silu,
    softmax,
    softplus,
    split,
    sqrt,
    squeeze,
    stack,
    sum,
    tanh,
    transpose,
    tril,
    triu,
    unsqueeze,
    var,
    where,
)
from nima.random import manual_seed
from nima.serialization import load, save

float16 = np.dtype(np.float16)
float32 = np.dtype(np.float32)
float64 = np.dtype(np.float64)
int32 = np.dtype(np.int32)
int64 = np.dtype(np.int64)
bool_ = np.dtype(np.bool_)

__version__ = "0.1.0"

# The layers built on the core, so that `import nima` reaches `nima.nn.Linear`, `nima.models.GPT`.
from nima import (  # noqa: E402
    data,
    distributed,
    functional,
    generation,
    kernels,
    models,
    nn,
    optim,
    runtime,
)
from nima.generation import GenerationConfig, generate  # noqa: E402
