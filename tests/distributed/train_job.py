"""`nima train` as a rank of an MPI job, with a fault or a watch on rank 1, for
`test_distributed_training.py`:

    mpiexec -n 2 python train_job.py [--fault raise|kill|sigint --at STEP] [--watch DIR]
                                     -- train CONFIG ...

`--fault` makes rank 1 alone raise, die by SIGKILL (no cleanup at all) or receive Ctrl-C when
it starts the step after `STEP`. `--watch DIR` makes rank 1 fail as soon as it creates,
writes, renames or deletes anything under `DIR`. Then the command line after `--` runs
through `nima.cli.main`, as `python -m nima` would run it.
"""

from __future__ import annotations

import argparse
import builtins
import io
import os
import signal
from pathlib import Path
from typing import Any

from nima import cli
from nima.distributed import world
from nima.training import Trainer

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


def inject(fault: str, at: int) -> None:
    """Rank 1 does `fault` when it starts the step after `at`."""
    original = Trainer.train_step

    def train_step(self: Trainer) -> float:
        if self.step == at:
            if fault == "raise":
                raise RuntimeError(f"rank 1 fails on purpose at step {at + 1}")
            os.kill(os.getpid(), signal.SIGKILL if fault == "kill" else signal.SIGINT)
        return original(self)

    Trainer.train_step = train_step


def watch(root: Path) -> None:
    """Fail on any call that changes the file system under `root` (checked once it succeeded:
    `mkdir` of a folder that exists changes nothing)."""
    root = root.resolve()

    def inside(path: Any) -> bool:
        try:
            return Path(os.fsdecode(path)).resolve().is_relative_to(root)
        except TypeError:  # a file descriptor
            return False

    def wrap(owner: Any, name: str, writes: Any) -> None:
        original = getattr(owner, name)

        def checked(*args: Any, **kwargs: Any) -> Any:
            result = original(*args, **kwargs)
            touched = [a for a in args[:2] if isinstance(a, str | bytes | os.PathLike)]
            if writes(*args, **kwargs) and any(inside(p) for p in touched):
                raise AssertionError(f"rank 1 changed {touched} with {name}")
            return result

        setattr(owner, name, checked)

    def open_writes(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> bool:
        return any(c in mode for c in "wax+")

    def os_open_writes(path: Any, flags: int, *args: Any, **kwargs: Any) -> bool:
        return bool(flags & WRITE_FLAGS)

    for owner, name, writes in [(builtins, "open", open_writes), (io, "open", open_writes),
                                (os, "open", os_open_writes)] + [
            (os, name, lambda *a, **k: True)
            for name in ("replace", "rename", "link", "symlink", "unlink", "rmdir", "mkdir")]:
        wrap(owner, name, writes)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fault", choices=["raise", "kill", "sigint"])
    parser.add_argument("--at", type=int, default=0)
    parser.add_argument("--watch", type=Path)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    if world().rank == 1:
        if args.fault:
            inject(args.fault, args.at)
        if args.watch:
            watch(args.watch)
    cli.main(args.command[1:] if args.command[:1] == ["--"] else args.command)


if __name__ == "__main__":
    main()
