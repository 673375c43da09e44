r"""Tensor parallelism (Megatron-LM): each layer's weight matrices split across ranks.

A transformer sublayer is two matrix products with something elementwise (or per head) in
between. Split the first matrix by its output columns and the second by its input rows:

$$Y = \phi(X A)\,B, \qquad A = [A_1 \;\cdots\; A_N], \quad
B = \begin{bmatrix} B_1 \\ \vdots \\ B_N \end{bmatrix}
\qquad\Longrightarrow\qquad Y = \sum_{r=1}^{N} \phi(X A_r)\, B_r .$$

Rank $r$ holds $A_r$ and $B_r$ — a $1/N$ share of the weights — and computes
$\phi(X A_r) B_r$ with no communication at all, because $\phi$ acts on each column on its own
(GELU) or each head on its own (attention). One allreduce then sums the $N$ partial results.
In code, $W$ is stored `(out, in)` as in `Linear`, so "columns of $A$" are rows of
`fc.weight` (`ColumnParallelLinear`) and "rows of $B$" are columns of `proj.weight`
(`RowParallelLinear`).

Two conjugate operators carry the communication, one allreduce in each direction per sublayer:

| | forward | backward |
|---|---|---|
| $f$ (`CopyToParallel`), before $A$ | $y = x$ | $\bar x = \sum_r \bar y_r$ |
| $g$ (`ReduceFromParallel`), after $B$ | $y = \sum_r x_r$ | $\bar x_r = \bar y$ |

$f$'s backward sums because $X$ feeds every rank's branch: its gradient is the sum of the
branches' gradients. Layer norms, embeddings and biases added after $g$ are *replicated*: every
rank holds a copy and computes the same gradient for it, so the copies stay equal without a
message.
"""

from __future__ import annotations

import numpy as np

from nima._tensor import Tensor
from nima.autograd import Context, Function
from nima.distributed.comm import Communicator
from nima.nn.attention import MultiHeadAttention
from nima.nn.feedforward import FeedForward
from nima.nn.linear import Linear
from nima.nn.module import Module
from nima.nn.parameter import Parameter
from nima.ops.attention import scaled_dot_product_attention

__all__ = [
    "ColumnParallelLinear",
    "CopyToParallel",
    "ReduceFromParallel",
    "RowParallelLinear",
    "TensorParallelAttention",
    "counted_parameters",
    "parallelize_feedforward",
    "parallelize_gpt",
    "shard",
]


# --8<-- [start:conjugates]
class CopyToParallel(Function):
    r"""$f$: $y = x$; backward $\bar x = \sum_r \bar y_r$ (one allreduce)."""

    @staticmethod
    def forward(ctx: Context, x: np.ndarray, *, comm: Communicator) -> np.ndarray:
        ctx.comm = comm
        return x

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray) -> np.ndarray:
        return ctx.comm.allreduce(np.array(grad, order="C"))  # a copy: sum of every branch


class ReduceFromParallel(Function):
    r"""$g$: $y = \sum_r x_r$ (one allreduce); backward $\bar x_r = \bar y$."""

    @staticmethod
    def forward(ctx: Context, x: np.ndarray, *, comm: Communicator) -> np.ndarray:
        return comm.allreduce(np.array(x, order="C"))  # a copy: the partial sums of all ranks

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray) -> np.ndarray:
        return grad
# --8<-- [end:conjugates]


def shard(array: np.ndarray, comm: Communicator, axis: int, groups: int = 1) -> np.ndarray:
    """This rank's share of `array` along `axis`: cut the axis into `groups` equal parts (q, k
    and v of a fused projection; gate and value of a gated FFN) and take the rank's `1/size`
    of each, in order.

    Example: 2 ranks, `groups=3` on a `(6, d)` qkv weight: rank 0 gets rows 0, 2, 4 (the
    first half of q, of k and of v), rank 1 rows 1, 3, 5.

    Raises:
        ValueError: the axis does not split evenly.
    """
    n, N = array.shape[axis], comm.size
    if n % (groups * N):
        raise ValueError(f"shard: axis {axis} of length {n} does not split into {groups} "
                         f"group(s) x {N} ranks")
    parts = np.split(array, groups, axis=axis)
    return np.ascontiguousarray(
        np.concatenate([np.split(p, N, axis=axis)[comm.rank] for p in parts], axis=axis))


