"""GPT-2's tokenizer files (vocab.json + merges.txt): a hand-made pair with known answers, round
trips both ways, every malformed-file error, and the same ids as `transformers`' GPT2Tokenizer
when it is installed."""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nima.data import ByteBPETokenizer, TokenizerFileError
from nima.data.tokenizers import bpe_merge_loop, bytes_to_unicode

# GPT-2 numbers its byte tokens in the order of their characters: "!" is 0, "Ā" (byte 0) 188
GPT2_BYTES = {char: i for i, char in enumerate(sorted(bytes_to_unicode().values()))}
MERGES = ["Ġ t", "h e", "Ġt he", "Ġ c", "a t", "Ġc at"]  # ids 256..261
SHAKESPEARE = Path(__file__).resolve().parents[2] / "data" / "tinyshakespeare.txt"
ASSIGNED = "".join(  # characters this Python's Unicode database knows, up to plane 2
    chr(c) for c in range(0x30000) if unicodedata.category(chr(c)) not in ("Cn", "Cs"))
texts = st.text(st.sampled_from(ASSIGNED) | st.sampled_from(" \n\t'sthecat<|endoftext|>"))


def write_pair(folder: Path, vocab: dict[str, int], merges: list[str],
               header: str = "#version: 0.2\n") -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text(header + "".join(m + "\n" for m in merges),
                                       encoding="utf-8")
    return folder / "vocab.json", folder / "merges.txt"


def tiny_vocab() -> dict[str, int]:
    merged = {a + b: 256 + k for k, (a, b) in enumerate(m.split(" ") for m in MERGES)}
    return {**GPT2_BYTES, **merged, "<|endoftext|>": 262}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, Path]:
    return write_pair(tmp_path_factory.mktemp("tiny"), tiny_vocab(), MERGES)


@pytest.fixture(scope="module")
def shakespeare(tmp_path_factory) -> tuple[Path, Path]:
    """A 600-id tokenizer trained on Shakespeare, written as GPT-2's files."""
    tok = ByteBPETokenizer.train(SHAKESPEARE.read_text(encoding="utf-8")[:30_000], 600,
                                 pattern="gpt2")
    tok.register_special_tokens({"<|endoftext|>": 600})
    folder = tmp_path_factory.mktemp("shakespeare")
    tok.save_files(folder / "vocab.json", folder / "merges.txt")
    return folder / "vocab.json", folder / "merges.txt"


def test_byte_table() -> None:
    table = bytes_to_unicode()
    assert len(set(table.values())) == 256
    assert table[ord("A")] == "A" and table[ord(" ")] == "Ġ" and table[ord("\n")] == "Ċ"
    assert all(ch.isprintable() and not ch.isspace() for ch in table.values())
    # GPT-2's well-known ids: "!" 0, "t" 83, newline 198, space 220
    assert [GPT2_BYTES[table[b]] for b in b"!t\n "] == [0, 83, 198, 220]


def test_hand_made_pair_known_answers(tiny) -> None:
    tok = ByteBPETokenizer.from_files(*tiny)
    assert tok.byte_ids[ord("t")] == 83 and tok.byte_ids[ord(" ")] == 220
    assert tok.vocab[258] == b" the" and tok.vocab[261] == b" cat"
    assert tok.special_tokens == {"<|endoftext|>": 262} and tok.vocab_size == 263
    # "the": only h+e merges ("t he" is no merge); " cat": Ġ+c (rank 3), a+t (4), Ġc+at (5)
    assert tok.encode("the cat") == [83, 257, 261]
    assert tok.encode(" the<|endoftext|>") == [258, 262]
    assert tok.decode([83, 257, 261, 262]) == "the cat<|endoftext|>"
    assert tok.encode("x") == [ord("x") - 33]


