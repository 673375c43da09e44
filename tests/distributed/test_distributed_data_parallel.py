"""`DataParallel` and `FlatBuffer` in one process: the flat buffer's round trip, the bucketed
allreduce (a handful of messages, not one per parameter), the mean over ranks, the row
assignment, and its errors. The N-process equivalence runs in `test_distributed_mpi.py`."""

import math

import numpy as np
import pytest
from fake_comm import Counting, Twins
from hypothesis import given
from hypothesis import strategies as st

import nima
from nima.distributed import DataParallel, FlatBuffer, SingleProcess
from nima.models import GPT, GPTConfig


def small_gpt() -> GPT:
    nima.manual_seed(0)
    return GPT(GPTConfig.preset("baby", n_layer=2, n_embd=32, n_head=2, block_size=8))


def with_gradients(model: GPT) -> list:
    x = np.random.default_rng(0).integers(0, 65, size=(2, 9))
    _, loss = model(x[:, :-1], x[:, 1:])
    loss.backward()
    return list(model.parameters())


@given(st.lists(st.lists(st.integers(1, 4), min_size=0, max_size=3), min_size=1, max_size=5))
def test_flat_buffer_round_trip(shapes: list[list[int]]) -> None:
    rng = np.random.default_rng(len(shapes))
    arrays = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    flat = FlatBuffer([a.shape for a in arrays], np.dtype(np.float32))
    data = flat.pack(arrays)
    assert data.shape == (sum(a.size for a in arrays),)
    np.testing.assert_array_equal(data, np.concatenate([a.ravel() for a in arrays]))
    out = [np.empty_like(a) for a in arrays]
    flat.unpack(out)
    for a, b in zip(arrays, out, strict=True):
        np.testing.assert_array_equal(a, b)


def test_flat_buffer_sends_missing_arrays_as_zeros() -> None:
    flat = FlatBuffer([(2,), (3,)], np.dtype(np.float64))
    assert flat.pack([None, np.ones(3)]).tolist() == [0, 0, 1, 1, 1]
    keep = np.full(3, 7.0)
    flat.unpack([None, keep])
    assert keep.tolist() == [1, 1, 1]


@pytest.mark.parametrize("bucket_mb", [25.0, 0.05, 1e-5])
def test_gradients_travel_in_buckets_of_one_flat_buffer(bucket_mb: float) -> None:
    params = with_gradients(small_gpt())
    before = [p.grad.copy() for p in params]
    comm = Counting()
    dp = DataParallel(comm, bucket_mb=bucket_mb)
    dp.allreduce_gradients(params)
    total = sum(p.size for p in params)
    step = max(1, int(bucket_mb * 2**20) // 4)
    assert comm.calls[0] == 2  # the one-time check that every rank has the same parameters
    assert comm.calls[1:] == [min(step, total - s) for s in range(0, total, step)]
    comm.calls.clear()
    dp.allreduce_gradients(params)  # the same list again: no second check
    assert len(comm.calls) == math.ceil(total / step)
    if bucket_mb == 25.0:  # the default: all the gradients of a small model in one message
        assert len(comm.calls) == 1 < len(params)
    for p, g in zip(params, before, strict=True):
        np.testing.assert_array_equal(p.grad, g)  # the mean over one rank is the gradient


def test_the_mean_divides_by_the_number_of_ranks() -> None:
    params = with_gradients(small_gpt())
    before = [p.grad.copy() for p in params]
    params[0].grad = None  # stays None; the rest is averaged over 3 identical ranks
    DataParallel(Twins(size=3), bucket_mb=0.01).allreduce_gradients(params)
    assert params[0].grad is None
    for p, g in zip(params[1:], before[1:], strict=True):
        np.testing.assert_allclose(p.grad, g, rtol=1e-6)  # (3 g) / 3


def test_a_tied_parameter_is_reduced_once() -> None:
    model = small_gpt()
    assert model.lm_head.weight is model.wte.weight
    params = with_gradients(model)
    comm = Counting()
    DataParallel(comm).allreduce_gradients([*params, model.lm_head.weight])
    assert comm.calls[1:] == [sum(p.size for p in params)]


def test_broadcast_parameters_keeps_the_arrays_in_place() -> None:
    model = small_gpt()
    arrays = {name: a for name, a in model.state_dict().items()}
    copies = {name: a.copy() for name, a in arrays.items()}
    DataParallel(SingleProcess()).broadcast_parameters(model)
    for name, a in model.state_dict().items():
        assert a is arrays[name]
        np.testing.assert_array_equal(a, copies[name])


def test_rank_rows_are_contiguous_blocks_in_rank_order() -> None:
    assert [DataParallel(Twins(r, 3)).rank_rows(12) for r in range(3)] == \
        [slice(0, 4), slice(4, 8), slice(8, 12)]
    assert DataParallel(SingleProcess()).rank_rows(5) == slice(0, 5)


@pytest.mark.parametrize("rows", [7, 0, 1, True, 2.0])
def test_rank_rows_refuse_uneven_batches(rows: object) -> None:
    with pytest.raises(ValueError, match=f"a global batch of {rows!r} rows does not split "
                                         f"evenly over 2 ranks"):
        DataParallel(Twins(0, 2)).rank_rows(rows)


def test_reduce_mean_and_bad_bucket() -> None:
    assert DataParallel(Twins(size=4)).reduce_mean(2.5) == 2.5
    assert math.isnan(DataParallel(SingleProcess()).reduce_mean(float("nan")))
    for bad in (0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="bucket_mb must be positive"):
            DataParallel(SingleProcess(), bucket_mb=bad)
