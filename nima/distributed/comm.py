r"""`Communicator`: what a process needs to know and do to work with the others.

A job of $N$ processes ("ranks" $0 \dots N-1$) started by `mpiexec -n N` shares no memory; the
processes cooperate only by messages. Everything `nima.distributed` builds — data, pipeline and
tensor parallelism, the ring allreduce — uses this small set of them: `allreduce` (every rank
gets $\sum_r x_r$, or the max or min), `bcast` (every rank gets one rank's array), `send` /
`recv` / `sendrecv` (arrays between two ranks), `barrier`, and `abort` (end the whole job).

Two implementations: `MPICommunicator` wraps `mpi4py` (the optional extra
`pip install "nima[mpi]"`), and `SingleProcess` is the same interface for a job of one process,
where a sum over ranks is the value itself. `world()` picks one: MPI when `mpiexec` started more
than one process, the single process otherwise — so the same script runs with or without
`mpiexec`, and `import nima` never imports `mpi4py` (importing it starts MPI).

Only NumPy buffers travel, never pickled objects (mpi4py's lower-case `bcast`/`send` pickle;
Nima does not use them): a buffer is a contiguous array of float32, float64, int32 or int64, and
the receiver allocates it with the shape and dtype it expects.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from typing import Any, NoReturn

import numpy as np

__all__ = [
    "INSTALL_HINT",
    "Communicator",
    "DistributedError",
    "MPICommunicator",
    "SingleProcess",
    "launched_size",
    "world",
]

INSTALL_HINT = 'pip install "nima[mpi]"  (installs mpi4py and the mpich runtime with mpiexec)'
OPS = ("sum", "max", "min")
DTYPES = tuple(np.dtype(t) for t in (np.float32, np.float64, np.int32, np.int64))
# Environment variables through which MPI launchers tell a process how many were started:
# MPICH's and Intel MPI's Hydra (and Slurm's PMI), Open MPI, MVAPICH.
LAUNCHER_SIZE = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")


class DistributedError(RuntimeError):
    """MPI is missing, or the ranks disagree (different models, uneven batches)."""


# --8<-- [start:check_buffer]
def check_buffer(op: str, buf: Any, writable: bool) -> np.ndarray:
    """`buf` if it is a contiguous NumPy array of a dtype MPI can carry, else a one-line error."""
    if not isinstance(buf, np.ndarray):
        raise TypeError(f"{op}: expected a NumPy array, got {type(buf).__name__}")
    if buf.dtype not in DTYPES:
        raise TypeError(f"{op}: dtype {buf.dtype} cannot be sent; use one of "
                        f"{', '.join(d.name for d in DTYPES)}")
    if not buf.flags.c_contiguous:
        raise ValueError(f"{op}: the array of shape {buf.shape} is not C-contiguous; pass "
                         f"np.ascontiguousarray(x)")
    if writable and not buf.flags.writeable:
        raise ValueError(f"{op}: the array of shape {buf.shape} is read-only; results are "
                         f"written into it")
    return buf
# --8<-- [end:check_buffer]


class Communicator:
    """The interface: `rank`, `size` and the messages of the table above.

    Subclasses implement the `_`-prefixed methods; the public ones check their arguments first
    (so a bad call fails with a message on the rank that made it, not as a hang or a crash
    inside MPI).
    """

    rank: int
    size: int

    # ----------------------------------------------------------------------------- public
    def barrier(self) -> None:
        """Wait until every rank has called `barrier`."""
        self._barrier()

    def allreduce(self, buf: np.ndarray, op: str = "sum") -> np.ndarray:
        r"""Replace `buf` on every rank by $\sum_r$ `buf`$_r$ (or the elementwise max / min
        over ranks); returns `buf`. Every rank must pass the same shape and dtype."""
        if op not in OPS:
            raise ValueError(f"allreduce: op must be one of {', '.join(map(repr, OPS))}, "
                             f"got {op!r}")
        return self._allreduce(check_buffer("allreduce", buf, writable=True), op)

    def bcast(self, buf: np.ndarray, root: int = 0) -> np.ndarray:
        """Overwrite `buf` on every rank with rank `root`'s; returns `buf`."""
        self._check_rank("bcast", "root", root)
        return self._bcast(check_buffer("bcast", buf, writable=True), root)

    def send(self, buf: np.ndarray, dest: int, tag: int = 0) -> None:
        """Send `buf` to rank `dest`; returns once `buf` may be reused."""
        self._check_rank("send", "dest", dest)
        self._send(check_buffer("send", buf, writable=False), dest, tag)

    def recv(self, buf: np.ndarray, source: int, tag: int = 0) -> np.ndarray:
        """Receive into `buf` (its shape and dtype must match what `source` sends); returns it."""
        self._check_rank("recv", "source", source)
        return self._recv(check_buffer("recv", buf, writable=True), source, tag)

    def sendrecv(self, sendbuf: np.ndarray, dest: int, recvbuf: np.ndarray, source: int,
                 tag: int = 0) -> np.ndarray:
        """Send `sendbuf` to `dest` and receive `recvbuf` from `source` at the same time;
        returns `recvbuf`. A ring of ranks each sending right and receiving from the left
        cannot deadlock this way, as it could with a blocking `send` then `recv`."""
        self._check_rank("sendrecv", "dest", dest)
        self._check_rank("sendrecv", "source", source)
        check_buffer("sendrecv", sendbuf, writable=False)
        return self._sendrecv(sendbuf, dest, check_buffer("sendrecv", recvbuf, True), source,
                              tag)

    def abort(self, message: str, code: int = 1) -> NoReturn:
        """Print `message` (prefixed with this rank) to stderr and end every process of the job
        with exit code `code`."""
        print(f"nima.distributed: rank {self.rank} of {self.size}: {message}", file=sys.stderr,
              flush=True)
        # MPI_Abort tears the job down at once, and mpiexec's proxies may die before they pass
        # the message on (seen under load: an empty stderr); a moment's wait lets it through
        time.sleep(0.25)
        self._abort(code)

    # --8<-- [start:check_same]
    def check_same(self, what: str, value: str) -> None:
        """Raise `DistributedError` on every rank unless `value` is the same string on all of
        them (compared by a 63-bit hash, with one small allreduce: max and min agree)."""
        h = int.from_bytes(hashlib.sha256(value.encode()).digest()[:8], "little") >> 1
        both = np.array([h, -h], dtype=np.int64)  # max of -h is -(min of h)
        self.allreduce(both, "max")
        if both[0] != -both[1]:
            raise DistributedError(f"{what} differs between the {self.size} ranks (rank "
                                   f"{self.rank} has {value[:200]!r}); every rank must build "
                                   f"the same thing")
    # --8<-- [end:check_same]

    def _check_rank(self, op: str, name: str, rank: int) -> None:
        if isinstance(rank, bool) or not isinstance(rank, int | np.integer) \
                or not 0 <= rank < self.size:
            raise ValueError(f"{op}: {name}={rank!r} is not a rank of this {self.size}-process "
                             f"job (0..{self.size - 1})")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(rank={self.rank}, size={self.size})"

    # ----------------------------------------------------------------------------- backends
    def _barrier(self) -> None:
        raise NotImplementedError

    def _allreduce(self, buf: np.ndarray, op: str) -> np.ndarray:
        raise NotImplementedError

    def _bcast(self, buf: np.ndarray, root: int) -> np.ndarray:
        raise NotImplementedError

    def _send(self, buf: np.ndarray, dest: int, tag: int) -> None:
        raise NotImplementedError

    def _recv(self, buf: np.ndarray, source: int, tag: int) -> np.ndarray:
        raise NotImplementedError

    def _sendrecv(self, sendbuf: np.ndarray, dest: int, recvbuf: np.ndarray, source: int,
                  tag: int) -> np.ndarray:
        raise NotImplementedError

    def _abort(self, code: int) -> NoReturn:
        raise NotImplementedError


