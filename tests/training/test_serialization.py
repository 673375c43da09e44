"""`nima.save` / `nima.load`: the safetensors format — round trips, and every malformed file
refused with a `CheckpointError` that names the problem."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest

import nima
from nima.serialization import DTYPES, CheckpointError, load, load_metadata, save

SHAPES = [(), (0,), (3,), (2, 3), (2, 0, 4), (1, 2, 3, 2)]


def raw_file(path: Path, header: object, data: bytes = b"", header_bytes: bytes | None = None,
             length: int | None = None) -> Path:
    """A safetensors file built by hand: `length` overrides the 8-byte header length."""
    head = header_bytes if header_bytes is not None else json.dumps(header).encode()
    n = len(head) if length is None else length
    path.write_bytes(struct.pack("<Q", n) + head + data)
    return path


# ----------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("code", list(DTYPES))
@pytest.mark.parametrize("shape", SHAPES)
def test_round_trip_every_dtype_and_shape(tmp_path: Path, code: str, shape: tuple) -> None:
    dtype = DTYPES[code]
    rng = np.random.default_rng(0)
    if dtype.kind == "f":
        x = rng.standard_normal(shape).astype(dtype)
    else:
        x = rng.integers(0, 2 if dtype.kind == "b" else 200, shape).astype(dtype)
    save({"x": x}, tmp_path / "t.safetensors")
    y = load(tmp_path / "t.safetensors")["x"]
    assert y.dtype == dtype and y.shape == x.shape
    assert y.tobytes() == x.tobytes()  # bit-exact
    assert y.flags.writeable and y.flags.c_contiguous


def test_bit_exact_special_floats_and_many_tensors(tmp_path: Path) -> None:
    special = np.array([np.nan, -0.0, np.inf, -np.inf, 1e-45, np.finfo(np.float32).max],
                       dtype=np.float32)
    tensors = {"special": special, "big_endian": np.arange(5, dtype=">i4"),
               "fortran": np.asfortranarray(np.arange(6.0).reshape(2, 3)),
               "strided": np.arange(10, dtype=np.int64)[::3],
               "tensor": nima.randn(2, 2)}
    nima.save(tensors, tmp_path / "t.safetensors")
    out = nima.load(tmp_path / "t.safetensors")
    assert out["special"].tobytes() == special.tobytes()
    np.testing.assert_array_equal(out["big_endian"], np.arange(5))
    assert out["big_endian"].dtype == np.dtype("<i4")
    np.testing.assert_array_equal(out["fortran"], np.arange(6.0).reshape(2, 3))
    np.testing.assert_array_equal(out["strided"], [0, 3, 6, 9])
    np.testing.assert_array_equal(out["tensor"], tensors["tensor"].data)



def test_bfloat16_is_read_widened_to_float32(tmp_path: Path) -> None:
    # bfloat16 keeps a float32's top 16 bits: values whose low 16 bits are zero are exact
    values = np.array([[1.0, -2.5], [np.inf, 3.140625]], dtype=np.float32)
    bf16 = (values.view(np.uint32) >> 16).astype("<u2")
    header = {"w": {"dtype": "BF16", "shape": [2, 2], "data_offsets": [0, 8]}}
    out = load(raw_file(tmp_path / "bf16.safetensors", header, bf16.tobytes()))["w"]
    assert out.dtype == np.float32 and out.tobytes() == values.tobytes()
    torch = pytest.importorskip("torch")
    x = torch.randn(3, 5).to(torch.bfloat16)
    raw = x.view(torch.int16).numpy().astype("<i2").tobytes()
    header = {"x": {"dtype": "BF16", "shape": [3, 5], "data_offsets": [0, 30]}}
    out = load(raw_file(tmp_path / "torch.safetensors", header, raw))["x"]
    np.testing.assert_array_equal(out, x.float().numpy())

def test_layout_is_the_safetensors_format(tmp_path: Path) -> None:
    path = tmp_path / "t.safetensors"
    save({"a": np.array([1, 2], dtype=np.int32), "b": np.array(0.5)}, path, {"note": "hi"},
         checksum=False)
    raw = path.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    assert n % 8 == 0  # padded with spaces so the data starts aligned
    header = json.loads(raw[8:8 + n])
    assert header == {"a": {"dtype": "I32", "shape": [2], "data_offsets": [0, 8]},
                      "b": {"dtype": "F64", "shape": [], "data_offsets": [8, 16]},
                      "__metadata__": {"note": "hi"}}
    assert raw[8 + n:] == np.array([1, 2], "<i4").tobytes() + np.array(0.5, "<f8").tobytes()


def test_metadata(tmp_path: Path) -> None:
    path = tmp_path / "t.safetensors"
    save({"x": np.zeros(3)}, path, {"author": "nima", "ünïcode": "✓"})
    meta = load_metadata(path)
    assert meta["author"] == "nima" and meta["ünïcode"] == "✓"
    # the digest by hand: the canonical header (sorted keys, no spaces, no digest), then the data
    canonical = (b'{"__metadata__":{"author":"nima","\\u00fcn\\u00efcode":"\\u2713"},'
                 b'"x":{"dtype":"F64","shape":[3]}}')
    assert meta["digest"] == "sha256:" + hashlib.sha256(canonical + bytes(24)).hexdigest()
    save({}, path)
    assert load(path) == {}


def test_save_rejects_bad_input(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="metadata must map str to str"):
        save({"x": np.zeros(1)}, tmp_path / "t", {"n": 1})  # type: ignore[dict-item]
    with pytest.raises(TypeError, match="complex128"):
        save({"x": np.zeros(1, complex)}, tmp_path / "t")
    with pytest.raises(TypeError, match="__metadata__"):
        save({"__metadata__": np.zeros(1)}, tmp_path / "t")


# ----------------------------------------------------------------------------- malformed files
GOOD = {"x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}
DATA = np.array([1, 2], np.float32).tobytes()


@pytest.mark.parametrize(("build", "message"), [
    (lambda p: p.write_bytes(b""), "too short"),
    (lambda p: p.write_bytes(b"\x05\x00\x00"), "too short"),
    (lambda p: raw_file(p, GOOD, DATA, length=10_000), "beyond the end of the file"),
    (lambda p: raw_file(p, None, DATA, header_bytes=b"{not json}"), "not valid UTF-8 JSON"),
    (lambda p: raw_file(p, None, header_bytes=b"\xff\xfe{}"), "not valid UTF-8 JSON"),
    (lambda p: raw_file(p, [1, 2]), "not an object"),
    (lambda p: raw_file(p, None, header_bytes=b'{"a": 1, "a": 2}'), "duplicate keys"),
    (lambda p: raw_file(p, {"__metadata__": {"k": 3}}), "string → string"),
    (lambda p: raw_file(p, {"x": {"dtype": "C64", "shape": [2], "data_offsets": [0, 8]}}, DATA),
     "unknown dtype 'C64'"),
    (lambda p: raw_file(p, {"x": {"dtype": "F32", "shape": [2]}}, DATA), "exactly dtype"),
    (lambda p: raw_file(p, {"x": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}, DATA),
     "non-negative"),
    (lambda p: raw_file(p, {"x": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, DATA),
     "needs 12 bytes"),
    (lambda p: raw_file(p, {"x": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}}, DATA),
     "begin <= end"),
    (lambda p: raw_file(p, {"x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                            "y": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, DATA),
     "overlap"),
    (lambda p: raw_file(p, {"x": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, DATA),
     "gap"),
    (lambda p: raw_file(p, GOOD, DATA[:5]), "truncated"),
    (lambda p: raw_file(p, GOOD, DATA + b"junk"), "4 bytes of trailing garbage"),
])
def test_malformed_files_are_refused(tmp_path: Path, build, message: str) -> None:
    path = tmp_path / "bad.safetensors"
    build(path)
    with pytest.raises(CheckpointError, match=message) as info:
        load(path)
    assert str(path) in str(info.value)  # the message names the file
    assert isinstance(info.value, ValueError)


def test_truncating_a_real_file_anywhere_is_caught(tmp_path: Path) -> None:
    path = tmp_path / "t.safetensors"
    save({"a": np.arange(10.0), "b": np.ones((3, 3), np.float16)}, path)
    raw = path.read_bytes()
    for cut in range(0, len(raw), 7):
        (tmp_path / "cut").write_bytes(raw[:cut])
        with pytest.raises(CheckpointError):
            load(tmp_path / "cut")


def test_tampered_bytes_fail_the_checksum(tmp_path: Path) -> None:
    path = tmp_path / "t.safetensors"
    save({"w": np.arange(8, dtype=np.float32)}, path)
    raw = bytearray(path.read_bytes())
    raw[-3] ^= 0x01  # flip one bit of the data
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="digest of the header and data does not match"):
        load(path)


class _Payload:
    """Unpickling this would create a file: the proof that a loader executed code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "pwned"))


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_pickle_payload_is_refused_not_executed(tmp_path: Path, protocol: int) -> None:
    marker = tmp_path / "side_effect.txt"
    path = tmp_path / "model.pt"
    path.write_bytes(pickle.dumps(_Payload(marker), protocol=protocol))
    with pytest.raises(CheckpointError, match="pickle/PyTorch file; Nima never unpickles"):
        load(path)
    assert not marker.exists()


