"""Tokenizers: known answers, round trips of any text, special tokens, the file format."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nima.data import ByteBPETokenizer, CharTokenizer, TokenizerFileError, load_tokenizer
from nima.data.pretokenize import gpt2_split_pattern
from nima.data.tokenizers import get_stats, merge

SAMPLE = (
    "First Citizen:\nBefore we proceed any further, hear me speak.\n\n"
    "All:\nSpeak, speak. — Ça va? 東京 🙂 it's 2026, isn't it?  _under_score\t\n"
) * 4

# any text drawn from all of Unicode except lone surrogates (which UTF-8 cannot encode)
any_text = st.text(st.characters(blacklist_categories=("Cs",)))


def _shakespeare(n_chars: int) -> str | None:
    """The first `n_chars` of tiny Shakespeare, from the project copy or the shared one."""
    root = Path(__file__).resolve().parents[2]
    for path in (
        root / "data" / "tinyshakespeare.txt",
        Path("/work/shared/data/tinyshakespeare.txt"),
    ):
        if path.exists():
            return path.read_text(encoding="utf-8")[:n_chars]
    return None


@pytest.fixture(scope="module")
def bpe() -> ByteBPETokenizer:
    return ByteBPETokenizer.train(SAMPLE, vocab_size=300, pattern="gpt2")


# ---- the helpers -------------------------------------------------------------------------------


def test_get_stats_and_merge_known_answers():
    assert get_stats([1, 2, 3, 1, 2]) == {(1, 2): 2, (2, 3): 1, (3, 1): 1}
    assert get_stats([]) == {} and get_stats([5]) == {}
    assert get_stats([1, 2], {(1, 2): 1}, weight=3) == {(1, 2): 4}
    assert merge([1, 2, 3, 1, 2], (1, 2), 4) == [4, 3, 4]
    assert merge([7, 7, 7], (7, 7), 9) == [9, 7]  # overlaps resolve from the left
    assert merge([7, 7, 7, 7], (7, 7), 9) == [9, 9]


# ---- character level ---------------------------------------------------------------------------


def test_char_known_answer():
    tok = CharTokenizer.train("hello world")
    assert tok.chars == [" ", "d", "e", "h", "l", "o", "r", "w"]
    assert tok.encode("hold") == [3, 5, 4, 1]
    assert tok.decode([3, 2, 4, 4, 5]) == "hello"
    assert tok.vocab_size == 8


def test_char_unknown_character_is_named():
    tok = CharTokenizer.train("abc")
    with pytest.raises(ValueError, match=r"'z' \(U\+007A\) at position 1"):
        tok.encode("az")
    with pytest.raises(ValueError, match="out of range"):
        tok.decode([3])


@given(st.data())
def test_char_round_trip(data):
    alphabet = data.draw(any_text.filter(bool), label="training text")
    tok = CharTokenizer.train(alphabet)
    text = data.draw(st.text(st.sampled_from(sorted(set(alphabet)))), label="text")
    ids = tok.encode(text)
    assert all(0 <= i < tok.vocab_size for i in ids)
    assert tok.decode(ids) == text


def test_char_save_load(tmp_path):
    tok = CharTokenizer.train("héllo\nwörld 🙂\r\t")
    tok.save(tmp_path / "char.tok")
    back = CharTokenizer.load(tmp_path / "char.tok")
    assert back.chars == tok.chars
    assert isinstance(load_tokenizer(tmp_path / "char.tok"), CharTokenizer)


# ---- byte-level BPE ----------------------------------------------------------------------------


def test_bpe_wikipedia_example():
    # https://en.wikipedia.org/wiki/Byte_pair_encoding: aaabdaaabac -> ZabdZabac (Z=aa)
    # -> ZYdZYac (Y=ab) -> XdXac (X=ZY). With bytes: a=97, b=98, Z=256, Y=257, X=258.
    tok = ByteBPETokenizer.train("aaabdaaabac", vocab_size=256 + 3)
    assert tok.merges == {(97, 97): 256, (97, 98): 257, (256, 257): 258}
    assert tok.vocab[258] == b"aaab"
    assert tok.encode("aaabdaaabac") == [258, 100, 258, 97, 99]
    assert tok.decode([258, 100, 258, 97, 99]) == "aaabdaaabac"


def test_bpe_vocab_size_is_checked():
    with pytest.raises(ValueError, match="vocab_size must be an int >= 256"):
        ByteBPETokenizer.train("abc", vocab_size=255)
    with pytest.raises(ValueError, match="unknown pattern"):
        ByteBPETokenizer.train("abc", vocab_size=260, pattern="gpt4")
    # no pairs left: training stops early instead of failing
    assert ByteBPETokenizer.train("ab", vocab_size=1000).vocab_size == 257
    assert ByteBPETokenizer.train("", vocab_size=300).vocab_size == 256


@given(any_text)
def test_bpe_round_trip(bpe, text):
    ids = bpe.encode(text)
    assert all(0 <= i < bpe.vocab_size for i in ids)
    assert bpe.decode(ids) == text


@given(any_text)
def test_bpe_round_trip_without_pattern(text):
    tok = ByteBPETokenizer.train(SAMPLE[:200], vocab_size=280)
    assert tok.decode(tok.encode(text)) == text


def test_bpe_round_trip_edge_cases(bpe):
    for text in ["", " ", "🙂", "👩‍👩‍👧", "\n\n\n", "a" * 1000, SAMPLE]:
        assert bpe.decode(bpe.encode(text)) == text
    assert bpe.encode("") == []


def test_bpe_compresses_its_training_text(bpe):
    assert len(bpe.encode(SAMPLE)) < 0.7 * len(SAMPLE.encode("utf-8"))


def test_bpe_decode_invalid_utf8_is_replaced():
    tok = ByteBPETokenizer()
    assert tok.decode([0xF0, 0x9F, 0x99]) == "\ufffd"  # a truncated emoji
    assert tok.decode([104, 0xFF, 105]) == "h\ufffdi"
    with pytest.raises(ValueError, match="unknown id 256"):
        tok.decode([256])


def test_gpt2_pattern_chunks():
    chunks = re.findall(gpt2_split_pattern(), "Hello world's  42 ünïcode!!_x")
    assert chunks == ["Hello", " world", "'s", " ", " 42", " ünïcode", "!!_", "x"]


def test_merges_never_cross_chunks():
    text = "ab ab ab ab a b. a.b a1 1a " * 20
    tok = ByteBPETokenizer.train(text, vocab_size=300, pattern="gpt2")
    for token_bytes in tok.vocab.values():
        piece = token_bytes.decode("utf-8", errors="replace")
        # every learned token lies inside one chunk of the pattern
        assert len(re.findall(gpt2_split_pattern(), piece)) <= 1, piece
    # without the pre-split, merges do cross word boundaries
    plain = ByteBPETokenizer.train(text, vocab_size=300)
    assert any(b"b a" in t for t in plain.vocab.values())


def test_special_tokens(bpe):
    special = ByteBPETokenizer.train(SAMPLE, vocab_size=300, pattern="gpt2")
    eot = special.vocab_size
    special.register_special_tokens({"<|endoftext|>": eot, "<|pad|>": eot + 1})
    text = "Speak.<|endoftext|>First<|pad|><|endoftext|>"
    ids = special.encode(text)
    assert ids.count(eot) == 2 and ids.count(eot + 1) == 1
    assert ids[-1] == eot
    assert special.decode(ids) == text
    assert special.encode("<|endoftext|>") == [eot]
    # the plain tokenizer sees only bytes/merges
    assert eot not in bpe.encode(text)
    with pytest.raises(ValueError, match="collides"):
        special.register_special_tokens({"<bad>": 100})
    with pytest.raises(ValueError, match="used twice"):
        special.register_special_tokens({"<bad>": eot})


# ---- the file format ---------------------------------------------------------------------------


def test_bpe_save_load_round_trip(tmp_path, bpe):
    tok = ByteBPETokenizer.train(SAMPLE, vocab_size=300, pattern="gpt2")
    tok.register_special_tokens({"<|endoftext|>": 300, "<with space>": 301})
    path = tmp_path / "bpe.tok"
    tok.save(path)
    back = ByteBPETokenizer.load(path)
    assert back.merges == tok.merges and back.special_tokens == tok.special_tokens
    assert back.pattern == "gpt2"
    text = SAMPLE + "<|endoftext|>new text<with space>"
    assert back.encode(text) == tok.encode(text)
    assert isinstance(load_tokenizer(path), ByteBPETokenizer)
    text_file = path.read_text(encoding="utf-8")
    assert text_file.startswith("nima-tokenizer kind=bpe version=1 pattern=gpt2\nmerges 44\n")
    assert text_file.endswith("special 2\n300 <|endoftext|>\n301 <with space>\nend\n")
    assert [p.name for p in tmp_path.iterdir()] == ["bpe.tok"]  # no temp file left behind


def test_save_is_atomic(tmp_path, bpe, monkeypatch):
    path = tmp_path / "bpe.tok"
    bpe.save(path)
    before = path.read_bytes()

    def crash(*args):
        raise OSError("simulated crash")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="simulated"):
        ByteBPETokenizer.train("xyz" * 10, vocab_size=258).save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["bpe.tok"]


@pytest.mark.parametrize(
    "content, message",
    [
        ("", "not a Nima tokenizer file"),
        ("\x80\x81 pickle", "not a Nima tokenizer file"),
        ("nima-tokenizer kind=char version=1\nchars 0\nend\n", "expected 'bpe'"),
        ("nima-tokenizer kind=bpe version=9 pattern=none\nmerges 0\nspecial 0\nend\n", "version"),
        ("nima-tokenizer kind=bpe version=1 pattern=x\nmerges 0\nspecial 0\nend\n", "pattern"),
        ("nima-tokenizer kind=bpe version=1 pattern=none\nmerges 2\n97 97\n", "truncated"),
        ("nima-tokenizer kind=bpe version=1 pattern=none\nmerges 2\n97 97\nend\n", "truncated"),
        ("nima-tokenizer kind=bpe version=1 pattern=none\nmerges 1\n97\nspecial 0\nend\n", "merge"),
        (
            "nima-tokenizer kind=bpe version=1 pattern=none\nmerges 1\n97 999\nspecial 0\nend\n",
            "order",
        ),
        (
            "nima-tokenizer kind=bpe version=1 pattern=none\nmerges 0\nspecial 1\nx <a>\nend\n",
            "special",
        ),
        (
            "nima-tokenizer kind=bpe version=1 pattern=none\nmerges 0\nspecial 1\n5 <a>\nend\n",
            "collides",
        ),
        (
            "nima-tokenizer kind=bpe version=1 pattern=none\nmerges 0\nspecial 0\nextra\nend\n",
            "unexpected",
        ),
    ],
)
def test_bpe_load_rejects_bad_files(tmp_path, content, message):
    path = tmp_path / "bad.tok"
    path.write_bytes(content.encode("latin-1"))
    with pytest.raises(TokenizerFileError, match=message):
        ByteBPETokenizer.load(path)


def test_crlf_files_are_read_as_written(tmp_path):
    """A tokenizer file converted to CRLF line ends (an editor, git's autocrlf) still loads."""
    bpe = ByteBPETokenizer.train(SAMPLE, vocab_size=280, pattern="gpt2")
    bpe.register_special_tokens({"<|endoftext|>": 280})
    for tok in (bpe, CharTokenizer("ab\r\nc")):
        path = tmp_path / "tok.txt"
        tok.save(path)
        path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
        back = load_tokenizer(path)
        text = "ab\r\nc" if isinstance(tok, CharTokenizer) else SAMPLE + "<|endoftext|>"
        assert back.encode(text) == tok.encode(text)
        assert back.decode(tok.encode(text)) == text
    (tmp_path / "cut.txt").write_bytes(path.read_bytes()[:-2])  # "end" without its line end
    with pytest.raises(TokenizerFileError, match="truncated"):
        load_tokenizer(tmp_path / "cut.txt")


def test_truncated_at_every_byte_is_refused(tmp_path, bpe):
    bpe.save(tmp_path / "good.tok")
    data = (tmp_path / "good.tok").read_bytes()
    for n in range(0, len(data) - 1, 7):
        (tmp_path / "cut.tok").write_bytes(data[:n])
        with pytest.raises(TokenizerFileError):
            ByteBPETokenizer.load(tmp_path / "cut.tok")


def test_load_tokenizer_refuses_unknown_files(tmp_path):
    path = tmp_path / "model.pkl"
    path.write_bytes(b"\x80\x04\x95cos\nsystem\n.")  # the start of a pickle payload
    with pytest.raises(TokenizerFileError, match="not a Nima tokenizer file"):
        load_tokenizer(path)
    with pytest.raises(TokenizerFileError, match="expected 'char'"):
        ByteBPETokenizer.train("ab", 256).save(path)
        CharTokenizer.load(path)


# ---- speed -------------------------------------------------------------------------------------


def test_bpe_trains_fast_on_shakespeare():
    text = _shakespeare(20_000)
    if text is None:
        pytest.skip("tiny Shakespeare corpus not found")
    start = time.perf_counter()
    tok = ByteBPETokenizer.train(text, vocab_size=512, pattern="gpt2")
    ids = tok.encode(text)
    elapsed = time.perf_counter() - start
    assert tok.decode(ids) == text
    assert len(ids) < 0.6 * len(text)
    assert elapsed < 5.0, f"training + encoding 20 KB took {elapsed:.1f} s"