class SingleProcess(Communicator):
    """A job of one process: rank 0 of 1. A reduction over one rank is the value itself, a
    broadcast changes nothing, and the only exchange possible is with oneself."""

    rank, size = 0, 1

    def _barrier(self) -> None:
        pass

    def _allreduce(self, buf: np.ndarray, op: str) -> np.ndarray:
        return buf

    def _bcast(self, buf: np.ndarray, root: int) -> np.ndarray:
        return buf

    def _send(self, buf: np.ndarray, dest: int, tag: int) -> None:
        raise DistributedError("send: a single process has no other rank to send to (a "
                               "blocking send to oneself never returns)")

    def _recv(self, buf: np.ndarray, source: int, tag: int) -> np.ndarray:
        raise DistributedError("recv: a single process has no other rank to receive from")

    def _sendrecv(self, sendbuf: np.ndarray, dest: int, recvbuf: np.ndarray, source: int,
                  tag: int) -> np.ndarray:
        if sendbuf.shape != recvbuf.shape or sendbuf.dtype != recvbuf.dtype:
            raise ValueError(f"sendrecv: sending {sendbuf.dtype} {sendbuf.shape} to oneself, "
                             f"receiving into {recvbuf.dtype} {recvbuf.shape}")
        recvbuf[...] = sendbuf
        return recvbuf

    def _abort(self, code: int) -> NoReturn:
        raise SystemExit(code)


