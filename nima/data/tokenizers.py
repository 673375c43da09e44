r"""Tokenizers: text → list of integer ids → text.

Two tokenizers, both with the same small API (`train`, `encode`, `decode`, `save`, `load`):

- `CharTokenizer` — one id per distinct character of the training text (sorted), as nanoGPT's
  Shakespeare example uses. Tiny vocabulary, long sequences, and it cannot encode a character it
  never saw.
- `ByteBPETokenizer` — byte-level byte-pair encoding, as GPT-2 and minbpe: start from the 256
  byte values, so *any* UTF-8 text encodes, then learn merges of frequent adjacent pairs until
  the vocabulary reaches `vocab_size`.

Both save to a plain-text file (a header line, then numbers); loading parses it and never
executes or unpickles anything. See docs/tokenizers.md for the algorithm step by step.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Iterable

from nima.serialization import atomic_write_text

FORMAT_MAGIC = "nima-tokenizer"
FORMAT_VERSION = 1

# --8<-- [start:gpt2_pattern]
# GPT-2's split pattern is written with the `regex` module's Unicode classes:
#   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
# Python's `re` has no \p{...}, so the classes are rebuilt from \w, \d and \s:
#   letters  \p{L}               ->  [^\W\d_]     (word characters minus digits and underscore)
#   numbers  \p{N}               ->  \d           (Unicode decimal digits)
#   other    [^\s\p{L}\p{N}]     ->  (?:_|[^\s\w]) (neither space nor word character, or "_")
GPT2_SPLIT_PATTERN = (
    r"""'s|'t|'re|'ve|'m|'ll|'d"""  # common English contractions
    r"""| ?[^\W\d_]+| ?\d+| ?(?:_|[^\s\w])+"""  # letters, digits, other (optional leading space)
    r"""|\s+(?!\S)|\s+"""  # runs of whitespace (the last space goes with the next word)
)
# --8<-- [end:gpt2_pattern]
SPLIT_PATTERNS: dict[str, str] = {"gpt2": GPT2_SPLIT_PATTERN}


class TokenizerFileError(ValueError):
    """A tokenizer file is malformed, truncated, or of the wrong kind; the message says which."""


# --8<-- [start:get_stats]
def get_stats(
    ids: list[int], counts: dict[tuple[int, int], int] | None = None, weight: int = 1
) -> dict[tuple[int, int], int]:
    """Count every adjacent pair of ids (overlapping pairs included).

    `counts` is updated in place when given (to add up over many chunks), each pair counting
    `weight` times (the number of times the chunk occurs in the text).

    Example:
        >>> get_stats([1, 2, 3, 1, 2])
        {(1, 2): 2, (2, 3): 1, (3, 1): 1}
        >>> get_stats([97, 97, 97])
        {(97, 97): 2}
    """
    counts = {} if counts is None else counts
    for pair in itertools.pairwise(ids):
        counts[pair] = counts.get(pair, 0) + weight
    return counts


# --8<-- [end:get_stats]


