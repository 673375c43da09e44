r"""`save` and `load`: tensors in the safetensors format, written from scratch with NumPy.

A safetensors file cannot run code when it is read — it is a JSON header and raw bytes, nothing
else — which is why Nima stores weights and checkpoints in it and never unpickles anything.
Byte by byte:

    [8 bytes]  N, the header length, an unsigned 64-bit little-endian integer
    [N bytes]  UTF-8 JSON: {name: {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]},
                            ..., "__metadata__": {str: str}}   (padded with spaces)
    [rest]     the tensors' raw little-endian C-order bytes, packed back to back;
               data_offsets are relative to the start of this section

`save` also stores a digest in `__metadata__["digest"]`: the sha256 of the header's content and
of every tensor's bytes (see `content_digest`), which `load` verifies, so a flipped bit anywhere
(a step number in the metadata, a dtype, a weight) is caught. Files stay plain safetensors:
the `safetensors` library reads them, and Nima reads its files (which carry no digest).

Example:
    >>> nima.save({"w": np.eye(2, dtype=np.float32)}, "w.safetensors", {"note": "hi"})
    >>> nima.load("w.safetensors")["w"]
    array([[1., 0.], [0., 1.]], dtype=float32)
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import stat
import tempfile
from collections import Counter
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

DIGEST = "digest"  # the __metadata__ key of the content digest, "sha256:<64 hex digits>"
_LEGACY_SHA256 = "sha256"  # older files: the sha256 of the data section alone
# Bounds checked before anything is allocated: the safetensors library's own header limit, and
# NumPy's limits on dimensions (64) and on an array's byte size (a signed 64-bit integer).
MAX_HEADER_BYTES = 100_000_000
_MAX_DIMS = 64
_MAX_ARRAY_BYTES = 2**63 - 1


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
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=_TMP_SUFFIX)
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


_TMP_SUFFIX = ".tmp"
# `atomic_write`'s temporaries: "." + the target's name + "." + mkstemp's 8 random characters.
_TMP_NAME = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")


# --8<-- [start:remove_temporaries]
def remove_temporaries(directory: PathLike) -> list[Path]:
    """Delete the temporary files `atomic_write` left in `directory` when a process was killed
    between creating one and renaming it (a checkpoint's can be as large as the checkpoint).

    Only names of the form `.<target>.<8 random characters>.tmp` are touched. Call it when no
    other process may be writing into `directory` (at the start of a run that owns it): a
    temporary is indistinguishable from one still being written. Returns the paths removed.
    """
    removed = []
    for path in sorted(Path(directory).iterdir()):
        if is_temporary(path.name) and path.is_file() and not path.is_symlink():
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed
# --8<-- [end:remove_temporaries]


def is_temporary(name: str) -> bool:
    """Whether `name` has the form of an `atomic_write` temporary,
    `.<target>.<8 random characters>.tmp`."""
    return _TMP_NAME.match(name) is not None


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
        metadata: string → string pairs stored in the header's `"__metadata__"`. The key
            `"digest"` is Nima's own: a value passed for it (say, metadata read from another
            file) is replaced by this file's digest, or dropped when `checksum` is False.
        checksum: also store the content digest as `__metadata__["digest"]` (see
            `content_digest`); `load` verifies it, so a flipped bit anywhere is caught.

    Raises:
        TypeError: a name or metadata value that is not a string, or an unsupported dtype.
    """
    meta = dict(metadata or {})
    for key, value in meta.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(f"save: metadata must map str to str, got {key!r}: "
                            f"{type(value).__name__}")
    meta.pop(DIGEST, None)  # another file's digest would not match this one
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
    for name, flat in arrays.items():
        header[name] = {"dtype": _CODES[flat.dtype], "shape": list(np.shape(tensors[name])),
                        "data_offsets": [offset, offset + flat.nbytes]}
        offset += flat.nbytes
    if checksum:
        meta[DIGEST] = content_digest(header, meta, lambda name: arrays[name].view(np.uint8))
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
    def fail(problem: str) -> CheckpointError:
        return CheckpointError(f"{os.fspath(path)}: {problem}")

    with _open_regular(path, fail) as f:
        size = os.fstat(f.fileno()).st_size
        start = f.read(8)
        if len(start) < 8:
            raise fail(f"file too short ({len(start)} bytes): a safetensors file starts with an "
                       f"8-byte header length")
        n = int.from_bytes(start, "little")
        looks_pickled = start.startswith(_ZIP_MAGIC) or (
            start.startswith(_PICKLE_MAGIC) and start[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"))
        if n + 8 > size or n > MAX_HEADER_BYTES:
            if looks_pickled:
                raise fail(_REFUSE)
            if n + 8 > size:
                raise fail(f"header length {n} goes beyond the end of the file ({size} bytes):"
                           f" truncated or not a safetensors file")
            raise fail(f"header length {n} exceeds the limit of {MAX_HEADER_BYTES} bytes")
        head = f.read(n)
        if head[:1] != b"{" and looks_pickled:
            raise fail(_REFUSE)
        header = _parse_header(head, fail)
        data = memoryview(f.read(size - 8 - n))
    meta = header.pop("__metadata__", {})
    if not isinstance(meta, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise fail("__metadata__ must be an object of string → string")

    entries = [_checked_entry(name, info, fail) for name, info in header.items()]
    position = 0  # the tensors must tile the data section exactly, in offset order
    for begin, end, name, _, _ in sorted(entries):
        if begin < position:
            raise fail(f"tensor {_short(name)}: data_offsets [{begin}, {end}] overlap the previous "
                       f"tensor (which ends at {position})")
        if begin > position:
            raise fail(f"tensor {_short(name)}: data_offsets [{begin}, {end}] leave a gap after "
                       f"byte {position}")
        position = end
    if position > len(data):
        raise fail(f"truncated: the header describes {position} bytes of data, the file holds "
                   f"{len(data)}")
    if position < len(data):
        raise fail(f"{len(data) - position} bytes of trailing garbage after the last tensor")
    spans = {name: data[begin:end] for begin, end, name, _, _ in entries}
    if DIGEST in meta and content_digest(header, meta, spans.__getitem__) != meta[DIGEST]:
        raise fail(f"the {DIGEST} of the header and data does not match the one stored: the "
                   f"file was modified or corrupted")
    if DIGEST not in meta and _LEGACY_SHA256 in meta and \
            hashlib.sha256(data).hexdigest() != meta[_LEGACY_SHA256]:
        raise fail("sha256 of the data does not match the header: the file was modified or "
                   "corrupted")

    tensors = {name: _array(spans[name], code, shape) for _, _, name, code, shape in entries}
    return tensors, meta


def _array(data: memoryview, code: str, shape: list[int]) -> np.ndarray:
    """A fresh array of the bytes `data` holding a tensor of safetensors dtype `code`."""
    if code == "BF16":  # the bits of a bfloat16 are the top half of a float32's
        bits = np.frombuffer(data, dtype="<u2").astype(np.uint32) << 16
        return bits.view(np.float32).reshape(shape)
    return np.frombuffer(data, dtype=DTYPES[code]).reshape(shape).copy()
# --8<-- [end:load]


# --8<-- [start:content_digest]
def content_digest(header: Mapping[str, Any], meta: Mapping[str, str],
                   tensor_bytes: Callable[[str], Any]) -> str:
    r"""`"sha256:<hex>"` of a file's content: its header, canonically, then its tensors' bytes.

    The canonical header is the JSON of `{name: {"dtype", "shape"}}` for every tensor plus
    `"__metadata__"` without `"digest"`, with sorted keys and no spaces; the tensors' bytes
    follow in the order of their sorted names. Offsets, padding and key order are left out —
    they are layout, not content — so the digest survives a rewrite by another safetensors
    writer that keeps the metadata, and it is the same whether the digest field is there or
    not. Every header field that changes what `load` returns is covered: a step number in the
    metadata, a dtype, a shape, a name.
    """
    canonical = {name: {"dtype": info["dtype"], "shape": info["shape"]}
                 for name, info in header.items() if name != "__metadata__"}
    canonical["__metadata__"] = {k: v for k, v in meta.items() if k != DIGEST}
    digest = hashlib.sha256(json.dumps(canonical, sort_keys=True, separators=(",", ":"))
                            .encode("utf-8"))
    for name in sorted(n for n in canonical if n != "__metadata__"):
        digest.update(tensor_bytes(name))
    return f"sha256:{digest.hexdigest()}"
# --8<-- [end:content_digest]


def _open_regular(path: PathLike, fail: Callable[[str], CheckpointError]) -> IO[bytes]:
    """`path` opened for reading if it is a regular file. Opened without blocking, so a FIFO
    does not wait for a writer; devices (`/dev/zero`), FIFOs and directories are refused
    before a byte is read."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        kind = "a directory" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else \
            "a device or socket"
        raise fail(f"not a regular file ({kind}); Nima reads tensors only from regular files")
    return os.fdopen(fd, "rb")


def _parse_header(head: bytes, fail: Callable[[str], CheckpointError]) -> dict[str, Any]:
    """The header's JSON object; invalid, nested too deep or not an object: a CheckpointError."""
    try:
        header = json.loads(head.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, ValueError) as e:
        raise fail(f"header is not valid UTF-8 JSON ({e})") from None
    except RecursionError:
        raise fail("header nests JSON too deeply to be a safetensors header") from None
    if not isinstance(header, dict):
        raise fail(f"header is a JSON {type(header).__name__}, not an object")
    return header


def _checked_entry(name: str, info: Any, fail: Callable[[str], CheckpointError]
                   ) -> tuple[int, int, str, str, list[int]]:
    """(begin, end, name, dtype code, shape) of one tensor, every field checked."""
    if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
        raise fail(f"tensor {_short(name)}: expected an object with exactly dtype, shape and "
                   f"data_offsets, got {_short(info)}")
    code, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
    stored = DTYPES.get(code, _WIDENED.get(code))
    if stored is None:
        raise fail(f"tensor {_short(name)}: unknown dtype {_short(code)} "
                   f"(known: {', '.join([*DTYPES, *_WIDENED])})")
    if not (isinstance(shape, list) and all(_is_count(d) for d in shape)):
        raise fail(f"tensor {_short(name)}: shape must be a list of non-negative integers, "
                   f"got {_short(shape)}")
    itemsize = stored.itemsize
    if len(shape) > _MAX_DIMS or math.prod(max(d, 1) for d in shape) * itemsize > _MAX_ARRAY_BYTES:
        raise fail(f"tensor {_short(name)}: shape {_short(shape)} is beyond what an array can hold "
                   f"(at most {_MAX_DIMS} dims and 2^63 bytes)")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(map(_is_count, offsets))
            and offsets[0] <= offsets[1]):
        raise fail(f"tensor {_short(name)}: data_offsets must be [begin, end] with "
                   f"0 <= begin <= end, got {_short(offsets)}")
    expected = math.prod(shape) * itemsize
    if offsets[1] - offsets[0] != expected:
        raise fail(f"tensor {_short(name)}: shape {shape} of {code} needs {expected} bytes, "
                   f"data_offsets {offsets} span {offsets[1] - offsets[0]}")
    return offsets[0], offsets[1], name, code, shape


def _short(value: Any, limit: int = 80) -> str:
    """`repr(value)`, cut to `limit` characters: a hostile header can be 100 MB."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


def _is_count(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        counts = Counter(k for k, _ in pairs)
        raise ValueError(f"duplicate keys {_short(sorted(k for k, c in counts.items() if c > 1))}")
    return result
