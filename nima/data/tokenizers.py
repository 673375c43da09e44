r"""Tokenizers: text → list of integer ids → text.

Two tokenizers, both with the same small API (`train`, `encode`, `decode`, `save`, `load`):

- `CharTokenizer` — one id per distinct character of the training text (sorted), as nanoGPT's
  Shakespeare example uses. Tiny vocabulary, long sequences, and it cannot encode a character it
  never saw.
- `ByteBPETokenizer` — byte-level byte-pair encoding, as GPT-2 and minbpe: start from the 256
  byte values, so *any* UTF-8 text encodes, then learn merges of frequent adjacent pairs until
  the vocabulary reaches `vocab_size`. It also reads and writes GPT-2's own tokenizer files
  (`from_files` / `save_files`: `vocab.json` and `merges.txt`).

Both save to a plain-text file (a header line, then numbers); loading parses it and never
executes or unpickles anything. See docs/tokenizers.md for the algorithm step by step.
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import re
from collections.abc import Callable, Iterable

from nima.data.pretokenize import gpt2_split_pattern, has_astral
from nima.serialization import atomic_write_text

FORMAT_MAGIC = "nima-tokenizer"
FORMAT_VERSION = 1

# The pre-split patterns by name, each built on first use (see nima.data.pretokenize); called
# with bmp_only=True, the faster variant for text without code points above U+FFFF.
SPLIT_PATTERNS: dict[str, Callable[[bool], str]] = {"gpt2": gpt2_split_pattern}
GPT2_SPECIAL = "<|endoftext|>"  # GPT-2's one special token: document separator and padding


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


# --8<-- [start:bytes_to_unicode]
@functools.cache
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's table from the 256 byte values to 256 printable characters.

    The 188 bytes that are printable Latin-1 characters stand for themselves; the other 68
    (control codes, space, DEL, the non-breaking space, the soft hyphen) are given the
    characters U+0100, U+0101, ... in byte order. So a token of any bytes is a printable
    string without spaces — space (0x20) is `Ġ` (U+0120), newline `Ċ` — which is how
    `vocab.json` and `merges.txt` store tokens as text.

    Example:
        >>> table = bytes_to_unicode()
        >>> table[ord("a")], table[ord(" ")], table[ord("\\n")], table[0]
        ('a', 'Ġ', 'Ċ', 'Ā')
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in printable]
    table = {b: chr(b) for b in printable}
    table.update({b: chr(256 + n) for n, b in enumerate(others)})
    return dict(sorted(table.items()))
# --8<-- [end:bytes_to_unicode]


def _read_gpt2_files(
    vocab_path: str | os.PathLike[str], merges_path: str | os.PathLike[str]
) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Parse `vocab.json` (token string → id) and `merges.txt` (pairs, highest priority first),
    checking the format only; `from_files` checks that they fit together."""
    try:
        with open(vocab_path, encoding="utf-8") as f:
            vocab = json.load(f)
    except (UnicodeDecodeError, ValueError) as e:
        raise TokenizerFileError(f"{vocab_path}: not a JSON vocabulary file ({e})") from None
    if not isinstance(vocab, dict) or not all(
        isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in vocab.values()
    ):
        raise TokenizerFileError(
            f"{vocab_path}: expected a JSON object mapping token strings to non-negative int ids"
        )
    if len(set(vocab.values())) != len(vocab):
        seen: dict[int, str] = {}
        for token, i in vocab.items():
            if i in seen:
                raise TokenizerFileError(
                    f"{vocab_path}: id {i} is given to both {seen[i]!r} and {token!r}"
                )
            seen[i] = token
    try:
        with open(merges_path, encoding="utf-8", newline="\n") as f:
            lines = f.read().split("\n")
    except UnicodeDecodeError as e:
        raise TokenizerFileError(f"{merges_path}: not a UTF-8 merges file ({e})") from None
    first = 1 if lines[0].startswith("#version") else 0
    if lines[-1] == "":
        lines.pop()  # the newline that ends the last line
    merges: list[tuple[str, str]] = []
    for number, line in enumerate(lines[first:], start=first + 1):
        parts = line.split(" ")
        if len(parts) != 2 or not all(parts):
            raise TokenizerFileError(
                f"{merges_path}: line {number} should be two tokens separated by one space, "
                f"got {line!r}"
            )
        merges.append((parts[0], parts[1]))
    return vocab, merges


