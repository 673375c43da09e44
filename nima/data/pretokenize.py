r"""GPT-2's pre-tokenisation regex, exactly, with Python's built-in `re`.

Before BPE, GPT-2 cuts text into chunks (words with their leading space, runs of digits, runs of
punctuation, whitespace) and merges never cross a chunk boundary. Its pattern, also used by
RoBERTa and Hugging Face's `ByteLevel` pre-tokenizer, is written for the third-party `regex`
module:

    's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+

`re` has no `\p{...}` classes, and its `\s` is not `regex`'s. What `re` does have, for `str`
patterns (checked over every code point in `tests/data/test_pretokenize.py`):

* `\w` is every letter (`L*`), every number (`N*`) and `_`; `\d` is the decimal digits (`Nd`);
* `\s` is `str.isspace`: the Unicode `White_Space` property (which `regex`'s `\s` is) plus the
  four information separators U+001C–U+001F.

So the three classes are rebuilt from those and one list computed from `unicodedata`, the
numbers that are not decimal digits ($N_{lo}$ = categories `Nl` and `No`: `²`, `½`, `Ⅻ`, ...):

| `regex` | `re` |
|---|---|
| `\p{L}` | `[^\W\d_` $N_{lo}$ `]` — word characters minus digits, `_` and the other numbers |
| `\p{N}` | `[\d` $N_{lo}$ `]` |
| `\s` | `[^\S\x1c-\x1f]` — `re`'s spaces minus the separators |
| `\S` | `[\S\x1c-\x1f]` |
| `[^\s\p{L}\p{N}]` | `(?:[^\s\w]\|[_\x1c-\x1f])` — neither space nor letter/number |

The result matches `regex` exactly for every character this Python's `unicodedata` knows
(Unicode 14.0 for Python 3.11); a character assigned in a later Unicode version than that is
"other" here, where a newer `regex` may call it a letter.
"""

from __future__ import annotations

import functools
import sys
import unicodedata

# --8<-- [start:gpt2_original]
GPT2_REGEX_PATTERN = (  # GPT-2's encoder.py, for the `regex` module
    r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
)
# --8<-- [end:gpt2_original]


def _class_ranges(codepoints: list[int]) -> str:
    r"""Sorted code points as the inside of a character class, runs collapsed to ranges.

    Example:
        >>> _class_ranges([0xB2, 0xB3, 0xB9])
        '\\U000000b2-\\U000000b3\\U000000b9'
    """
    runs: list[list[int]] = []
    for c in codepoints:
        if runs and runs[-1][1] == c - 1:
            runs[-1][1] = c
        else:
            runs.append([c, c])
    return "".join(
        f"\\U{a:08x}" if a == b else f"\\U{a:08x}-\\U{b:08x}" for a, b in runs
    )


@functools.cache
def _other_numbers() -> tuple[int, ...]:
    """The code points of Unicode categories `Nl` and `No` (a scan of `unicodedata`)."""
    category = unicodedata.category
    return tuple(c for c in range(sys.maxunicode + 1) if category(chr(c)) in ("Nl", "No"))


# --8<-- [start:gpt2_pattern]
@functools.cache
def gpt2_split_pattern(bmp_only: bool = False) -> str:
    """GPT-2's split pattern for `re`: the same chunks as `GPT2_REGEX_PATTERN` under `regex`.

    Built on first use (a scan of `unicodedata`, about 0.3 s, once) and cached. `bmp_only=True`
    leaves the code points above U+FFFF out of the number list: the chunks are then the same
    only for text without such characters (emoji are among them), and `re` finds them about
    twice as fast, because each class compiles to one lookup table instead of a table plus a
    list of ranges tried one by one.

    Example:
        >>> re.findall(gpt2_split_pattern(), "Hello world's  42 ½!!")
        ['Hello', ' world', "'s", ' ', ' 42', ' ½', '!!']
    """
    other_numbers = _class_ranges(  # N_lo: Nl and No, the numbers \d leaves out
        [c for c in _other_numbers() if not bmp_only or c <= 0xFFFF])
    letter = rf"[^\W\d_{other_numbers}]"  # \p{L}
    number = rf"[\d{other_numbers}]"  # \p{N}
    other = r"(?:[^\s\w]|[_\x1c-\x1f])"  # [^\s\p{L}\p{N}]
    space, non_space = r"[^\S\x1c-\x1f]", r"[\S\x1c-\x1f]"  # regex's \s and \S
    return (
        r"""'s|'t|'re|'ve|'m|'ll|'d"""  # common English contractions
        rf"""| ?{letter}+| ?{number}+| ?{other}+"""  # letters, numbers, other (one space before)
        rf"""|{space}+(?!{non_space})|{space}+"""  # whitespace (its last space joins the next word)
    )
# --8<-- [end:gpt2_pattern]


def has_astral(text: str) -> bool:
    """Whether `text` holds a code point above U+FFFF (where a `bmp_only` pattern may split
    differently); O(1) for ASCII text, one pass otherwise."""
    return not text.isascii() and max(text) > "\uffff"
