r"""Starting a job: the `mpiexec` command line, and failing together once it runs.

`mpiexec -n N python script.py` starts $N$ copies of the same script; each learns its rank from
`world()`. On several machines the same command takes a host file (MPICH: `-f hosts`, one host
name per line, `host:slots` to start several processes there). Everything else — which rows,
which layers, which heads a rank owns — follows from `rank` and `size`. `run_job` starts such a
command from a program (as `nima train --nproc N` does) and passes Ctrl-C on to the job.

**Failing together.** Collective calls wait for every rank. If one rank raises and exits
normally, the others wait in their next allreduce forever, and the failing one waits in
`MPI_Finalize` for them. `abort_on_error` turns an exception on any rank into `MPI_Abort`,
which makes `mpiexec` end every process of the job at once. A rank killed by a signal needs
nothing: `mpiexec` notices the death and ends the others.
"""

from __future__ import annotations

import contextlib
import importlib.util
import shutil
import signal
import subprocess
import sys
import traceback
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from nima.distributed.comm import INSTALL_HINT, Communicator, DistributedError

__all__ = ["abort_on_error", "mpi_available", "mpiexec_command", "mpiexec_path", "run_job"]

# what a launcher passes on to the job (MPICH's mpiexec passes SIGINT and SIGTERM on to every
# rank; a hang-up, the terminal gone, asks the job to stop as SIGTERM does)
FORWARDED = {getattr(signal, name): as_ for name, as_ in (
    ("SIGINT", signal.SIGINT), ("SIGTERM", signal.SIGTERM), ("SIGHUP", signal.SIGTERM))
    if hasattr(signal, name)}


def mpiexec_path() -> str | None:
    """The `mpiexec` beside this Python (where the `mpich` wheel installs it) or on `PATH`;
    None if there is none."""
    beside = Path(sys.executable).parent / "mpiexec"
    return str(beside) if beside.is_file() else shutil.which("mpiexec")


def mpi_available() -> bool:
    """True when both `mpi4py` and an `mpiexec` are installed (checked without importing
    `mpi4py`, which would start MPI)."""
    return importlib.util.find_spec("mpi4py") is not None and mpiexec_path() is not None


# --8<-- [start:mpiexec_command]
def mpiexec_command(nproc: int, args: Sequence[str]) -> list[str]:
    """The command that runs `args` (e.g. `[sys.executable, "train.py"]`) as `nproc` processes.

    Raises:
        ValueError: `nproc` is not a positive int.
        DistributedError: `nproc > 1` and `mpi4py` or `mpiexec` is missing (the message says
            what to install).
    """
    if isinstance(nproc, bool) or not isinstance(nproc, int) or nproc < 1:
        raise ValueError(f"mpiexec_command: nproc must be a positive int, got {nproc!r}")
    if nproc == 1:
        return list(args)
    if not mpi_available():
        raise DistributedError(f"running {nproc} processes needs mpi4py and mpiexec: "
                               f"{INSTALL_HINT}")
    return [str(mpiexec_path()), "-n", str(nproc), *args]
# --8<-- [end:mpiexec_command]


def run_job(nproc: int, args: Sequence[str], env: Mapping[str, str] | None = None) -> int:
    """Run `args` as `nproc` processes under `mpiexec` (as one plain process when `nproc` is
    1) and wait; returns the exit code (the largest of the ranks').

    The job runs in a session of its own, and Ctrl-C, SIGTERM and SIGHUP sent to this process
    are passed on to it once each (as SIGINT, SIGTERM, SIGTERM), so `mpiexec` can hand them to
    every rank: one Ctrl-C on a terminal reaches each rank exactly once.

    Raises:
        ValueError, DistributedError: as `mpiexec_command`.
    """
    command = mpiexec_command(nproc, args)
    process = subprocess.Popen(command, env=None if env is None else dict(env),
                               start_new_session=True)

    def forward(signum: int, frame: Any) -> None:
        process.send_signal(FORWARDED[signum])

    previous = {}
    with contextlib.suppress(ValueError):  # not the main thread: no signal handling
        for signum in FORWARDED:
            previous[signum] = signal.signal(signum, forward)
    try:
        return process.wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


# --8<-- [start:abort_on_error]
@contextlib.contextmanager
def abort_on_error(comm: Communicator) -> Iterator[None]:
    """Run the block; if it raises on this rank, print the traceback and abort the whole job.

    Wrap a distributed program's main function: `with abort_on_error(world()): main()`.
    `SystemExit(0)` passes through; any other exception (a `SystemExit` with a non-zero code or
    a message, `KeyboardInterrupt`, an error) is printed with this rank's number, then
    `comm.abort` ends every rank. In a single process the exception propagates as usual.
    """
    try:
        yield
    except SystemExit as e:
        if comm.size == 1 or e.code in (None, 0):
            raise
        reason = e.code if isinstance(e.code, str) else f"exited with code {e.code}"
        comm.abort(f"{reason}; aborting all {comm.size} processes",
                   e.code if isinstance(e.code, int) else 1)
    except BaseException as e:
        if comm.size == 1:
            raise
        trace = "".join(traceback.format_exception(e))
        print(f"[rank {comm.rank}] {trace}", file=sys.stderr, end="", flush=True)
        comm.abort(f"{type(e).__name__}: {e}; aborting all {comm.size} processes")
# --8<-- [end:abort_on_error]
