r"""Exercises of the Tensor parallelism page (docs/tensor_parallel.md)."""

import numpy as np

import nima
from exercises import close, equal
from nima.distributed import SingleProcess, parallelize_gpt
from nima.models import GPT, GPTConfig
from nima.nn import FeedForward


def tensor_parallel_ffn(x: np.ndarray, fc_weight: np.ndarray, fc_bias: np.ndarray,
                        proj_weight: np.ndarray, proj_bias: np.ndarray, N: int) -> np.ndarray:
    r"""Megatron's split of a feed-forward network, simulated.

    The dense FFN is $\operatorname{GELU}(x W_1^\top + b_1) W_2^\top + b_2$ (GELU with GPT-2's
    tanh approximation), with `fc_weight` $W_1$ `(h, d)` and `proj_weight` $W_2$ `(d, h)`.
    Play $N$ ranks: rank $r$ holds the $r$-th block of $h/N$ *rows* of $W_1$ (and of $b_1$) and
    the same block of *columns* of $W_2$, and computes its term without any communication.
    Then do what the allreduce and the replicated bias do. Return the output, `(..., d)`.
    """
    raise NotImplementedError


def check_tensor_parallel_ffn(tensor_parallel_ffn) -> None:
    """Compares with a dense `FeedForward(8, 12)` (GELU, tanh) on a `(2, 3, 8)` input, for 2,
    3 and 4 simulated ranks."""
    nima.manual_seed(0)
    ffn = FeedForward(8, 12, kind="gelu", approximate="tanh").double()
    x = np.random.default_rng(0).standard_normal((2, 3, 8))
    with nima.no_grad():
        expected = ffn(nima.tensor(x)).data
    for N in (2, 3, 4):
        got = tensor_parallel_ffn(x, ffn.fc.weight.data, ffn.fc.bias.data, ffn.proj.weight.data,
                                  ffn.proj.bias.data, N)
        close(got, expected, f"the output with {N} ranks")


def allreduces(L: int) -> tuple[int, int]:
    r"""Count the messages of a tensor-parallel GPT.

    `parallelize_gpt` splits the attention and the feed-forward network of each of a GPT's $L$
    blocks. How many allreduces does one training step make, as `(forward, backward)`?
    """
    raise NotImplementedError


def check_allreduces(allreduces) -> None:
    """Runs a forward and a backward of split GPTs of 1 and 3 blocks through a one-process
    communicator that counts its allreduces."""

    class Counting(SingleProcess):
        calls = 0

        def _allreduce(self, buf, op):
            Counting.calls += 1
            return buf

    for L in (1, 3):
        model = GPT(GPTConfig(vocab_size=9, block_size=8, n_layer=L, n_head=2, n_embd=8))
        parallelize_gpt(model, Counting())
        ids = np.zeros((1, 4), dtype=np.int64)
        Counting.calls = 0
        _, loss = model(ids, ids)
        forward, Counting.calls = Counting.calls, 0
        loss.backward()
        equal(tuple(int(n) for n in allreduces(L)), (forward, Counting.calls),
              f"(forward, backward) allreduces for L = {L}")
