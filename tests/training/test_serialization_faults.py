"""`nima.load` against damaged and hostile files: every flipped bit is caught by the digest,
fuzzed headers and bytes give a `CheckpointError` and nothing else, files that are not regular
files are refused without blocking or allocating, and files stay interoperable with the
`safetensors` library (when it is installed; it is never a dependency)."""

from __future__ import annotations

import json
import os
import struct
import threading
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nima.serialization import (
    DIGEST,
    MAX_HEADER_BYTES,
    CheckpointError,
    content_digest,
    load,
    load_metadata,
    remove_temporaries,
    save,
)

TENSORS = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "step": np.array(50, np.int64),
           "mask": np.array([True, False])}
META = {"kind": "example", "state": json.dumps({"step": 50})}


def saved(tmp_path: Path, **kwargs) -> Path:
    path = tmp_path / "t.safetensors"
    save(TENSORS, path, kwargs.get("metadata", META))
    return path


def header_of(raw: bytes) -> tuple[int, dict]:
    n = struct.unpack("<Q", raw[:8])[0]
    return n, json.loads(raw[8:8 + n])


def rewrite(path: Path, header: dict, data: bytes) -> None:
    """`path` with `header` (re-serialised, padded to 8) and `data`, as an editor would leave it."""
    head = json.dumps(header).encode()
    head += b" " * (-len(head) % 8)
    path.write_bytes(struct.pack("<Q", len(head)) + head + data)


# ----------------------------------------------------------------------------- the digest
def test_every_single_bit_flip_is_refused_or_harmless(tmp_path: Path) -> None:
    """A flip anywhere is refused — except in the letters of the key "digest", which turns the
    file into one without a digest (a Nima checkpoint then is refused, see the checkpoint
    tests); the tensors it returns are then exactly the saved ones."""
    raw = saved(tmp_path).read_bytes()
    key_at = raw.index(b'"digest"') + 1
    damaged = tmp_path / "damaged.safetensors"
    for position in range(len(raw)):
        for bit in range(8):
            flipped = bytearray(raw)
            flipped[position] ^= 1 << bit
            damaged.write_bytes(bytes(flipped))
            try:
                out = load(damaged)
            except CheckpointError:
                continue
            assert key_at <= position < key_at + len(DIGEST), (position, bit)
            assert DIGEST not in load_metadata(damaged)
            assert all(out[k].tobytes() == v.tobytes() for k, v in TENSORS.items())


def test_the_header_is_covered_not_just_the_data(tmp_path: Path) -> None:
    """The three tamperings found in the field: a step number in the metadata, a relabelled
    dtype of the same size, and a shape — each leaves the data section untouched."""
    path = saved(tmp_path)
    raw = path.read_bytes()
    n, header = header_of(raw)
    data = raw[8 + n:]
    edits = {
        "step": lambda h: h["__metadata__"].update(state=json.dumps({"step": 58})),
        "dtype": lambda h: h["w"].update(dtype="I32"),
        "shape": lambda h: h["w"].update(shape=[3, 2]),
    }
    for what, edit in edits.items():
        changed = json.loads(json.dumps(header))
        edit(changed)
        rewrite(path, changed, data)
        with pytest.raises(CheckpointError, match="digest of the header and data"):
            load(path)
        assert what  # the edit alone, not a broken layout, is what is refused


def test_the_digest_ignores_layout_padding_and_key_order(tmp_path: Path) -> None:
    path = saved(tmp_path)
    raw = path.read_bytes()
    n, header = header_of(raw)
    reordered = dict(reversed(list(header.items())))  # same content, other order, other spacing
    head = json.dumps(reordered, indent=1).encode() + b" " * 13
    path.write_bytes(struct.pack("<Q", len(head)) + head + raw[8 + n:])
    out = load(path)
    assert out.keys() == TENSORS.keys()
    for name, value in TENSORS.items():
        np.testing.assert_array_equal(out[name], value)


def test_a_file_without_a_digest_loads_as_plain_safetensors(tmp_path: Path) -> None:
    path = tmp_path / "t.safetensors"
    save(TENSORS, path, META, checksum=False)
    assert DIGEST not in load_metadata(path)
    np.testing.assert_array_equal(load(path)["w"], TENSORS["w"])


