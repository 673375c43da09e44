"""Tensor parallelism in one process: the conjugate operators f and g and the parallel layers
are float64-gradient-checked, equal the dense layers when there is one rank, shards are cut
as documented, and bad splits are refused. Two ranks against the dense layers (outputs,
gradients, allreduce counts): `test_distributed_mpi.py`."""

import numpy as np
import pytest
from fake_comm import Twins
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import arrays, shapes

import nima
from nima.distributed import (
    CopyToParallel,
    ReduceFromParallel,
    SingleProcess,
    TensorParallelAttention,
    parallelize_feedforward,
    parallelize_gpt,
    shard,
)
from nima.models import GPT, GPTConfig
from nima.nn import FeedForward, HybridAttention, MultiHeadAttention


@given(st.data())
def test_conjugate_operators_gradcheck(data: st.DataObject) -> None:
    x = nima.tensor(data.draw(arrays(data.draw(shapes(1, 3)))), requires_grad=True)
    one = SingleProcess()
    assert nima.gradcheck(lambda t: CopyToParallel.apply(t, comm=one).tanh(), [x])
    assert nima.gradcheck(lambda t: ReduceFromParallel.apply(t.tanh(), comm=one), [x])


@settings(max_examples=10)
@given(st.sampled_from(["relu", "gelu", "glu", "swiglu"]), st.integers(1, 3), st.integers(0, 99))
def test_parallel_feedforward_on_one_rank_is_the_dense_layer(kind: str, rows: int,
                                                             seed: int) -> None:
    nima.manual_seed(seed)
    dense = FeedForward(4, 6, kind=kind).double()
    nima.manual_seed(seed)
    tp = parallelize_feedforward(FeedForward(4, 6, kind=kind).double(), SingleProcess())
    x = nima.tensor(np.random.default_rng(seed).standard_normal((rows, 3, 4)),
                    requires_grad=True)
    np.testing.assert_allclose(tp(x).data, dense(x).data, rtol=1e-13, atol=1e-13)
    assert nima.gradcheck(tp, [x])


@settings(max_examples=10)
@given(st.sampled_from([1, 2, 4]), st.integers(1, 5), st.integers(0, 99))
def test_parallel_attention_on_one_rank_is_the_dense_layer(n_head: int, T: int,
                                                           seed: int) -> None:
    nima.manual_seed(seed)
    dense = MultiHeadAttention(8, n_head, causal=True).double()
    tp = TensorParallelAttention.from_dense(dense, SingleProcess())
    x = nima.tensor(np.random.default_rng(seed).standard_normal((2, T, 8)), requires_grad=True)
    np.testing.assert_allclose(tp(x).data, dense(x).data, rtol=1e-13, atol=1e-13)
    assert nima.gradcheck(tp, [x])


def test_shards_take_each_group_in_rank_order() -> None:
    qkv = np.arange(6)[:, None] * np.ones((1, 2))  # rows q0 q1 k0 k1 v0 v1
    assert shard(qkv, Twins(0, 2), 0, groups=3)[:, 0].tolist() == [0, 2, 4]
    assert shard(qkv, Twins(1, 2), 0, groups=3)[:, 0].tolist() == [1, 3, 5]
    w = np.arange(8).reshape(2, 4)
    assert shard(w, Twins(1, 2), 1).tolist() == [[2, 3], [6, 7]]
    with pytest.raises(ValueError, match="shard: axis 0 of length 6 does not split into 1 "
                                         "group"):
        shard(qkv, Twins(0, 4), 0)


def test_bad_splits_are_refused() -> None:
    three = Twins(0, 3)
    with pytest.raises(ValueError, match="n_head=4 does not split over 3 ranks"):
        TensorParallelAttention.from_dense(MultiHeadAttention(8, 4), three)
    with pytest.raises(ValueError, match="hidden=8 does not split over 3 ranks"):
        parallelize_feedforward(FeedForward(4, 8), three)
    with pytest.raises(TypeError, match="self-attention MultiHeadAttention, got "
                                        "MultiHeadAttention with cross=True"):
        TensorParallelAttention.from_dense(MultiHeadAttention(8, 2, cross=True), Twins())
    with pytest.raises(TypeError, match="got HybridAttention"):
        TensorParallelAttention.from_dense(HybridAttention(8, 2, 16), Twins())
    tp = TensorParallelAttention.from_dense(MultiHeadAttention(8, 2), SingleProcess())
    with pytest.raises(ValueError, match="KV cache is not supported"):
        tp(nima.randn(1, 2, 8), cache=nima.nn.KVCache())


def test_parallelize_gpt_keeps_the_parameter_names() -> None:
    nima.manual_seed(0)
    config = GPTConfig.preset("baby", n_layer=2, n_embd=16, n_head=2, block_size=8)
    names = [n for n, _ in GPT(config).named_parameters()]
    tp = parallelize_gpt(GPT(config), Twins(1, 2))
    assert [n for n, _ in tp.named_parameters()] == names
    assert tp.blocks[0].attn.qkv.weight.shape == (3 * 8, 16)  # half of each of q, k, v
    assert tp.blocks[1].ffn.proj.weight.shape == (16, 32)  # half of the 64 hidden inputs
