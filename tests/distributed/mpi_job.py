"""Launching the checks of `mpi_checks.py` as an MPI job, for the tests of this folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from nima.distributed import mpi_available, mpiexec_command

ROOT = Path(__file__).resolve().parents[2]
CHECKS = Path(__file__).with_name("mpi_checks.py")

needs_mpi = pytest.mark.skipif(
    not mpi_available(),
    reason='needs mpi4py and mpiexec: pip install "nima[mpi]" (or pip install mpi4py mpich)')


def run_checks(nproc: int, *names: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run `mpi_checks.py NAMES` as `nproc` processes of one numba thread each (the machine
    has few cores) with this checkout's `nima`; return the finished process."""
    env = {**os.environ, "NUMBA_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    command = mpiexec_command(nproc, [sys.executable, str(CHECKS), *names])
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def report(result: subprocess.CompletedProcess) -> str:
    return (f"exit code {result.returncode}\n--- stdout ---\n{result.stdout[-3000:]}\n"
            f"--- stderr ---\n{result.stderr[-3000:]}")