def test_merge_loop_merges_every_occurrence_left_to_right() -> None:
    # rank 0 merges (7, 7) -> 9: in 7 7 7 the left pair wins; then (9, 7) -> 10 (rank 1)
    assert bpe_merge_loop([7, 7, 7], {(7, 7): 0, (9, 7): 1}, [9, 10]) == [10]
    assert bpe_merge_loop([7, 7, 7, 7, 5], {(7, 7): 0}, [9]) == [9, 9, 5]
    assert bpe_merge_loop([1, 2], {}, []) == [1, 2] and bpe_merge_loop([], {}, []) == []


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts)
def test_round_trip_any_text(tiny, shakespeare, text: str) -> None:
    for pair in (tiny, shakespeare):
        tok = ByteBPETokenizer.from_files(*pair)
        ids = tok.encode(text)
        assert all(0 <= i < tok.vocab_size for i in ids)
        assert tok.decode(ids) == text


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(st.characters(blacklist_categories=("Cs",))))
def test_round_trip_all_of_unicode(shakespeare, text: str) -> None:
    # any code point, emoji and unassigned ones included
    tok = ByteBPETokenizer.from_files(*shakespeare)
    assert tok.decode(tok.encode(text)) == text


def test_save_files_then_from_files_is_the_same_tokenizer(tmp_path, tiny) -> None:
    tok = ByteBPETokenizer.from_files(*tiny)
    tok.save_files(tmp_path / "vocab.json", tmp_path / "merges.txt")
    assert json.loads((tmp_path / "vocab.json").read_text(encoding="utf-8")) == tiny_vocab()
    assert (tmp_path / "merges.txt").read_text(encoding="utf-8") == \
        tiny[1].read_text(encoding="utf-8")
    back = ByteBPETokenizer.from_files(tmp_path / "vocab.json", tmp_path / "merges.txt")
    assert (back.byte_ids, back.vocab, back.merges, back.special_tokens) == \
        (tok.byte_ids, tok.vocab, tok.merges, tok.special_tokens)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["merges.txt", "vocab.json"]


def test_a_trained_tokenizer_exports_to_gpt2_files(tmp_path) -> None:
    text = SHAKESPEARE.read_text(encoding="utf-8")[:20_000]
    tok = ByteBPETokenizer.train(text, 400, pattern="gpt2")
    tok.register_special_tokens({"<|endoftext|>": 400})
    tok.save_files(tmp_path / "v.json", tmp_path / "m.txt")
    back = ByteBPETokenizer.from_files(tmp_path / "v.json", tmp_path / "m.txt")
    sample = text[-5000:] + "<|endoftext|>Ça va? 🙂"
    assert back.encode(sample) == tok.encode(sample)
    assert back.merges == tok.merges and back.vocab == tok.vocab
    # and back to Nima's own format, since the numbering is Nima's
    back.save(tmp_path / "tok.txt")
    assert ByteBPETokenizer.load(tmp_path / "tok.txt").encode(sample) == tok.encode(sample)


def test_no_header_line_and_no_final_newline_are_read(tmp_path) -> None:
    vocab, merges = write_pair(tmp_path, tiny_vocab(), MERGES, header="")
    merges.write_text("\n".join(MERGES), encoding="utf-8")
    assert ByteBPETokenizer.from_files(vocab, merges).encode(" cat") == [261]


def test_special_tokens_argument(tmp_path) -> None:
    vocab = {**tiny_vocab(), "<pad>": 263}
    pair = write_pair(tmp_path, vocab, MERGES)
    tok = ByteBPETokenizer.from_files(*pair, special_tokens=["<pad>", "<|endoftext|>"])
    assert tok.encode("<pad> cat<|endoftext|>") == [263, 261, 262]
    # without special tokens, "<|endoftext|>" is just bytes
    plain = ByteBPETokenizer.from_files(*write_pair(tmp_path / "b", GPT2_BYTES, []),
                                        special_tokens=[])
    assert plain.encode("<|") == [GPT2_BYTES["<"], GPT2_BYTES["|"]]


