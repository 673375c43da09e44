r"""Exercises of the Processes and messages page (docs/distributed.md)."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from exercises import close, equal
from nima.distributed import SingleProcess, send_array

ROOT = Path(__file__).resolve().parents[1]
DTYPES = ("float32", "float64", "int32", "int64")  # the dtypes a message may carry, in order


def stable_digest(description: str) -> int:
    r"""A hash every process agrees on.

    Before a collective call, every rank hashes a description of what it will send and one
    allreduce compares the hashes. Return a non-negative integer below $2^{63}$ (so it fits an
    int64) computed from `description`, equal for equal strings *in every process*, and
    different for different ones (with overwhelming probability).
    """
    raise NotImplementedError


def check_stable_digest(stable_digest) -> None:
    """Computes your digest of the same strings in two fresh Python processes with different
    `PYTHONHASHSEED`s (as two MPI ranks would be) and compares; different strings must give
    different digests, all in [0, 2^63)."""
    strings = ["wte.weight(65, 128)float32", "wte.weight(65, 129)float32", ""]
    here = [int(stable_digest(s)) for s in strings]
    equal(len(set(here)), 3, "distinct digests for distinct strings")
    for h in here:
        if not 0 <= h < 2**63:
            raise AssertionError(f"the digest {h} does not fit a non-negative int64")
    code = (f"import importlib; fn = getattr(importlib.import_module("
            f"{stable_digest.__module__!r}), {stable_digest.__name__!r}); "
            f"print([int(fn(s)) for s in {strings!r}])")
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed,
               "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
        out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=120)
        if out.returncode:
            raise AssertionError(f"a fresh process could not run it: {out.stderr[-500:]}")
        equal(eval(out.stdout), here, f"the digests in a process with PYTHONHASHSEED={seed}")


def encode_header(dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    r"""The header that travels before an array.

    A receiver cannot know the shape of an activation in advance, so ten int64 go first:
    the dtype's position in `("float32", "float64", "int32", "int64")`, the number of
    dimensions, then the shape, padded with zeros to 8 entries. Return that `(10,)` int64
    array for an array of `dtype` and `shape` (1 to 8 dimensions, any of them 0).
    """
    raise NotImplementedError


def check_encode_header(encode_header) -> None:
    """Captures the header `nima.distributed.send_array` sends through a one-process
    communicator, for 1-d, empty and 8-d arrays of every dtype, and compares."""

    class Capture(SingleProcess):
        sent: list[np.ndarray] = []  # noqa: RUF012 (reset before each use)

        def _send(self, buf, dest, tag):
            Capture.sent.append(buf.copy())

    for dtype in DTYPES:
        for shape in [(5,), (3, 1), (2, 0, 4), (1, 2, 1, 2, 1, 2, 1, 2)]:
            Capture.sent = []
            send_array(Capture(), np.zeros(shape, dtype=dtype), dest=0)
            got = np.asarray(encode_header(np.dtype(dtype), shape))
            equal(got.dtype, np.dtype(np.int64), "the header's dtype")
            close(got, Capture.sent[0], f"the header of a {dtype} array of shape {shape}")
