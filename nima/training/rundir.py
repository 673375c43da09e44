r"""The run directory: checked before a run writes anything into it, locked while a process
uses it, and every failed write into it reported with the path and what to do.

**One process at a time.** `RunLock` holds an exclusive `flock` on `run_dir/run.lock` while a
`Trainer` uses the directory. The lock belongs to the open file, so the operating system drops
it when the process ends, however it ends (`kill -9` and the out-of-memory killer too): a killed
run never leaves a stale lock behind. A second process — a second `nima train`, an
`--overwrite`, a resume of a run that is still training — is refused, with the holder's pid.

**What is not a run is not touched.** `survey` sorts a directory's entries into the files a run
writes (`RUN_FILES`, checkpoints, `atomic_write`'s temporaries) and everything else. A new run
starts only in a directory that does not exist or is empty; a directory that holds a run is
resumed, or started over with `overwrite` (which deletes the run's files, and nothing else); a
directory that holds other things is refused, with what it holds.

**A failed write says which file and what to do.** `write_error` turns an `OSError` — a full
disk, a read-only file system, a permission — into a one-line `TrainingError` naming the file;
since every file of a run is written whole or not at all, the run keeps everything up to its
last checkpoint.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from nima.data.dataset import TOKENIZER_FILE
from nima.serialization import is_temporary
from nima.training.checkpoint import BEST, list_checkpoints
from nima.training.config import ConfigError
from nima.training.errors import TrainingError
from nima.training.metrics import CSV, JSONL, PLOT

try:
    import fcntl
except ImportError:  # Windows: no flock; runs are not locked there
    fcntl = None  # type: ignore[assignment]

__all__ = ["CONFIG_FILE", "LOCK_FILE", "LOG_FILE", "RUN_FILES", "Contents", "RunLock",
           "check_paths", "check_run_dir", "claim", "survey", "write_error", "writing"]

CONFIG_FILE = "config.yaml"
LOG_FILE = "log.txt"
LOCK_FILE = "run.lock"
# every file a run writes besides its checkpoints
RUN_FILES = (CONFIG_FILE, TOKENIZER_FILE, JSONL, CSV, PLOT, LOG_FILE, BEST, LOCK_FILE)


# --8<-- [start:lock]
class RunLock:
    r"""An exclusive lock on a run directory: `flock` on `run_dir/run.lock`, which records the
    holder as `pid@host`. Held from `acquire` until `release` (or until the object is garbage
    collected, or the process ends — the operating system then releases it)."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self._close: weakref.finalize | None = None

    @property
    def held(self) -> bool:
        return self._close is not None and self._close.alive

    def acquire(self) -> None:
        """Take the lock, or raise `TrainingError` naming the process that holds it."""
        if self.held or fcntl is None:
            return
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as e:
            raise write_error(self.path, e, self.path.parent) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
            os.close(fd)
            raise TrainingError(_in_use(self.path.parent, holder)) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}@{socket.gethostname()}\n".encode(), 0)
        self._close = weakref.finalize(self, os.close, fd)

    def check_free(self) -> None:
        """Raise `TrainingError` naming the holder if another process holds the lock; creates
        nothing (a directory without `run.lock` is free)."""
        if self.held or fcntl is None:
            return
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
            raise TrainingError(_in_use(self.path.parent, holder)) from None
        finally:
            os.close(fd)

    def release(self) -> None:
        """Let the lock go (the file stays: deleting it would race with a new holder)."""
        if self._close is not None:
            self._close()
            self._close = None
# --8<-- [end:lock]


def _in_use(run_dir: Path, holder: str) -> str:
    pid, _, host = holder.partition("@")
    if pid == str(os.getpid()) and host == socket.gethostname():
        return (f"{run_dir} is in use by this process: another Trainer on it is still open "
                f"(let its fit() end, or call its close())")
    where = f" on {host}" if host and host != socket.gethostname() else ""
    who = f"process {pid}{where}" if pid else "another process"
    return (f"{run_dir} is in use by {who}, which holds {LOCK_FILE}; wait for it to end or "
            f"stop it, or choose another training.run_dir")


@dataclass
class Contents:
    """What a directory holds: its checkpoints, the other files a run writes, and the rest."""

    checkpoints: list[Path] = field(default_factory=list)
    run_files: list[str] = field(default_factory=list)
    others: list[str] = field(default_factory=list)

    @property
    def is_run(self) -> bool:
        """A run was started here: it holds a checkpoint, a config or the best checkpoint."""
        return bool(self.checkpoints) or bool({CONFIG_FILE, BEST} & set(self.run_files))

    @property
    def empty(self) -> bool:
        """Nothing here but, perhaps, the lock and temporaries of a run killed at its start."""
        return not self.checkpoints and not self.others and set(self.run_files) <= {LOCK_FILE}


