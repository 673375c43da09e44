"""The communicator without MPI: the single-process job, argument errors, how `world()` and
`mpiexec_command` decide, and that `import nima` never starts MPI."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nima.distributed import (
    DistributedError,
    SingleProcess,
    abort_on_error,
    comm,
    launch,
    launched_size,
    mpiexec_command,
    world,
)

ROOT = Path(__file__).resolve().parents[2]


def test_a_single_process_reduces_to_itself() -> None:
    c = SingleProcess()
    x = np.arange(5, dtype=np.float32)
    assert c.allreduce(x, "max") is x and x.tolist() == [0, 1, 2, 3, 4]
    assert c.bcast(x, root=0) is x and x.tolist() == [0, 1, 2, 3, 4]
    got = c.sendrecv(np.array([3.0]), 0, np.empty(1), 0)
    assert got.tolist() == [3.0]
    c.barrier()
    c.check_same("anything", "one value")
    with pytest.raises(DistributedError, match="no other rank"):
        c.send(x, 0)
    with pytest.raises(DistributedError, match="no other rank"):
        c.recv(x, 0)


@pytest.mark.parametrize("call, error, match", [
    (lambda c: c.allreduce([1.0, 2.0]), TypeError, "allreduce: expected a NumPy array, got list"),
    (lambda c: c.allreduce(np.ones(2, np.float16)), TypeError, "dtype float16 cannot be sent"),
    (lambda c: c.allreduce(np.ones((3, 2))[:, 0]), ValueError, "not C-contiguous"),
    (lambda c: c.allreduce(np.ones(2), "mean"), ValueError, "op must be one of 'sum'"),
    (lambda c: c.bcast(np.ones(2), root=1), ValueError, "root=1 is not a rank of this 1-proc"),
    (lambda c: c.send(np.ones(2), dest=-1), ValueError, "dest=-1 is not a rank"),
    (lambda c: c.sendrecv(np.ones(2), 0, np.ones(3), 0), ValueError, "receiving into float64"),
], ids=["not-array", "dtype", "strided", "op", "root", "dest", "sendrecv-shape"])
def test_bad_arguments_name_the_call_and_value(call, error, match) -> None:
    with pytest.raises(error, match=match):
        call(SingleProcess())


def test_read_only_buffers_are_refused_for_results() -> None:
    x = np.ones(3)
    x.flags.writeable = False
    with pytest.raises(ValueError, match=r"allreduce: .* is read-only"):
        SingleProcess().allreduce(x)


def test_launcher_size_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in comm.LAUNCHER_SIZE:
        monkeypatch.delenv(name, raising=False)
    assert launched_size() == 1
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "4")
    assert launched_size() == 4
    monkeypatch.setenv("PMI_SIZE", "two")
    with pytest.raises(DistributedError, match="PMI_SIZE='two' is not a number"):
        launched_size()


def test_world_is_one_process_without_a_launcher(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in comm.LAUNCHER_SIZE:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(comm, "_world", None)
    assert isinstance(world(), SingleProcess) and world() is world()


def test_several_processes_without_mpi4py_say_what_to_install(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PMI_SIZE", "2")
    monkeypatch.setattr(comm, "_world", None)
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # as if it were not installed
    with pytest.raises(DistributedError, match=r'pip install "nima\[mpi\]"'):
        world()


def test_mpiexec_command(monkeypatch: pytest.MonkeyPatch) -> None:
    assert mpiexec_command(1, ["python", "x.py"]) == ["python", "x.py"]
    monkeypatch.setattr(launch, "mpi_available", lambda: True)
    monkeypatch.setattr(launch, "mpiexec_path", lambda: "/opt/mpi/bin/mpiexec")
    assert mpiexec_command(3, ["python", "x.py"]) == ["/opt/mpi/bin/mpiexec", "-n", "3",
                                                     "python", "x.py"]
    monkeypatch.setattr(launch, "mpi_available", lambda: False)
    with pytest.raises(DistributedError, match=r'2 processes needs mpi4py .*"nima\[mpi\]"'):
        mpiexec_command(2, ["python", "x.py"])
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="nproc must be a positive int"):
            mpiexec_command(bad, ["python"])


def test_abort_on_error_lets_a_single_process_raise() -> None:
    with pytest.raises(RuntimeError, match="plain"), abort_on_error(SingleProcess()):
        raise RuntimeError("plain")
    with pytest.raises(SystemExit), abort_on_error(SingleProcess()):
        sys.exit(2)


def test_import_nima_does_not_start_mpi() -> None:
    code = ("import sys, nima, nima.distributed; nima.distributed.world(); "
            "print('mpi4py' in sys.modules)")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for name in comm.LAUNCHER_SIZE:
        env.pop(name, None)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120, check=True)
    assert out.stdout.strip() == "False"
