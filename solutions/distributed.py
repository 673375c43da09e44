"""Solutions of exercises/distributed.py."""

import hashlib
import zlib

import numpy as np

DTYPES = ("float32", "float64", "int32", "int64")


def stable_digest(description):
    digest = hashlib.sha256(description.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little") >> 1  # 63 bits: a non-negative int64


def _python_hash(description):
    """Python's hash of a str is salted per process (PYTHONHASHSEED): ranks would disagree."""
    return hash(description) % 2**63


def _crc_signed(description):
    """A stable checksum, shifted into negative numbers: the max/min comparison needs
    non-negative values below 2^63, as the task says."""
    return zlib.crc32(description.encode()) - 2**31


def encode_header(dtype, shape):
    header = np.zeros(10, dtype=np.int64)
    header[:2] = DTYPES.index(np.dtype(dtype).name), len(shape)
    header[2:2 + len(shape)] = shape
    return header


def _encode_header_without_ndim(dtype, shape):
    """Leaves out the number of dimensions: (2, 0, 4) and (2,) then look alike."""
    header = np.zeros(10, dtype=np.int64)
    header[0] = DTYPES.index(np.dtype(dtype).name)
    header[1:1 + len(shape)] = shape
    return header


WRONG = {
    "stable_digest": [_python_hash, _crc_signed],
    "encode_header": [_encode_header_without_ndim],
}