class MPICommunicator(Communicator):
    """`mpi4py`'s communicator behind the interface (`comm` defaults to `MPI.COMM_WORLD`).

    Raises:
        DistributedError: `mpi4py` is not installed (the message says what to install).
    """

    def __init__(self, comm: Any = None) -> None:
        MPI = import_mpi()
        self._MPI = MPI
        self._comm = MPI.COMM_WORLD if comm is None else comm
        self.rank, self.size = self._comm.Get_rank(), self._comm.Get_size()
        self._ops = {"sum": MPI.SUM, "max": MPI.MAX, "min": MPI.MIN}

    def _barrier(self) -> None:
        self._comm.Barrier()

    def _allreduce(self, buf: np.ndarray, op: str) -> np.ndarray:
        self._comm.Allreduce(self._MPI.IN_PLACE, buf, op=self._ops[op])
        return buf

    def _bcast(self, buf: np.ndarray, root: int) -> np.ndarray:
        self._comm.Bcast(buf, root=root)
        return buf

    def _send(self, buf: np.ndarray, dest: int, tag: int) -> None:
        self._comm.Send(buf, dest=dest, tag=tag)

    def _recv(self, buf: np.ndarray, source: int, tag: int) -> np.ndarray:
        self._comm.Recv(buf, source=source, tag=tag)
        return buf

    def _sendrecv(self, sendbuf: np.ndarray, dest: int, recvbuf: np.ndarray, source: int,
                  tag: int) -> np.ndarray:
        self._comm.Sendrecv(sendbuf, dest=dest, sendtag=tag, recvbuf=recvbuf, source=source,
                            recvtag=tag)
        return recvbuf

    def _abort(self, code: int) -> NoReturn:
        self._comm.Abort(code)
        raise SystemExit(code)  # not reached: Abort ends the process


def import_mpi() -> Any:
    """`mpi4py.MPI` (importing it initialises MPI), or a `DistributedError` saying what to
    install."""
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise DistributedError(f"nima.distributed needs mpi4py for more than one process: "
                               f"{INSTALL_HINT}") from e
    return MPI


def launched_size() -> int:
    """How many processes the MPI launcher started, from its environment variables (1 when
    this process was not started by `mpiexec`)."""
    for name in LAUNCHER_SIZE:
        value = os.environ.get(name)
        if value is not None:
            try:
                return int(value)
            except ValueError:
                raise DistributedError(f"launched_size: {name}={value!r} is not a number") \
                    from None
    return 1


_world: Communicator | None = None


# --8<-- [start:world]
def world() -> Communicator:
    """The communicator of every process in this job (created on the first call, then the same).

    An `MPICommunicator` over `MPI.COMM_WORLD` when `mpiexec` started more than one process;
    otherwise `SingleProcess()`, without importing `mpi4py`.

    Raises:
        DistributedError: started as one of several processes, but `mpi4py` is not installed.
    """
    global _world
    if _world is None:
        _world = MPICommunicator() if launched_size() > 1 else SingleProcess()
    return _world
# --8<-- [end:world]