def survey(run_dir: Path) -> Contents:
    """Sort the entries of `run_dir` (which must exist) into checkpoints, run files and the
    rest; a subdirectory is never a run file."""
    contents = Contents(checkpoints=list_checkpoints(run_dir))
    names = {p.name for p in contents.checkpoints}
    for entry in sorted(run_dir.iterdir()):
        if entry.name in names:
            continue
        if entry.is_file() and (entry.name in RUN_FILES or is_temporary(entry.name)):
            if not is_temporary(entry.name):
                contents.run_files.append(entry.name)
        else:
            contents.others.append(entry.name + ("/" if entry.is_dir() else ""))
    return contents


def _listing(names: list[str], limit: int = 4) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def check_paths(run_dir: Path, data_dir: Path) -> None:
    """The run directory is not a file and not the data directory."""
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"training.run_dir: {run_dir} is a file, not a directory; choose "
                          f"another path")
    if run_dir.resolve() == data_dir.resolve():
        raise ConfigError(f"training.run_dir: {run_dir} is also data.out_dir; a run and its "
                          f"prepared data need folders of their own")


def check_run_dir(run_dir: Path, data_dir: Path, *, resume: bool, overwrite: bool) -> None:
    """Whether a run may use `run_dir`, judged from what it holds now; reads only.

    Raises:
        ConfigError: `run_dir` is a file, or the data directory.
        TrainingError: another process uses `run_dir`; it holds things that are not a run,
            or it holds a run and neither `resume` nor `overwrite` was given.
    """
    check_paths(run_dir, data_dir)
    if run_dir.is_dir():
        RunLock(run_dir).check_free()  # "in use" says more than what a live run holds
        _check_contents(run_dir, resume=resume, overwrite=overwrite)


def _check_contents(run_dir: Path, *, resume: bool, overwrite: bool) -> None:
    contents = survey(run_dir)
    if contents.empty:
        return
    if not contents.is_run:
        raise TrainingError(f"{run_dir} is not empty and holds no Nima run "
                            f"({_listing(sorted(contents.others + contents.run_files))}); "
                            f"choose another training.run_dir, or empty this one")
    if resume or overwrite:
        return
    if contents.checkpoints:
        raise TrainingError(f"{run_dir} already holds {len(contents.checkpoints)} checkpoint(s);"
                            f" resume it (nima train {run_dir}) or start over with --overwrite")
    raise TrainingError(f"{run_dir} holds a run that saved no checkpoint "
                        f"({_listing(contents.run_files)}); resume it (nima train {run_dir}, "
                        f"from step 0) or start over with --overwrite")


def claim(run_dir: Path, data_dir: Path, *, resume: bool, overwrite: bool) -> RunLock:
    """Create `run_dir`, lock it, and check it again (`check_run_dir`) now that no other
    process can change it; return the lock, held. Nothing is deleted or rewritten here.

    Raises:
        ConfigError, TrainingError: as `check_run_dir`; and `TrainingError` when another
            process uses the directory or it cannot be created.
    """
    check_paths(run_dir, data_dir)
    with writing(run_dir, run_dir):
        run_dir.mkdir(parents=True, exist_ok=True)
    lock = RunLock(run_dir)
    lock.acquire()
    try:
        _check_contents(run_dir, resume=resume, overwrite=overwrite)
    except BaseException:
        lock.release()
        raise
    return lock


def write_error(path: Path, error: OSError, run_dir: Path) -> TrainingError:
    """A one-line `TrainingError`: the file that could not be written, why, and what to do."""
    reason = error.strerror or str(error)
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        advice = (f"free some space, then resume with nima train {run_dir} (the run keeps "
                  f"everything up to its last checkpoint)")
    elif error.errno == errno.EROFS:
        advice = "choose a training.run_dir on a file system that can be written"
    elif error.errno in (errno.EACCES, errno.EPERM):
        advice = "choose a training.run_dir you may write to, or change its permissions"
    else:
        advice = (f"once that is fixed, resume with nima train {run_dir} (the run keeps "
                  f"everything up to its last checkpoint)")
    return TrainingError(f"cannot write {path}: {reason}; {advice}")


@contextlib.contextmanager
def writing(path: Path, run_dir: Path) -> Iterator[None]:
    """Turn an `OSError` inside the block into `write_error(path, ...)` (its own file name,
    when it has one, is named instead)."""
    try:
        yield
    except OSError as e:
        raise write_error(Path(e.filename) if e.filename else path, e, run_dir) from e
