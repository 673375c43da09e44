r"""Exercises of the Checkpoints page (docs/checkpoints.md)."""

import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np

import nima
from exercises import close, equal


def safetensors_bytes(tensors: dict[str, np.ndarray]) -> bytes:
    r"""Write the safetensors format by hand.

    Return the bytes of a file holding `tensors` (float32, float64, int64 or uint8 arrays, any
    shape): 8 bytes of header length $N$ (unsigned 64-bit little-endian), the header — UTF-8
    JSON mapping each name to `{"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}`,
    offsets counted from the start of the data, padded with spaces to a multiple of 8 — then
    every tensor's raw little-endian, C-ordered bytes, back to back. (Codes: `F32`, `F64`,
    `I64`, `U8`.)
    """
    raise NotImplementedError


def check_safetensors_bytes(safetensors_bytes) -> None:
    """Writes your bytes to a file and loads it with `nima.load`, which validates every field,
    then compares names, dtypes, shapes and values — including a 0-d and an empty array."""
    rng = np.random.default_rng(0)
    tensors = {"w": rng.standard_normal((3, 2)).astype(np.float32), "step": np.array(7),
               "mask": np.array([1, 0, 1], dtype=np.uint8), "scale": np.array(0.5),
               "empty": np.zeros((0, 4), dtype=np.float32),
               "t": np.asfortranarray(rng.standard_normal((2, 3)))}
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "mine.safetensors"
        path.write_bytes(bytes(safetensors_bytes(dict(tensors))))
        loaded = nima.load(path)
    equal(sorted(loaded), sorted(tensors), "the names")
    for name, array in tensors.items():
        equal(loaded[name].dtype, array.dtype, f"the dtype of {name}")
        close(loaded[name], array, f"tensor {name}")


def write_atomically(path: Path, chunks: Iterable[str]) -> None:
    r"""Replace a file so that a crash cannot leave half of it.

    Write the text `chunks` one after another to a temporary file in `path`'s folder, flush it
    and `os.fsync` it, then `os.replace` it over `path`. If anything raises on the way —
    including the iteration over `chunks` — delete the temporary file and let the error
    propagate: `path` must keep its old content and no temporary may remain.
    """
    raise NotImplementedError


def check_write_atomically(write_atomically) -> None:
    """Writes a file, then replaces it from chunks that raise halfway: the old content must
    survive whole and the folder must hold nothing else; then replaces it for real."""
    def exploding():
        yield "new first half, "
        raise RuntimeError("the process dies here")

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "ckpt.txt"
        write_atomically(path, ["old ", "content"])
        equal(path.read_text(), "old content", "the file after the first write")
        try:
            write_atomically(path, exploding())
        except RuntimeError:
            pass
        else:
            raise AssertionError("the error raised while writing was swallowed")
        equal(path.read_text(), "old content", "the file after a write that failed")
        equal(sorted(p.name for p in Path(folder).iterdir()), ["ckpt.txt"],
              "the folder's files after a write that failed")
        write_atomically(path, ["brand ", "new"])
        equal(path.read_text(), "brand new", "the file after a write that succeeded")
