"""GPT-2's pre-split with `re`: known chunks, and equality with the `regex` module's original
pattern over every code point this Python's Unicode database knows (when `regex` is installed)."""

from __future__ import annotations

import re
import sys
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nima.data.pretokenize import GPT2_REGEX_PATTERN, gpt2_split_pattern, has_astral

# characters this Python's unicodedata knows (a newer `regex` may know more: see the module)
ASSIGNED = "".join(
    chr(c) for c in range(sys.maxunicode + 1) if unicodedata.category(chr(c)) not in ("Cn", "Cs")
)
known_text = st.text(st.sampled_from(ASSIGNED) | st.sampled_from(" \t\n\r'sdtvlmre0_½Ⅻ\x1c"))


@pytest.fixture(scope="module")
def reference() -> re.Pattern:
    regex = pytest.importorskip("regex")
    return regex.compile(GPT2_REGEX_PATTERN)


def test_known_chunks() -> None:
    split = re.compile(gpt2_split_pattern())
    assert split.findall("Hello world's  42 ünïcode!!_x") == [
        "Hello", " world", "'s", " ", " 42", " ünïcode", "!!_", "x"]
    # numbers that are not decimal digits are numbers, not letters (\p{N})
    assert split.findall("x² ½ Ⅻ3") == ["x", "²", " ½", " Ⅻ3"]
    # U+001C..U+001F are spaces to str.isspace but not to GPT-2's \s
    assert split.findall("a\x1cb  \x1f") == ["a", "\x1c", "b", " ", " \x1f"]
    assert split.findall("\n\n  hi") == ["\n\n ", " hi"]


def test_every_code_point_is_classified_as_regex_does(reference) -> None:
    for bmp_only in (False, True):
        split = re.compile(gpt2_split_pattern(bmp_only))
        text = ASSIGNED if not bmp_only else "".join(c for c in ASSIGNED if c <= "\uffff")
        # each character alone, and between letters/spaces/digits, chunked alike
        for sep in ("", " ", "a", "1", "\n"):
            joined = sep.join(text)
            assert split.findall(joined) == reference.findall(joined), (bmp_only, sep)


@given(known_text)
def test_chunks_equal_regex(reference, text: str) -> None:
    assert re.findall(gpt2_split_pattern(), text) == reference.findall(text)
    if not has_astral(text):
        assert re.findall(gpt2_split_pattern(bmp_only=True), text) == reference.findall(text)


@given(st.text(st.characters(blacklist_categories=("Cs",))))
def test_chunks_cover_the_text(text: str) -> None:
    assert "".join(re.findall(gpt2_split_pattern(), text)) == text


def test_has_astral() -> None:
    assert not has_astral("") and not has_astral("plain") and not has_astral("Ünï\uffff")
    assert has_astral("emoji 🙂") and has_astral("\U00010000")