def test_zip_file_torch_save_style_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    path.write_bytes(b"PK\x03\x04" + b"\x00" * 64)
    with pytest.raises(CheckpointError, match="never unpickles"):
        load(path)


def test_header_length_128_is_not_mistaken_for_pickle(tmp_path: Path) -> None:
    # a header of exactly 0x80 bytes makes the file start with the pickle opcode byte 0x80
    path = tmp_path / "t.safetensors"
    head = json.dumps({"__metadata__": {"k": "v"}}).encode().ljust(128)
    raw_file(path, None, header_bytes=head)
    assert path.read_bytes()[0] == 0x80
    assert load_metadata(path) == {"k": "v"}


# ----------------------------------------------------------------------------- atomic writes
def test_kill_during_save_leaves_the_old_file(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "w.safetensors"
    save({"w": np.ones(4)}, path)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt("killed before the rename")

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        save({"w": np.zeros(4)}, path)
    monkeypatch.undo()
    np.testing.assert_array_equal(load(path)["w"], np.ones(4))
    assert [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]  # no stray temp file


def test_kill_midway_through_the_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "w.safetensors"
    save({"a": np.ones(4), "b": np.ones(4)}, path)
    real_fsync, calls = os.fsync, []

    def fsync_then_die(fd: int) -> None:
        calls.append(fd)
        raise OSError("disk unplugged")

    monkeypatch.setattr(os, "fsync", fsync_then_die)
    with pytest.raises(OSError, match="disk unplugged"):
        save({"a": np.zeros(4), "b": np.zeros(4)}, path)
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert calls
    np.testing.assert_array_equal(load(path)["b"], np.ones(4))
    assert [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]
