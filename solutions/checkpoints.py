"""Solutions of exercises/checkpoints.py."""

import json
import os
import struct
import tempfile
from pathlib import Path

import numpy as np

CODES = {np.dtype(np.float32): "F32", np.dtype(np.float64): "F64",
         np.dtype(np.int64): "I64", np.dtype(np.uint8): "U8"}


def safetensors_bytes(tensors):
    header, blobs, offset = {}, [], 0
    for name, array in tensors.items():
        data = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": CODES[array.dtype], "shape": list(array.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header).encode("utf-8")
    text += b" " * (-len(text) % 8)  # padded to a multiple of 8
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)


def _safetensors_file_offsets(tensors):
    """Counts the offsets from the start of the file instead of the data."""
    raw = safetensors_bytes(tensors)
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    for entry in header.values():
        entry["data_offsets"] = [o + 8 + n for o in entry["data_offsets"]]
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + raw[8 + n:]


def _safetensors_fortran_order(tensors):
    """Writes each array's memory as it lies, column-major for a Fortran-ordered array."""
    header, blobs, offset = {}, [], 0
    for name, array in tensors.items():
        data = array.tobytes(order="A")
        header[name] = {"dtype": CODES[array.dtype], "shape": list(array.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)


def write_atomically(path, chunks):
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for chunk in chunks:
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # atomic within one file system: old or new, never a mix
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_in_place(path, chunks):
    """Writes straight into the target: a crash leaves half a file."""
    with open(path, "w", encoding="utf-8") as f:
        for chunk in chunks:
            f.write(chunk)


def _write_leaving_temporary(path, chunks):
    """Renames only on success but forgets to delete the temporary on failure."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        for chunk in chunks:
            f.write(chunk)
    os.replace(tmp, path)


WRONG = {
    "safetensors_bytes": [_safetensors_file_offsets, _safetensors_fortran_order],
    "write_atomically": [_write_in_place, _write_leaving_temporary],
}
