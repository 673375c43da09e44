"""Launching MPI jobs (the checks of `mpi_checks.py`, `train_job.py`) for the tests of this
folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from nima.distributed import mpi_available, mpiexec_command

ROOT = Path(__file__).resolve().parents[2]
CHECKS = Path(__file__).with_name("mpi_checks.py")
PYTHONPATH = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))

needs_mpi = pytest.mark.skipif(
    not mpi_available(),
    reason='needs mpi4py and mpiexec: pip install "nima[mpi]" (or pip install mpi4py mpich)')


def run_script(nproc: int, script: Path, *args: str,
               timeout: float = 300) -> subprocess.CompletedProcess:
    """Run `python SCRIPT ARGS` as `nproc` processes of one numba thread each (the machine
    has few cores) with this checkout's `nima`; return the finished process."""
    env = {**os.environ, "NUMBA_NUM_THREADS": "1", "PYTHONPATH": PYTHONPATH}
    command = mpiexec_command(nproc, [sys.executable, str(script), *args])
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def run_checks(nproc: int, *names: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the checks `names` of `mpi_checks.py` as `nproc` processes."""
    return run_script(nproc, CHECKS, *names, timeout=timeout)


def report(result: subprocess.CompletedProcess) -> str:
    return (f"exit code {result.returncode}\n--- stdout ---\n{result.stdout[-3000:]}\n"
            f"--- stderr ---\n{result.stderr[-3000:]}")