# --8<-- [start:bpe_merge_loop]
def bpe_merge_loop(ids: list[int], ranks: dict[tuple[int, int], int],
                   merged: list[int]) -> list[int]:
    """Apply merges to `ids` by priority: merge every occurrence of the pair of lowest rank,
    repeat until no adjacent pair has a merge.

    `ranks` maps a pair of ids to its merge's rank (0 merges first) and `merged[r]` is the id
    merge `r` makes. One round is a few calls that loop in C — pair the ids up (`pairwise`),
    look every pair's rank up with one `map` over the rank dict, `min` — instead of a Python
    loop over the pairs; the pair usually occurs once, and is then spliced in place.

    Example:
        >>> bpe_merge_loop([97, 97, 97, 98], {(97, 97): 0, (97, 98): 1}, [256, 257])
        [256, 257]
    """
    missing = len(merged)  # a rank above every merge's
    while len(ids) >= 2:
        pair_ranks = list(map(ranks.get, itertools.pairwise(ids), itertools.repeat(missing)))
        best = min(pair_ranks)
        if best == missing:
            break  # no pair of the chunk has a merge
        i = pair_ranks.index(best)
        if pair_ranks.count(best) == 1:
            ids[i : i + 2] = [merged[best]]  # the usual case: one occurrence, spliced in place
        else:
            ids = merge(ids, (ids[i], ids[i + 1]), merged[best])  # all, left to right
    return ids
# --8<-- [end:bpe_merge_loop]


