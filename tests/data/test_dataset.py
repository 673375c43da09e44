"""The prepare step, the .bin format, seeded batches and the shipped Shakespeare corpus."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from nima.data import load_tokenizer
from nima.data.dataset import TokenDataset, prepare, token_dtype

ROOT = Path(__file__).resolve().parents[2]
SHAKESPEARE = ROOT / "data" / "tinyshakespeare.txt"
TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n" * 3


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    path = tmp_path / "input.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


def _write_ids(path: Path, ids: np.ndarray) -> Path:
    ids.astype("<u2").tofile(path)
    return path


@pytest.mark.parametrize("kind, vocab_size", [("char", None), ("bpe", 300)])
def test_prepare_round_trips_the_split(corpus: Path, tmp_path: Path, kind, vocab_size) -> None:
    out = tmp_path / "out"
    meta = prepare(corpus, out, tokenizer=kind, vocab_size=vocab_size)
    tok = load_tokenizer(out / meta["tokenizer_file"])
    split = int(len(TEXT) * 0.9)
    for name, part in [("train", TEXT[:split]), ("val", TEXT[split:])]:
        ids = np.fromfile(out / f"{name}.bin", dtype=meta["dtype"])
        assert tok.decode(ids.tolist()) == part
        assert meta[f"{name}_tokens"] == ids.size
    assert sorted(p.name for p in out.iterdir()) == [
        "meta.json", "tokenizer.txt", "train.bin", "val.bin"  # no temp files left behind
    ]


def test_meta_json(corpus: Path, tmp_path: Path) -> None:
    meta = prepare(corpus, tmp_path / "out", val_fraction=0.25)
    on_disk = json.loads((tmp_path / "out" / "meta.json").read_text())
    assert on_disk == meta
    assert meta["tokenizer"] == "char"
    assert meta["vocab_size"] == len(set(TEXT))
    assert meta["dtype"] == "uint16"
    assert meta["val_fraction"] == 0.25
    assert meta["split_char"] == int(len(TEXT) * 0.75)
    assert meta["train_tokens"] + meta["val_tokens"] == len(TEXT)  # char: one token per char


def test_dtype_choice() -> None:
    assert token_dtype(65) == np.uint16
    assert token_dtype(2**16) == np.uint16
    assert token_dtype(2**16 + 1) == np.uint32


def test_prepare_writes_uint32_for_large_vocab(tmp_path: Path) -> None:
    # ~68,000 distinct characters (surrogates skipped): more ids than a uint16 holds
    text = "".join(chr(c) for c in range(0x100, 0x100 + 70_000) if not 0xD800 <= c < 0xE000)
    (tmp_path / "big.txt").write_text(text, encoding="utf-8")
    meta = prepare(tmp_path / "big.txt", tmp_path / "out")
    assert meta["vocab_size"] > 2**16 and meta["dtype"] == "uint32"
    ids = np.fromfile(tmp_path / "out" / "val.bin", dtype="uint32")
    assert ids.max() >= 2**16  # ids that a uint16 could not hold survive
    tok = load_tokenizer(tmp_path / "out" / "tokenizer.txt")
    assert tok.decode(ids.tolist()) == text[meta["split_char"] :]


def test_prepare_errors(corpus: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'char' or 'bpe'"):
        prepare(corpus, tmp_path / "o", tokenizer="word")
    with pytest.raises(ValueError, match="vocab_size"):
        prepare(corpus, tmp_path / "o", tokenizer="bpe")
    with pytest.raises(ValueError, match="val_fraction"):
        prepare(corpus, tmp_path / "o", val_fraction=1.0)


def test_batches_are_shifted_windows_of_the_data(tmp_path: Path) -> None:
    raw = np.random.default_rng(1).integers(0, 65, size=500).astype(np.uint16)
    ds = TokenDataset(_write_ids(tmp_path / "d.bin", raw), "uint16")
    assert len(ds) == 500
    x, y = ds.get_batch(8, 16, np.random.default_rng(0))
    assert x.shape == y.shape == (8, 16) and x.dtype == y.dtype == np.int64
    np.testing.assert_array_equal(x[:, 1:], y[:, :-1])  # y is x shifted by one
    for row_x, row_y in zip(x, y, strict=True):
        starts = [i for i in range(500 - 16) if np.array_equal(raw[i : i + 16], row_x)]
        assert any(np.array_equal(raw[i + 1 : i + 17], row_y) for i in starts)


def test_batches_reach_the_last_token(tmp_path: Path) -> None:
    raw = np.arange(10, dtype=np.uint16)
    ds = TokenDataset(_write_ids(tmp_path / "d.bin", raw), "uint16")
    x, y = ds.get_batch(200, 9, np.random.default_rng(0))  # only one window fits
    np.testing.assert_array_equal(x, np.broadcast_to(raw[:9], (200, 9)))
    np.testing.assert_array_equal(y, np.broadcast_to(raw[1:], (200, 9)))


def test_batches_reproducible_per_seed(tmp_path: Path) -> None:
    raw = np.arange(1000, dtype=np.uint16)
    ds = TokenDataset(_write_ids(tmp_path / "d.bin", raw), "uint16")
    a = ds.get_batch(4, 32, np.random.default_rng(7))
    b = ds.get_batch(4, 32, np.random.default_rng(7))
    c = ds.get_batch(4, 32, np.random.default_rng(8))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_memmap_is_read_only(tmp_path: Path) -> None:
    ds = TokenDataset(_write_ids(tmp_path / "d.bin", np.arange(100, dtype=np.uint16)), "uint16")
    assert isinstance(ds.data, np.memmap) and not ds.data.flags.writeable
    with pytest.raises(ValueError):
        ds.data[0] = 5


def test_too_short_for_block_size(tmp_path: Path) -> None:
    ds = TokenDataset(_write_ids(tmp_path / "d.bin", np.arange(8, dtype=np.uint16)), "uint16")
    ds.get_batch(2, 7, np.random.default_rng(0))  # 8 tokens = block_size + 1: fits
    with pytest.raises(ValueError, match=r"8 tokens, fewer than block_size \+ 1 = 9"):
        ds.get_batch(2, 8, np.random.default_rng(0))
    empty = TokenDataset(_write_ids(tmp_path / "e.bin", np.zeros(0, dtype=np.uint16)), "uint16")
    assert len(empty) == 0
    with pytest.raises(ValueError, match="0 tokens"):
        empty.get_batch(1, 1, np.random.default_rng(0))


def test_shipped_shakespeare_corpus() -> None:
    data = SHAKESPEARE.read_bytes()
    assert len(data) == 1_115_394
    assert hashlib.sha256(data).hexdigest() == (
        "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
    )
    assert data.decode("utf-8").splitlines()[0] == "First Citizen:"


def test_interrupted_prepare_keeps_the_old_files(
    corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    prepare(corpus, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    corpus.write_text("something else entirely\n" * 5, encoding="utf-8")

    def crash(src, dst):
        raise KeyboardInterrupt  # killed just before the rename

    monkeypatch.setattr("nima.data.dataset.os.replace", crash)
    with pytest.raises(KeyboardInterrupt):
        prepare(corpus, out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # no temp files either