# --8<-- [start:column_row]
class ColumnParallelLinear(Module):
    r"""$y_r = f(x)\,A_r^\top + b_r$: this rank's `out/N` outputs, from the whole input.

    `weight` `(out/N, in)` and `bias` `(out/N,)` are this rank's rows of the dense layer's.
    """

    SHARDED = ("weight", "bias")  # parameters that differ between ranks

    def __init__(self, weight: np.ndarray, bias: np.ndarray | None,
                 comm: Communicator) -> None:
        super().__init__()
        self.weight = Parameter(weight)  # (out/N, in)
        self.bias = None if bias is None else Parameter(bias)  # (out/N,)
        self.comm = comm

    @classmethod
    def from_dense(cls, linear: Linear, comm: Communicator,
                   groups: int = 1) -> ColumnParallelLinear:
        """This rank's share of `linear` (see `shard` for `groups`)."""
        bias = None if linear.bias is None else shard(linear.bias.data, comm, 0, groups)
        return cls(shard(linear.weight.data, comm, 0, groups), bias, comm)

    def forward(self, x: Tensor) -> Tensor:
        x = CopyToParallel.apply(x, comm=self.comm)  # (..., in): backward sums over ranks
        y = x @ self.weight.T  # (..., out/N)
        return y + self.bias if self.bias is not None else y


class RowParallelLinear(Module):
    r"""$y = g\bigl(\sum_r x_r B_r^\top\bigr) + b$: this rank's `in/N` inputs to the whole
    output, summed over ranks, then the (replicated) bias.

    `weight` `(out, in/N)` holds this rank's columns of the dense weight; `bias` `(out,)` is
    the dense bias, the same on every rank.
    """

    SHARDED = ("weight",)

    def __init__(self, weight: np.ndarray, bias: np.ndarray | None,
                 comm: Communicator) -> None:
        super().__init__()
        self.weight = Parameter(weight)  # (out, in/N)
        self.bias = None if bias is None else Parameter(bias)  # (out,)
        self.comm = comm

    @classmethod
    def from_dense(cls, linear: Linear, comm: Communicator) -> RowParallelLinear:
        """This rank's share of `linear`."""
        bias = None if linear.bias is None else linear.bias.data.copy()
        return cls(shard(linear.weight.data, comm, 1), bias, comm)

    def forward(self, x: Tensor) -> Tensor:
        partial = x @ self.weight.T  # (..., out): this rank's term of the sum
        y = ReduceFromParallel.apply(partial, comm=self.comm)  # (..., out), all ranks' terms
        return y + self.bias if self.bias is not None else y
# --8<-- [end:column_row]


# --8<-- [start:feedforward]
def parallelize_feedforward(ffn: FeedForward, comm: Communicator) -> FeedForward:
    r"""Split `ffn` across the ranks, in place: `fc` becomes column-parallel (for the gated
    kinds, gate and value rows are split alike), `proj` row-parallel. `FeedForward.forward`
    runs unchanged: $\phi$ acts on each hidden unit alone, on the rank that holds it."""
    if ffn.hidden % comm.size:
        raise ValueError(f"parallelize_feedforward: hidden={ffn.hidden} does not split over "
                         f"{comm.size} ranks")
    gated = ffn.kind in ("glu", "swiglu")
    ffn.fc = ColumnParallelLinear.from_dense(ffn.fc, comm, groups=2 if gated else 1)
    ffn.proj = RowParallelLinear.from_dense(ffn.proj, comm)
    return ffn
# --8<-- [end:feedforward]


