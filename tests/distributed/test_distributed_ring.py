"""Ring allreduce in one process: the chunking, the degenerate one-rank ring, errors. Its
equality with MPI's allreduce on 2 and 3 ranks runs in `test_distributed_mpi.py`."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from nima.distributed import SingleProcess, chunk_bounds, ring_allreduce


def test_chunk_bounds_example() -> None:
    assert chunk_bounds(10, 3).tolist() == [0, 3, 6, 10]


@given(st.integers(0, 1000), st.integers(1, 16))
def test_chunks_cover_everything_with_sizes_one_apart(n: int, parts: int) -> None:
    bounds = chunk_bounds(n, parts)
    sizes = np.diff(bounds)
    assert bounds[0] == 0 and bounds[-1] == n and len(sizes) == parts
    assert sizes.min() >= 0 and sizes.max() - sizes.min() <= 1


def test_a_ring_of_one_is_the_identity() -> None:
    x = np.arange(7, dtype=np.float64).reshape(7, 1)
    assert ring_allreduce(SingleProcess(), x) is x
    assert x.ravel().tolist() == list(range(7))


def test_ring_refuses_what_it_cannot_send() -> None:
    with pytest.raises(TypeError, match="ring_allreduce: dtype float16 cannot be sent"):
        ring_allreduce(SingleProcess(), np.ones(3, np.float16))
    with pytest.raises(ValueError, match=r"ring_allreduce: .* not C-contiguous"):
        ring_allreduce(SingleProcess(), np.ones((4, 4)).T)
