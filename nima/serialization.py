r"""`save` and `load`: tensors in the safetensors format, written from scratch with NumPy.

A safetensors file cannot run code when it is read — it is a JSON header and raw bytes, nothing
else — which is why Nima stores weights and checkpoints in it and never unpickles anything.
Byte by byte:

    [8 bytes]  N, the header length, an unsigned 64-bit little-endian integer
    [N bytes]  UTF-8 JSON: {name: {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]},
                            ..., "__metadata__": {str: str}}   (padded with spaces)
    [rest]     the tensors' raw little-endian C-order bytes, packed back to back;
               data_offsets are relative to the start of this section

Example:
    >>> nima.save({"w": np.eye(2, dtype=np.float32)}, "w.safetensors", {"note": "hi"})
    >>> nima.load("w.safetensors")["w"]
    array([[1., 0.], [0., 1.]], dtype=float32)
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np

from nima._tensor import Tensor

# The safetensors dtype codes Nima reads and writes, and the NumPy dtype of each (little-endian).
DTYPES: dict[str, np.dtype] = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "U16": np.dtype("<u2"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}
_CODES = {dtype: code for code, dtype in DTYPES.items()}
# Read, never written: bfloat16, which NumPy has no dtype for, is widened to float32 on load —
# exactly, since a bfloat16 is the upper 16 bits of the float32 of the same value.
_WIDENED: dict[str, np.dtype] = {"BF16": np.dtype("<u2")}

# First bytes of the files Nima refuses outright: pickle (protocol 2+) and zip (`torch.save`).
_PICKLE_MAGIC, _ZIP_MAGIC = b"\x80", b"PK\x03\x04"
_REFUSE = "this looks like a pickle/PyTorch file; Nima never unpickles"


class CheckpointError(ValueError):
    """A file that is not a valid safetensors file (or not a Nima checkpoint); the message
    names the file and the problem."""


PathLike = str | os.PathLike


# --8<-- [start:atomic_write]
def atomic_write(path: PathLike, write: Callable[[IO[bytes]], None]) -> None:
    """Call `write(f)` on a temporary file beside `path`, flush it to disk, then rename it over
    `path` in one step (`os.replace`). A crash at any moment leaves either the old file or the
    new one, never half of one; on an error the temporary file is removed."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0o600; these files are for everyone to read
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)  # make the rename itself durable
# --8<-- [end:atomic_write]


def atomic_write_text(path: PathLike, text: str) -> None:
    """`atomic_write` for UTF-8 text (result tables, JSON)."""
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open a directory
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# --8<-- [start:save]
def save(tensors: Mapping[str, np.ndarray | Tensor], path: PathLike,
         metadata: Mapping[str, str] | None = None, checksum: bool = True) -> None:
    """Write `tensors` (name → array or Tensor) to `path` in safetensors format, atomically.

    Args:
        tensors: arrays of dtype float64/32/16, int64/32, uint16/8 or bool, any shape (0-d and
            empty included).
        path: the file to write; its directory must exist.
        metadata: string → string pairs stored in the header's `"__metadata__"`.
        checksum: also store the sha256 of the data section as `__metadata__["sha256"]`;
            `load` verifies it, so flipped bytes are caught.

    Raises:
        TypeError: a name or metadata value that is not a string, or an unsupported dtype.
    """
    meta = dict(metadata or {})
    for key, value in meta.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(f"save: metadata must map str to str, got {key!r}: "
                            f"{type(value).__name__}")
    arrays: dict[str, np.ndarray] = {}
    for name, value in tensors.items():
        if not isinstance(name, str) or name == "__metadata__":
            raise TypeError(f"save: tensor names must be strings other than '__metadata__', "
                            f"got {name!r}")
        array = np.asarray(value.data if isinstance(value, Tensor) else value)
        little = array.dtype.newbyteorder("<") if array.dtype.itemsize > 1 else array.dtype
        if little not in _CODES:
            raise TypeError(f"save: tensor {name!r} has dtype {array.dtype}; safetensors in Nima "
                            f"supports {', '.join(str(d) for d in _CODES)}")
        # 1-d, C-ordered, little-endian: its buffer is exactly the bytes to write
        arrays[name] = np.ascontiguousarray(array.astype(little, copy=False).reshape(-1))

    header: dict[str, Any] = {}
    offset = 0
    digest = hashlib.sha256()
    for name, flat in arrays.items():
        header[name] = {"dtype": _CODES[flat.dtype], "shape": list(np.shape(tensors[name])),
                        "data_offsets": [offset, offset + flat.nbytes]}
        offset += flat.nbytes
        digest.update(flat.view(np.uint8))
    if checksum:
        meta["sha256"] = digest.hexdigest()
    if meta:
        header["__metadata__"] = meta
    head = json.dumps(header, separators=(",", ":")).encode("utf-8")
    head += b" " * (-len(head) % 8)  # pad so the data section starts 8-byte aligned

    def write(f: IO[bytes]) -> None:
        f.write(len(head).to_bytes(8, "little"))
        f.write(head)
        for flat in arrays.values():
            f.write(flat.view(np.uint8).data)

    atomic_write(path, write)