class TensorParallelAttention(Module):
    r"""Causal self-attention with this rank's `n_head / N` heads: the fused `qkv` projection
    column-parallel (this rank's heads of q, k and v), `proj` row-parallel. Heads never look
    at each other, so attention itself needs no message.

    Build it from a dense layer with `from_dense`. Without a KV cache (training only).
    """

    def __init__(self, qkv: ColumnParallelLinear, proj: RowParallelLinear, n_head: int,
                 head_dim: int, heads: slice, causal: bool, dropout: float, rope: Module | None,
                 alibi: Module | None) -> None:
        super().__init__()
        self.qkv, self.proj = qkv, proj
        self.n_head, self.head_dim, self.heads = n_head, head_dim, heads  # local heads
        self.causal, self.dropout, self.rope, self.alibi = causal, dropout, rope, alibi

    @classmethod
    def from_dense(cls, mha: MultiHeadAttention, comm: Communicator) -> TensorParallelAttention:
        """This rank's heads of the self-attention layer `mha`.

        Raises:
            TypeError: `mha` is not a self-attention `MultiHeadAttention`.
            ValueError: its heads do not split evenly over the ranks.
        """
        if type(mha) is not MultiHeadAttention or mha.cross:
            raise TypeError(f"TensorParallelAttention: needs a self-attention "
                            f"MultiHeadAttention, got {type(mha).__name__}"
                            + (" with cross=True" if getattr(mha, "cross", False) else ""))
        if mha.n_head % comm.size:
            raise ValueError(f"TensorParallelAttention: n_head={mha.n_head} does not split "
                             f"over {comm.size} ranks")
        local = mha.n_head // comm.size
        return cls(ColumnParallelLinear.from_dense(mha.qkv, comm, groups=3),
                   RowParallelLinear.from_dense(mha.proj, comm), local, mha.head_dim,
                   slice(comm.rank * local, (comm.rank + 1) * local), mha.causal, mha.dropout,
                   mha.rope, mha.alibi)

    # --8<-- [start:attention]
    def forward(self, x: Tensor, cache: None = None) -> Tensor:
        if cache is not None:
            raise ValueError("TensorParallelAttention: decoding with a KV cache is not "
                             "supported; gather the weights into a dense model to generate")
        B, T, _ = x.shape
        width = self.n_head * self.head_dim  # C / N
        q, k, v = self.qkv(x).split(width, dim=2)  # (B, T, 3C/N) -> 3 x (B, T, C/N)
        q, k, v = (t.view(B, T, self.n_head, self.head_dim).transpose(1, 2)
                   for t in (q, k, v))  # 3 x (B, nh/N, T, hd): this rank's heads
        if self.rope is not None:
            q, k = self.rope(q), self.rope(k)
        bias = None if self.alibi is None else self.alibi.bias(T, T)[self.heads]  # (nh/N, T, T)
        y = scaled_dot_product_attention(q, k, v, attn_mask=bias, is_causal=self.causal,
                                         dropout_p=self.dropout if self.training else 0.0)
        y = y.transpose(1, 2).reshape(B, T, width)  # (B, T, C/N): the heads side by side
        return self.proj(y)  # (B, T, C): summed over ranks
    # --8<-- [end:attention]

    def extra_repr(self) -> str:
        return f"heads={self.heads.start}..{self.heads.stop - 1}, causal={self.causal}"


def parallelize_gpt(model: Module, comm: Communicator) -> Module:
    """Split every block's attention and feed-forward network across the ranks, in place;
    embeddings, norms and the head stay replicated. Build the dense model on every rank from
    the same seed first. Returns `model`, whose `forward` is unchanged."""
    for block in model.blocks:
        block.attn = TensorParallelAttention.from_dense(block.attn, comm)
        parallelize_feedforward(block.ffn, comm)
    return model


def counted_parameters(model: Module, comm: Communicator) -> list[Parameter]:
    """The parameters whose squares this rank adds to the global gradient norm
    (`nima.distributed.clip_grad_norm_`): its shards, and the replicated ones on rank 0 only."""
    sharded = {id(getattr(m, name)) for m in model.modules()
               if isinstance(m, ColumnParallelLinear | RowParallelLinear)
               for name in m.SHARDED if getattr(m, name) is not None}
    return [p for p in model.parameters() if id(p) in sharded or comm.rank == 0]