@pytest.mark.parametrize("vocab, merges, message", [
    ("not json", MERGES, "not a JSON vocabulary file"),
    ([1, 2], MERGES, "expected a JSON object"),
    ({**tiny_vocab(), "x y": -1}, MERGES, "expected a JSON object"),
    ({**tiny_vocab(), "zz": True}, MERGES, "expected a JSON object"),
    ({**tiny_vocab(), "zz": 5}, MERGES, "id 5 is given to both"),
    (tiny_vocab(), [*MERGES, "a b c"], r"line 8 should be two tokens"),
    (tiny_vocab(), [*MERGES, "Ġ"], r"line 8 should be two tokens"),
    (tiny_vocab(), [*MERGES, "q q"], r"merge 6 'q q': 'qq' is not a token"),
    (tiny_vocab(), [*MERGES, "a €"], r"'€' is not a token"),
    (tiny_vocab(), [*MERGES, "h e"], "appears twice"),
    ({k: v for k, v in tiny_vocab().items() if k != "Ā"}, MERGES, r"no token for byte 0x00"),
    ({**tiny_vocab(), "€uro": 263}, MERGES, "not made of GPT-2's 256 byte characters"),
])
def test_malformed_files_are_refused(tmp_path, vocab, merges, message) -> None:
    v, m = write_pair(tmp_path, {}, merges)
    v.write_text(vocab if isinstance(vocab, str) else json.dumps(vocab), encoding="utf-8")
    with pytest.raises(TokenizerFileError, match=message):
        ByteBPETokenizer.from_files(v, m)


def test_bad_special_tokens_and_encodings_are_refused(tmp_path, tiny) -> None:
    with pytest.raises(TokenizerFileError, match="special token '<pad>' is not in"):
        ByteBPETokenizer.from_files(*tiny, special_tokens=["<pad>"])
    bad = tmp_path / "merges.txt"
    bad.write_bytes(b"#version: 0.2\n\xff\xfe\n")
    with pytest.raises(TokenizerFileError, match="not a UTF-8 merges file"):
        ByteBPETokenizer.from_files(tiny[0], bad)


def test_what_cannot_be_saved_is_refused(tmp_path, tiny) -> None:
    with pytest.raises(ValueError, match="save_files"):
        ByteBPETokenizer.from_files(*tiny).save(tmp_path / "tok.txt")  # GPT-2's numbering
    with pytest.raises(ValueError, match="pattern=None"):
        ByteBPETokenizer.train("abcabc", 258).save_files(tmp_path / "v", tmp_path / "m")
    twice = ByteBPETokenizer(pattern="gpt2")
    twice.register_special_tokens({"a": 256})  # the same string as byte 97's token
    with pytest.raises(ValueError, match="both the token 'a'"):
        twice.save_files(tmp_path / "v", tmp_path / "m")
    assert not any(tmp_path.iterdir())


# ---- against transformers (optional) ------------------------------------------------------------


@pytest.fixture(scope="module")
def hf_tokenizers(tiny, shakespeare):
    transformers = pytest.importorskip("transformers")
    return [(ByteBPETokenizer.from_files(*pair),
             transformers.GPT2Tokenizer(vocab=str(pair[0]), merges=str(pair[1])))
            for pair in (tiny, shakespeare)]


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=300)
@given(texts)
def test_same_ids_as_transformers(hf_tokenizers, text: str) -> None:
    for nima_tok, hf_tok in hf_tokenizers:
        assert nima_tok.encode(text) == hf_tok.encode(text)


def test_same_ids_as_transformers_on_shakespeare(hf_tokenizers) -> None:
    text = SHAKESPEARE.read_text(encoding="utf-8")[-50_000:] + "<|endoftext|> Ça va? 東京 🙂\x85"
    for nima_tok, hf_tok in hf_tokenizers:
        assert nima_tok.encode(text) == hf_tok.encode(text)
        assert nima_tok.decode(nima_tok.encode(text)) == hf_tok.decode(hf_tok.encode(text))