# --8<-- [end:save]


# --8<-- [start:load]
def load(path: PathLike) -> dict[str, np.ndarray]:
    """Read every tensor of a safetensors file, as fresh writable NumPy arrays (bfloat16 ones,
    `BF16`, widened exactly to float32).

    Every field is checked before any data is used, and a stored sha256 is verified.

    Raises:
        CheckpointError: the file is truncated, its header is not valid, its offsets do not
            tile the data section exactly, its checksum fails, or it is a pickle/zip file
            (which is refused, never executed).
    """
    tensors, _ = _read(path)
    return tensors


def load_metadata(path: PathLike) -> dict[str, str]:
    """The header's `"__metadata__"` (an empty dict when there is none); the file is fully
    validated, as by `load`."""
    _, meta = _read(path)
    return meta


def _read(path: PathLike) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    raw = Path(path).read_bytes()

    def fail(problem: str) -> CheckpointError:
        return CheckpointError(f"{os.fspath(path)}: {problem}")

    looks_pickled = raw.startswith(_ZIP_MAGIC) or (
        raw.startswith(_PICKLE_MAGIC) and raw[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"))
    if len(raw) < 8:
        raise fail(f"file too short ({len(raw)} bytes): a safetensors file starts with an "
                   f"8-byte header length")
    n = int.from_bytes(raw[:8], "little")
    if n + 8 > len(raw) or raw[8:9] != b"{":
        if looks_pickled:
            raise fail(_REFUSE)
        if n + 8 > len(raw):
            raise fail(f"header length {n} goes beyond the end of the file ({len(raw)} bytes):"
                       f" truncated or not a safetensors file")
    try:
        header = json.loads(raw[8:8 + n].decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, ValueError) as e:
        raise fail(f"header is not valid UTF-8 JSON ({e})") from None
    if not isinstance(header, dict):
        raise fail(f"header is a JSON {type(header).__name__}, not an object")
    meta = header.pop("__metadata__", {})
    if not isinstance(meta, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise fail("__metadata__ must be an object of string → string")

    data = memoryview(raw)[8 + n:]
    entries = []
    for name, info in header.items():
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            raise fail(f"tensor {name!r}: expected an object with exactly dtype, shape and "
                       f"data_offsets, got {info!r}")
        code, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        stored = DTYPES.get(code, _WIDENED.get(code))
        if stored is None:
            raise fail(f"tensor {name!r}: unknown dtype {code!r} (known: "
                       f"{', '.join([*DTYPES, *_WIDENED])})")
        if not (isinstance(shape, list) and all(_is_count(d) for d in shape)):
            raise fail(f"tensor {name!r}: shape must be a list of non-negative integers, "
                       f"got {shape!r}")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(map(_is_count, offsets))
                and offsets[0] <= offsets[1]):
            raise fail(f"tensor {name!r}: data_offsets must be [begin, end] with "
                       f"0 <= begin <= end, got {offsets!r}")
        expected = int(np.prod(shape, dtype=np.int64)) * stored.itemsize
        if offsets[1] - offsets[0] != expected:
            raise fail(f"tensor {name!r}: shape {shape} of {code} needs {expected} bytes, "
                       f"data_offsets {offsets} span {offsets[1] - offsets[0]}")
        entries.append((offsets[0], offsets[1], name, code, shape))

    position = 0  # the tensors must tile the data section exactly, in offset order
    for begin, end, name, _, _ in sorted(entries):
        if begin < position:
            raise fail(f"tensor {name!r}: data_offsets [{begin}, {end}] overlap the previous "
                       f"tensor (which ends at {position})")
        if begin > position:
            raise fail(f"tensor {name!r}: data_offsets [{begin}, {end}] leave a gap after "
                       f"byte {position}")
        position = end
    if position > len(data):
        raise fail(f"truncated: the header describes {position} bytes of data, the file holds "
                   f"{len(data)}")
    if position < len(data):
        raise fail(f"{len(data) - position} bytes of trailing garbage after the last tensor")
    if "sha256" in meta and hashlib.sha256(data).hexdigest() != meta["sha256"]:
        raise fail("sha256 of the data does not match the header: the file was modified or "
                   "corrupted")

    tensors = {name: _array(data[begin:end], code, shape)
               for begin, end, name, code, shape in entries}
    return tensors, meta


def _array(data: memoryview, code: str, shape: list[int]) -> np.ndarray:
    """A fresh array of the bytes `data` holding a tensor of safetensors dtype `code`."""
    if code == "BF16":  # the bits of a bfloat16 are the top half of a float32's
        bits = np.frombuffer(data, dtype="<u2").astype(np.uint32) << 16
        return bits.view(np.float32).reshape(shape)
    return np.frombuffer(data, dtype=DTYPES[code]).reshape(shape).copy()
# --8<-- [end:load]


def _is_count(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError(f"duplicate keys {sorted({k for k in keys if keys.count(k) > 1})}")
    return dict(pairs)