class ByteBPETokenizer:
    """Byte-level BPE: every byte value has an id, and each merge makes one id from two.

    Trained here, ids 0–255 are the bytes and id `256 + k` is the `k`-th learned merge; read
    from GPT-2's files (`from_files`), ids are the files' own (GPT-2 numbers its bytes in a
    different order). `merges` maps a pair of ids to the merged id, in priority order.

    Special tokens (e.g. `<|endoftext|>`) get ids of their own outside `vocab`; they are found
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
        self._split, self._split_bmp = (
            (re.compile(SPLIT_PATTERNS[pattern](False)), re.compile(SPLIT_PATTERNS[pattern](True)))
            if pattern else (None, None))
        self.byte_ids: list[int] = list(range(256))  # byte value -> its id
        self.vocab: dict[int, bytes] = {i: bytes([i]) for i in range(256)}  # id -> its bytes
        self.merges: dict[tuple[int, int], int] = {}  # (id, id) -> merged id, by priority
        self._ranks: dict[tuple[int, int], int] = {}  # (id, id) -> its position in `merges`
        self._merged: list[int] = []  # merged id, by rank (`merges`' values, as a list)
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
        self._ranks[pair] = len(self.merges)
        self._merged.append(new_id)
        self.merges[pair] = new_id
        self.vocab[new_id] = self.vocab[pair[0]] + self.vocab[pair[1]]

    @property
    def vocab_size(self) -> int:
        """One more than the largest id (bytes, merges, special tokens): the size of a model's
        embedding table. With ids numbered without gaps, as here and in GPT-2, the number of
        ids."""
        return max([*self.vocab, *self.special_tokens.values()]) + 1

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
        """Add special tokens, each a string mapped to an id of its own (not a byte's or a
        merge's).

        Example:
            >>> tok = ByteBPETokenizer()
            >>> tok.register_special_tokens({"<|endoftext|>": 256})
            >>> tok.encode("hi<|endoftext|>")
            [104, 105, 256]
        """
        merged = {**self.special_tokens, **special_tokens}
        ids = list(merged.values())
        for token, i in merged.items():
            if not isinstance(token, str) or not token or "\n" in token or "\r" in token:
                raise ValueError(f"special token {token!r}: must be non-empty, without newlines")
            if not isinstance(i, int) or i < 0 or i in self.vocab:
                raise ValueError(
                    f"special token {token!r}: id {i!r} collides with the byte/merge ids "
                    f"(use an int >= {max(self.vocab) + 1})"
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
        split = self._split if has_astral(text) else self._split_bmp  # same chunks, faster
        return split.findall(text)

    # --8<-- [start:encode_chunk]
    def _encode_chunk(self, chunk: str) -> list[int]:
        """Encode one chunk: its bytes' ids, then the merges by priority (`bpe_merge_loop`)."""
        ids = list(map(self.byte_ids.__getitem__, chunk.encode("utf-8")))
        return bpe_merge_loop(ids, self._ranks, self._merged)

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

        Only Nima's numbering fits this format (bytes 0–255, merge `k` making `256 + k`); a
        tokenizer read from GPT-2's files is saved with `save_files`.
        """
        native = self.byte_ids == list(range(256)) and all(
            new_id == 256 + k for k, new_id in enumerate(self.merges.values()))
        if not native or len(self.vocab) != 256 + len(self.merges):
            raise ValueError(
                "ByteBPETokenizer.save: this tokenizer's ids are not Nima's numbering (bytes "
                "0-255, then the merges in order), as for one read from GPT-2's files: save it "
                "with save_files(vocab_path, merges_path)"
            )
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

    # --8<-- [start:from_files]
    @classmethod
    def from_files(
        cls,
        vocab_path: str | os.PathLike[str],
        merges_path: str | os.PathLike[str],
        special_tokens: Iterable[str] | None = None,
    ) -> ByteBPETokenizer:
        """GPT-2's tokenizer from its `vocab.json` and `merges.txt` (RoBERTa's pair too), with
        GPT-2's pre-split (`pattern="gpt2"`).

        Every token string becomes bytes through `bytes_to_unicode`; line `k` of `merges.txt`
        (after the `#version` line) is the merge of rank `k`, and the merged id is the one
        `vocab.json` gives the two strings joined. `special_tokens` name vocabulary entries
        that are matched whole in the text; by default `<|endoftext|>` when the vocabulary has
        it (as `transformers`' `GPT2Tokenizer`).

        Raises:
            TokenizerFileError: a malformed file; a byte without a token; a merge whose parts
                or result are not in the vocabulary; a token not made of byte characters.
        """
        vocab, merge_pairs = _read_gpt2_files(vocab_path, merges_path)
        if special_tokens is None:
            special_tokens = [GPT2_SPECIAL] if GPT2_SPECIAL in vocab else []
        special: dict[str, int] = {}
        for token in special_tokens:
            if token not in vocab:
                raise TokenizerFileError(
                    f"{vocab_path}: special token {token!r} is not in the vocabulary"
                )
            special[token] = vocab[token]
        table = bytes_to_unicode()
        byte_of = {char: b for b, char in table.items()}
        tok = cls(pattern="gpt2")
        tok.vocab = {}
        for token, i in vocab.items():
            if token in special:
                continue
            unknown = [char for char in token if char not in byte_of]
            if unknown or not token:
                raise TokenizerFileError(
                    f"{vocab_path}: token {token!r} (id {i}) is not made of GPT-2's 256 byte "
                    f"characters (e.g. {unknown[:1]}); a special token must be named in "
                    f"special_tokens"
                )
            tok.vocab[i] = bytes(byte_of[char] for char in token)
        missing = [b for b in range(256) if table[b] not in vocab or table[b] in special]
        if missing:
            raise TokenizerFileError(
                f"{vocab_path}: no token for byte {missing[0]:#04x} ({table[missing[0]]!r}); "
                f"a byte-level vocabulary has one for each of the 256 bytes"
            )
        tok.byte_ids = [vocab[table[b]] for b in range(256)]
        for rank, (a, b) in enumerate(merge_pairs):
            for part in (a, b, a + b):
                if part not in vocab or part in special:
                    raise TokenizerFileError(
                        f"{merges_path}: merge {rank} '{a} {b}': {part!r} is not a token of "
                        f"{vocab_path}"
                    )
            pair = (vocab[a], vocab[b])
            if pair in tok._ranks:
                raise TokenizerFileError(f"{merges_path}: merge '{a} {b}' appears twice")
            tok._ranks[pair] = rank
            tok._merged.append(vocab[a + b])
            tok.merges[pair] = vocab[a + b]
        tok.register_special_tokens(special)
        return tok

    # --8<-- [end:from_files]

    def save_files(
        self, vocab_path: str | os.PathLike[str], merges_path: str | os.PathLike[str]
    ) -> None:
        """Write `vocab.json` and `merges.txt` in GPT-2's format (each atomically), readable by
        `from_files` and by Hugging Face's tokenizers.

        Raises:
            ValueError: the tokenizer has no GPT-2 pre-split (the files imply it), or two ids
                stand for the same bytes (a file maps each token string to one id).
        """
        if self.pattern != "gpt2":
            raise ValueError(
                f"ByteBPETokenizer.save_files: GPT-2's files imply its pre-split, this "
                f"tokenizer has pattern={self.pattern!r}; train it with pattern='gpt2'"
            )
        table = bytes_to_unicode()

        def text(i: int) -> str:
            return "".join(table[b] for b in self.vocab[i])

        vocab: dict[str, int] = {}
        for token, i in [*((text(i), i) for i in self.vocab), *self.special_tokens.items()]:
            if token in vocab:
                raise ValueError(
                    f"ByteBPETokenizer.save_files: ids {vocab[token]} and {i} are both the "
                    f"token {token!r}; vocab.json can map it to one id only"
                )
            vocab[token] = i
        vocab = dict(sorted(vocab.items(), key=lambda item: item[1]))
        merges = [f"{text(a)} {text(b)}" for a, b in self.merges]
        atomic_write_text(vocab_path, json.dumps(vocab, ensure_ascii=False) + "\n")
        atomic_write_text(merges_path, "\n".join(["#version: 0.2", *merges, ""]))


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
