"""The distributed pieces in real MPI jobs of 2 and 3 processes, each checked on every rank
against the single-process computation (see `mpi_checks.py`), and jobs that must fail fast."""

import subprocess

import numpy as np
import pytest
from mpi_job import needs_mpi, report, run_checks

import nima
from nima.models import GPT, GPTConfig
from nima.nn import FeedForward, MultiHeadAttention
from nima.optim import AdamW

pytestmark = needs_mpi


@pytest.fixture(scope="module", autouse=True)
def compiled_kernels() -> None:
    """Compile (or load) the numba kernels the jobs use here, once, before the processes of a
    job would each compile them at the same time on a cold cache."""
    nima.manual_seed(0)
    model = GPT(GPTConfig.preset("baby", n_layer=1, n_embd=16, n_head=2, block_size=8))
    x = np.zeros((2, 8), dtype=np.int64)
    model(x, x)[1].backward()
    AdamW(model.parameters()).step()
    for layer in (FeedForward(4, 8).double(), MultiHeadAttention(4, 2, causal=True).double()):
        layer(nima.randn(1, 3, 4).double()).sum().backward()


# one job per process count: starting Python and loading numba's kernels costs more than the
# checks; mpi_checks.py prints "ok NAME" after each check that passed on every rank
@pytest.mark.parametrize("nproc, names", [
    (2, ["comm_basics", "ring", "data_parallel", "pipeline", "tensor_parallel"]),
    (3, ["comm_basics", "ring", "pipeline"]),  # uneven chunks; a middle pipeline stage
], ids=["2-ranks", "3-ranks"])
def test_distributed_pieces_match_one_process(nproc: int, names: list[str]) -> None:
    result = run_checks(nproc, *names)
    assert result.returncode == 0, report(result)
    assert result.stdout.split() == [w for name in names for w in ("ok", name)], report(result)


BOUND_S = 30  # a job that hangs would run until the timeout; these end in about 2 s


@pytest.mark.parametrize("name, message", [
    ("rank_raises", "RuntimeError: rank 1 fails on purpose; aborting all 2 processes"),
    ("rank_exits", "exited with code 3; aborting all 2 processes"),
    ("rank_killed", "signal 9"),
], ids=["raises", "exits", "killed"])
def test_a_failing_rank_ends_the_job(name: str, message: str) -> None:
    try:
        result = run_checks(2, name, timeout=BOUND_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{name}: the job still ran after {BOUND_S} s (a rank hangs in a collective)")
    assert result.returncode != 0, report(result)
    assert message in result.stdout + result.stderr, report(result)
    assert "ok" not in result.stdout.split()