# --8<-- [start:merge]
def merge(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """Replace every occurrence of `pair` in `ids` by `new_id`, scanning left to right.

    Overlaps are resolved from the left: in `a a a` the pair `(a, a)` merges once.

    Example:
        >>> merge([1, 2, 3, 1, 2], (1, 2), 4)
        [4, 3, 4]
        >>> merge([97, 97, 97], (97, 97), 256)
        [256, 97]
    """
    out: list[int] = []
    i = 0
    while i < len(ids):
        if i + 1 < len(ids) and ids[i] == pair[0] and ids[i + 1] == pair[1]:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


# --8<-- [end:merge]


def _read_header(path: str | os.PathLike[str], kind: str) -> tuple[dict[str, str], list[str]]:
    """Read a tokenizer file; check its magic word, kind and version; return (header, body).

    Lines end in LF, as `save` writes them, or CRLF: no line's content ends in CR (special
    tokens hold none), so a CR before the LF is dropped.
    """
    try:
        with open(path, encoding="utf-8", newline="\n") as f:
            lines = f.read().split("\n")
    except UnicodeDecodeError as e:
        raise TokenizerFileError(f"{path}: not a Nima tokenizer file (not UTF-8 text)") from e
    lines = [line.removesuffix("\r") for line in lines]  # CRLF (an editor, git on Windows)
    first = lines[0].split(" ")
    if first[0] != FORMAT_MAGIC:
        raise TokenizerFileError(
            f"{path}: not a Nima tokenizer file (first line should start with {FORMAT_MAGIC!r})"
        )
    try:
        header = dict(field.split("=", 1) for field in first[1:])
    except ValueError as e:
        raise TokenizerFileError(f"{path}: malformed header line {lines[0]!r}") from e
    if header.get("kind") != kind:
        raise TokenizerFileError(
            f"{path}: this is a {header.get('kind')!r} tokenizer file, expected {kind!r}"
        )
    if header.get("version") != str(FORMAT_VERSION):
        raise TokenizerFileError(
            f"{path}: unsupported format version {header.get('version')!r} "
            f"(this Nima reads version {FORMAT_VERSION})"
        )
    if len(lines) < 2 or lines[-1] != "" or lines[-2] != "end":
        raise TokenizerFileError(f"{path}: truncated file (no final 'end' line)")
    return header, lines[1:-2]


def _read_section(path: object, body: list[str], pos: int, name: str) -> tuple[list[str], int]:
    """Read a `name COUNT` line at `body[pos]` and return the COUNT lines after it."""
    parts = body[pos].split(" ") if pos < len(body) else []
    if len(parts) != 2 or parts[0] != name or not parts[1].isdigit():
        raise TokenizerFileError(f"{path}: expected a '{name} COUNT' line at line {pos + 2}")
    n = int(parts[1])
    if pos + 1 + n > len(body):
        raise TokenizerFileError(f"{path}: truncated {name} section (expected {n} lines)")
    return body[pos + 1 : pos + 1 + n], pos + 1 + n


def _parse_ints(path: object, line: str, n: int, what: str) -> list[int]:
    """Parse `line` as exactly `n` space-separated non-negative integers."""
    parts = line.split(" ")
    if len(parts) != n or not all(p.isdigit() for p in parts):
        raise TokenizerFileError(f"{path}: malformed {what} line {line!r}")
    return [int(p) for p in parts]


class CharTokenizer:
    """Character-level tokenizer: id `i` is the `i`-th of the sorted distinct training characters.

    Example:
        >>> tok = CharTokenizer.train("hello")
        >>> tok.chars
        ['e', 'h', 'l', 'o']
        >>> tok.encode("hole")
        [1, 3, 2, 0]
        >>> tok.decode([1, 0, 2, 2, 3])
        'hello'
    """

    kind = "char"

    def __init__(self, chars: Iterable[str]) -> None:
        self.chars: list[str] = list(chars)
        self.stoi: dict[str, int] = {ch: i for i, ch in enumerate(self.chars)}
        if len(self.stoi) != len(self.chars) or any(len(ch) != 1 for ch in self.chars):
            raise ValueError("CharTokenizer: chars must be distinct single characters")

    @classmethod
    def train(cls, text: str) -> CharTokenizer:
        """Build the vocabulary from the distinct characters of `text`, in sorted order."""
        return cls(sorted(set(text)))

    @property
    def vocab_size(self) -> int:
        """Number of ids (distinct characters)."""
        return len(self.chars)

    def encode(self, text: str) -> list[int]:
        """Map each character to its id; a character outside the vocabulary raises `ValueError`."""
        try:
            return [self.stoi[ch] for ch in text]
        except KeyError as e:
            ch = e.args[0]
            raise ValueError(
                f"CharTokenizer.encode: character {ch!r} (U+{ord(ch):04X}) at position "
                f"{text.index(ch)} is not in the vocabulary of {self.vocab_size} characters"
            ) from None

    def decode(self, ids: Iterable[int]) -> str:
        """Map ids back to characters; an id outside `[0, vocab_size)` raises `ValueError`."""
        out = []
        for i in ids:
            if not 0 <= i < len(self.chars):
                raise ValueError(
                    f"CharTokenizer.decode: id {i} out of range [0, {self.vocab_size})"
                )
            out.append(self.chars[i])
        return "".join(out)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the vocabulary as code points, one per line (atomically)."""
        lines = [f"{FORMAT_MAGIC} kind=char version={FORMAT_VERSION}", f"chars {len(self.chars)}"]
        lines += [str(ord(ch)) for ch in self.chars]
        atomic_write_text(path, "\n".join([*lines, "end", ""]))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> CharTokenizer:
        """Read a file written by `save`; anything else raises `TokenizerFileError`."""
        _, body = _read_header(path, cls.kind)
        lines, pos = _read_section(path, body, 0, "chars")
        if pos != len(body):
            raise TokenizerFileError(f"{path}: unexpected lines after the chars section")
        codes = [_parse_ints(path, line, 1, "character")[0] for line in lines]
        try:
            return cls(chr(c) for c in codes)
        except (ValueError, OverflowError) as e:
            raise TokenizerFileError(f"{path}: invalid character list ({e})") from e


class ByteBPETokenizer:
    """Byte-level BPE: ids 0–255 are the bytes, id `256 + k` is the `k`-th learned merge.

    Special tokens (e.g. `<|endoftext|>`) get ids of their own above the merges; they are found
    in the text before anything else and are never split or merged.

    Example:
        >>> tok = ByteBPETokenizer.train("aaabdaaabac", vocab_size=259)
        >>> tok.merges
        {(97, 97): 256, (97, 98): 257, (256, 257): 258}
        >>> tok.encode("aaabdaaabac")
        [258, 100, 258, 97, 99]
        >>> tok.decode([258, 100])
        'aaabd'
    """

    kind = "bpe"

    def __init__(
        self, merges: dict[tuple[int, int], int] | None = None, pattern: str | None = None
    ) -> None:
        if pattern is not None and pattern not in SPLIT_PATTERNS:
            raise ValueError(
                f"ByteBPETokenizer: unknown pattern {pattern!r}; use None or one of "
                f"{sorted(SPLIT_PATTERNS)}"
            )
        self.pattern = pattern
        self._split = re.compile(SPLIT_PATTERNS[pattern]) if pattern else None
        self.merges: dict[tuple[int, int], int] = {}
        self.vocab: dict[int, bytes] = {i: bytes([i]) for i in range(256)}
        for pair, new_id in (merges or {}).items():
            self._add_merge(pair, new_id)
        self.special_tokens: dict[str, int] = {}
        self._special_re: re.Pattern[str] | None = None
        self._cache: dict[str, list[int]] = {}

    def _add_merge(self, pair: tuple[int, int], new_id: int) -> None:
        if new_id != 256 + len(self.merges) or not all(0 <= p < new_id for p in pair):
            raise ValueError(
                f"ByteBPETokenizer: merge {pair} -> {new_id} out of order (expected id "
                f"{256 + len(self.merges)} made of smaller ids)"
            )
        self.merges[pair] = new_id
        self.vocab[new_id] = self.vocab[pair[0]] + self.vocab[pair[1]]

    @property
    def vocab_size(self) -> int:
        """Number of ids: 256 bytes + merges + special tokens."""
        return len(self.vocab) + len(self.special_tokens)

    # --8<-- [start:train]
    @classmethod
    def train(cls, text: str, vocab_size: int, pattern: str | None = None) -> ByteBPETokenizer:
        """Learn `vocab_size - 256` merges from `text`.

        Each step counts the adjacent pairs over all chunks and merges the most frequent one;
        a tie goes to the lowest pair (smallest first id, then second), so training is
        deterministic. Training stops early if no pair is left to merge.
        """
        if not isinstance(vocab_size, int) or vocab_size < 256:
            raise ValueError(
                f"ByteBPETokenizer.train: vocab_size must be an int >= 256 (the byte tokens), "
                f"got {vocab_size!r}"
            )
        tok = cls(pattern=pattern)
        # Split into chunks (merges never cross a chunk boundary); identical chunks are
        # counted once, with their number of occurrences as a weight.
        chunk_counts: dict[str, int] = {}
        for chunk in tok._chunks(text):
            chunk_counts[chunk] = chunk_counts.get(chunk, 0) + 1
        chunks = [list(chunk.encode("utf-8")) for chunk in chunk_counts]
        weights = list(chunk_counts.values())
        for new_id in range(256, vocab_size):
            # 1. count every adjacent pair, over all chunks
            stats: dict[tuple[int, int], int] = {}
            for ids, w in zip(chunks, weights, strict=True):
                get_stats(ids, stats, w)
            if not stats:
                break
            # 2. pick the most frequent pair (ties: the lowest pair)
            pair = min(stats, key=lambda p: (-stats[p], p))
            # 3. replace it everywhere by a new id, and remember the merge
            chunks = [merge(ids, pair, new_id) if len(ids) > 1 else ids for ids in chunks]
            tok._add_merge(pair, new_id)
        return tok

    # --8<-- [end:train]

    def register_special_tokens(self, special_tokens: dict[str, int]) -> None:
        """Add special tokens, each a string mapped to an id above the merges.

        Example:
            >>> tok = ByteBPETokenizer()
            >>> tok.register_special_tokens({"<|endoftext|>": 256})
            >>> tok.encode("hi<|endoftext|>")
            [104, 105, 256]
        """
        merged = {**self.special_tokens, **special_tokens}
        ids = list(merged.values())
        for token, i in merged.items():
            if not token or "\n" in token or "\r" in token:
                raise ValueError(f"special token {token!r}: must be non-empty, without newlines")
            if not isinstance(i, int) or i < len(self.vocab):
                raise ValueError(
                    f"special token {token!r}: id {i!r} collides with the {len(self.vocab)} "
                    f"byte/merge ids (use an int >= {len(self.vocab)})"
                )
            if ids.count(i) > 1:
                raise ValueError(f"special token {token!r}: id {i} is used twice")
        self.special_tokens = merged
        # longest first, so a special token that contains another one wins
        alternatives = sorted(merged, key=len, reverse=True)
        self._special_re = (
            re.compile("(" + "|".join(map(re.escape, alternatives)) + ")") if merged else None
        )

    def _chunks(self, text: str) -> list[str]:
        """Split ordinary text (no special tokens) into the chunks merges stay inside."""
        if self._split is None:
            return [text] if text else []
        return self._split.findall(text)

    # --8<-- [start:encode_chunk]
    def _encode_chunk(self, chunk: str) -> list[int]:
        """Encode one chunk: apply the learned merges in the order they were learned."""
        ids = list(chunk.encode("utf-8"))
        while len(ids) >= 2:
            stats = get_stats(ids)
            # the pair merged earliest in training (lowest new id) goes first
            pair = min(stats, key=lambda p: self.merges.get(p, float("inf")))
            if pair not in self.merges:
                break  # nothing left to merge
            ids = merge(ids, pair, self.merges[pair])
        return ids

    # --8<-- [end:encode_chunk]

    def encode(self, text: str) -> list[int]:
        """Encode `text`: special tokens first, then the regex chunks, then the merges per chunk."""
        parts = self._special_re.split(text) if self._special_re else [text]
        out: list[int] = []
        for k, part in enumerate(parts):
            if k % 2 == 1:  # re.split puts the captured special tokens at odd positions
                out.append(self.special_tokens[part])
                continue
            for chunk in self._chunks(part):
                ids = self._cache.get(chunk)
                if ids is None:
                    ids = self._encode_chunk(chunk)
                    if self._split is not None:  # regex chunks repeat (words); whole texts don't
                        self._cache[chunk] = ids
                out.extend(ids)
        return out

    def decode(self, ids: Iterable[int]) -> str:
        """Join the bytes of each id and decode as UTF-8; invalid sequences become U+FFFD."""
        special = {i: tok.encode("utf-8") for tok, i in self.special_tokens.items()}
        pieces = []
        for i in ids:
            piece = self.vocab.get(i)
            if piece is None:
                piece = special.get(i)
            if piece is None:
                raise ValueError(f"ByteBPETokenizer.decode: unknown id {i}")
            pieces.append(piece)
        return b"".join(pieces).decode("utf-8", errors="replace")

    # --8<-- [start:save]
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the tokenizer as plain text (atomically).

        The format: a header line, the merges in order (`a b` makes id 256, 257, ...), the
        special tokens (`id token`), and a final `end` line that reveals truncation::

            nima-tokenizer kind=bpe version=1 pattern=gpt2
            merges 2
            97 97
            256 98
            special 1
            258 <|endoftext|>
            end
        """
        lines = [
            f"{FORMAT_MAGIC} kind=bpe version={FORMAT_VERSION} pattern={self.pattern or 'none'}",
            f"merges {len(self.merges)}",
            *(f"{a} {b}" for a, b in self.merges),
            f"special {len(self.special_tokens)}",
            *(f"{i} {token}" for token, i in self.special_tokens.items()),
            "end",
            "",
        ]
        atomic_write_text(path, "\n".join(lines))

    # --8<-- [end:save]

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ByteBPETokenizer:
        """Read a file written by `save`; anything else raises `TokenizerFileError`."""
        header, body = _read_header(path, cls.kind)
        pattern = header.get("pattern", "none")
        if pattern != "none" and pattern not in SPLIT_PATTERNS:
            raise TokenizerFileError(f"{path}: unknown pattern {pattern!r}")
        merge_lines, pos = _read_section(path, body, 0, "merges")
        special_lines, pos = _read_section(path, body, pos, "special")
        if pos != len(body):
            raise TokenizerFileError(f"{path}: unexpected lines after the special section")
        try:
            tok = cls(pattern=None if pattern == "none" else pattern)
            for k, line in enumerate(merge_lines):
                a, b = _parse_ints(path, line, 2, "merge")
                tok._add_merge((a, b), 256 + k)
            special = {}
            for line in special_lines:
                i, _, token = line.partition(" ")
                special[token] = _parse_ints(path, i, 1, "special token")[0]
            tok.register_special_tokens(special)
        except TokenizerFileError:
            raise
        except ValueError as e:
            raise TokenizerFileError(f"{path}: inconsistent contents ({e})") from e
        return tok


def load_tokenizer(path: str | os.PathLike[str]) -> CharTokenizer | ByteBPETokenizer:
    """Load either kind of tokenizer file, dispatching on the header's `kind=`."""
    kinds = {cls.kind: cls for cls in (CharTokenizer, ByteBPETokenizer)}
    with open(path, "rb") as f:
        first = f.readline().decode("utf-8", errors="replace").split()
    kind = next((field[5:] for field in first[1:] if field.startswith("kind=")), None)
    if not first or first[0] != FORMAT_MAGIC or kind not in kinds:
        raise TokenizerFileError(
            f"{path}: not a Nima tokenizer file of a known kind (expected kind=char or kind=bpe)"
        )
    return kinds[kind].load(path)