def test_metadata_copied_from_another_file_gets_this_files_digest(tmp_path: Path) -> None:
    source = saved(tmp_path)
    copy = tmp_path / "copy.safetensors"
    save({"other": np.zeros(2)}, copy, load_metadata(source))  # the source's digest, replaced
    assert load_metadata(copy)[DIGEST] != load_metadata(source)[DIGEST]
    np.testing.assert_array_equal(load(copy)["other"], np.zeros(2))
    save({"other": np.zeros(2)}, copy, load_metadata(source), checksum=False)
    assert DIGEST not in load_metadata(copy) and load(copy).keys() == {"other"}


def test_content_digest_is_independent_of_tensor_order() -> None:
    header = {"b": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]},
              "a": {"dtype": "U8", "shape": [1], "data_offsets": [1, 2]}}
    data = {"a": b"\x01", "b": b"\x02"}
    swapped = {"a": header["b"] | {"data_offsets": [0, 1]},
               "b": header["a"] | {"data_offsets": [1, 2]}}
    assert content_digest(header, {}, data.__getitem__) == \
        content_digest(swapped, {DIGEST: "ignored"}, data.__getitem__)
    assert content_digest(header, {}, data.__getitem__) != \
        content_digest(header, {}, {"a": b"\x02", "b": b"\x01"}.__getitem__)


# ----------------------------------------------------------------------------- fuzzing
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=12)
entries = st.fixed_dictionaries({
    "dtype": st.sampled_from(["F32", "F64", "U8", "BOOL", "C64", 3]),
    "shape": st.lists(st.integers(-1, 2**64) | st.sampled_from([0, 1, 2, 2**62]), max_size=70)
    | json_values,
    "data_offsets": st.lists(st.integers(-1, 2**64) | st.sampled_from([0, 4, 8]),
                             min_size=1, max_size=3) | json_values,
})
headers = st.dictionaries(st.text(max_size=6), entries | json_values, max_size=3)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=300)
@given(header=headers, data=st.binary(max_size=64))
def test_fuzzed_headers_give_checkpoint_errors_only(tmp_path: Path, header: dict,
                                                    data: bytes) -> None:
    path = tmp_path / "fuzz.safetensors"
    rewrite(path, header, data)
    try:
        tensors = load(path)
    except CheckpointError:
        return
    assert all(isinstance(v, np.ndarray) for v in tensors.values())


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=300)
@given(edits=st.lists(st.tuples(st.integers(0, 10**6), st.binary(min_size=0, max_size=3),
                                st.integers(0, 3)), min_size=1, max_size=4))
def test_damaged_real_files_are_refused_or_unchanged(tmp_path: Path, edits: list) -> None:
    """Random splices (replace `k` bytes at a position by 0-3 new ones) of a saved file: load
    refuses it, or returns exactly what was saved (a splice into padding can be harmless)."""
    raw = bytearray(saved(tmp_path).read_bytes())
    for position, new, k in edits:
        at = position % (len(raw) + 1)
        raw[at:at + k] = new
    path = tmp_path / "damaged.safetensors"
    path.write_bytes(bytes(raw))
    try:
        out = load(path)
    except CheckpointError:
        return
    assert out.keys() == TENSORS.keys()
    for name, value in TENSORS.items():
        assert out[name].dtype == value.dtype and out[name].tobytes() == value.tobytes()


@pytest.mark.parametrize(("shape", "offsets", "message"), [
    ([2**70], [0, 8], "beyond what an array"),  # was an OverflowError
    ([0, 2**62], [0, 0], "beyond what an array"),  # was a reshape error
    ([1] * 65, [0, 4], "at most 64 dims"),  # was a reshape error
    ([2], [0, 2**70], "needs 8 bytes"),
])
def test_absurd_shapes_and_offsets(tmp_path: Path, shape: list, offsets: list,
                                   message: str) -> None:
    path = tmp_path / "t.safetensors"
    rewrite(path, {"x": {"dtype": "F32", "shape": shape, "data_offsets": offsets}},
            bytes(offsets[1] if offsets[1] < 64 else 8))
    with pytest.raises(CheckpointError, match=message):
        load(path)


def test_deeply_nested_header(tmp_path: Path) -> None:
    path = tmp_path / "t.safetensors"
    head = b'{"x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    path.write_bytes(struct.pack("<Q", len(head)) + head)
    with pytest.raises(CheckpointError, match="nests JSON too deeply"):
        load(path)


def test_error_messages_stay_short_for_huge_headers(tmp_path: Path) -> None:
    path = tmp_path / "t.safetensors"
    rewrite(path, {"x": {"dtype": "F32", "shape": ["a" * 1_000_000], "data_offsets": [0, 0]}},
            b"")
    with pytest.raises(CheckpointError) as info:
        load(path)
    assert len(str(info.value)) < 400


def test_header_length_is_bounded_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "big.safetensors"
    with path.open("wb") as f:  # sparse: the declared header fits in the file, but is too big
        f.write(struct.pack("<Q", MAX_HEADER_BYTES + 1))
        f.truncate(MAX_HEADER_BYTES + 64)
    with pytest.raises(CheckpointError, match=f"exceeds the limit of {MAX_HEADER_BYTES} bytes"):
        load(path)


# ----------------------------------------------------------------------------- not regular files
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this system")
def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "ckpt.safetensors"
    os.mkfifo(fifo)
    outcome: list[BaseException | None] = []

    def read() -> None:
        try:
            load(fifo)
            outcome.append(None)
        except BaseException as e:  # handed to the main thread
            outcome.append(e)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(10)
    if reader.is_alive():  # blocked in open(): release it by opening the writing end
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        reader.join(10)
        pytest.fail("load blocked on a FIFO")
    assert isinstance(outcome[0], CheckpointError) and "a FIFO" in str(outcome[0])


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="no /dev/zero")
def test_a_device_is_refused_before_reading(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"not a regular file \(a device or socket\)"):
        load("/dev/zero")


def test_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"not a regular file \(a directory\)"):
        load(tmp_path)


def test_a_missing_file_is_the_usual_os_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nothing\.safetensors"):
        load(tmp_path / "nothing.safetensors")


# ----------------------------------------------------------------------------- temporaries
def test_remove_temporaries_deletes_only_atomic_write_leftovers(tmp_path: Path) -> None:
    leftovers = [".ckpt-0000100.safetensors.ab3_x9zq.tmp", ".tokenizer.txt.00000000.tmp"]
    kept = ["notes.tmp", ".hidden.tmp", "ckpt-0000100.safetensors", ".x.ABCDEFGH.tmp",
            ".x.abc.tmp"]
    for name in leftovers + kept:
        (tmp_path / name).write_bytes(b"partial")
    (tmp_path / ".d.abcdefgh.tmp").mkdir()
    removed = remove_temporaries(tmp_path)
    assert sorted(p.name for p in removed) == sorted(leftovers)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*kept, ".d.abcdefgh.tmp"])


def test_a_killed_save_leaves_a_temporary_that_remove_temporaries_finds(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A SIGKILL stand-in: os.replace never happens, and neither does the cleanup of a normal
    exception (which `atomic_write` does), as the process is gone."""
    path = tmp_path / "w.safetensors"
    monkeypatch.setattr(Path, "unlink", lambda *a, **k: None)  # the dead process cleans nothing
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(SystemExit))
    with pytest.raises(SystemExit):
        save(TENSORS, path)
    monkeypatch.undo()
    (leftover,) = tmp_path.iterdir()
    assert leftover.name.startswith(".w.safetensors.")
    assert remove_temporaries(tmp_path) == [leftover] and not list(tmp_path.iterdir())


# ----------------------------------------------------------------------------- interoperability
def test_files_interoperate_with_the_safetensors_library(tmp_path: Path) -> None:
    st_numpy = pytest.importorskip("safetensors.numpy")
    safe_open = pytest.importorskip("safetensors").safe_open
    path = saved(tmp_path)
    theirs = st_numpy.load_file(str(path))
    for name, value in TENSORS.items():
        np.testing.assert_array_equal(theirs[name], value)
    with safe_open(str(path), framework="numpy") as f:
        meta = f.metadata()
    assert meta[DIGEST] == load_metadata(path)[DIGEST]

    rewritten = tmp_path / "rewritten.safetensors"  # their writer: other order and offsets
    st_numpy.save_file(theirs, str(rewritten), metadata=meta)
    assert rewritten.read_bytes() != path.read_bytes()
    np.testing.assert_array_equal(load(rewritten)["w"], TENSORS["w"])  # the digest still holds

    meta["state"] = json.dumps({"step": 58})  # their writer, our metadata edited: caught
    st_numpy.save_file(theirs, str(rewritten), metadata=meta)
    with pytest.raises(CheckpointError, match="digest"):
        load(rewritten)

    plain = tmp_path / "plain.safetensors"  # a file of theirs, no digest: loads as it is
    st_numpy.save_file({"x": np.ones((2, 2), np.float16)}, str(plain))
    np.testing.assert_array_equal(load(plain)["x"], np.ones((2, 2), np.float16))
