"""Pairs data for the encoder-decoder: the reversal task, the pairs-file reader and its errors,
the tokenizer with NUL/STX/ETX at 0/1/2, batches by hand, and the train/validation split."""

import json

import numpy as np
import pytest

from nima.data.pairs import (
    BOS,
    EOS,
    PAD,
    PairDataset,
    pair_tokenizer,
    prepare_pairs,
    read_pairs,
    reversal_pairs,
)
from nima.data.tokenizers import CharTokenizer, load_tokenizer


def test_reversal_pairs_are_reversals(tmp_path) -> None:
    text = reversal_pairs(50, seed=3)
    assert text == reversal_pairs(50, seed=3) != reversal_pairs(50, seed=4)
    path = tmp_path / "pairs.tsv"
    path.write_text(text)
    pairs = read_pairs(path)
    assert len(pairs) == 50
    assert all(t == s[::-1] and 4 <= len(s) <= 8 and set(s) <= set("abcdefghij")
               for s, t in pairs)


def test_tokenizer_and_a_batch_by_hand() -> None:
    tok = pair_tokenizer([("ab", "ba"), ("c", "c")])
    assert tok.chars == ["\x00", "\x02", "\x03", "a", "b", "c"]
    data = PairDataset([("ab", "ba"), ("c", "c")], tok)
    src, tgt_in, tgt_out = data.batch(np.array([0, 1]))
    np.testing.assert_array_equal(src, [[3, 4], [5, PAD]])
    np.testing.assert_array_equal(tgt_in, [[BOS, 4, 3], [BOS, 5, PAD]])
    np.testing.assert_array_equal(tgt_out, [[4, 3, EOS], [5, EOS, PAD]])
    assert (data.max_source, data.max_target) == (2, 3)
    assert [b[0].shape[0] for b in data.batches(1)] == [1, 1]
    drawn = data.get_batch(5, np.random.default_rng(0))
    assert drawn[0].shape[0] == 5
    with pytest.raises(ValueError, match="NUL, STX, ETX at ids 0, 1, 2"):
        PairDataset([("ab", "ba")], CharTokenizer("ab"))
    with pytest.raises(ValueError, match="no pairs"):
        PairDataset([], tok)


@pytest.mark.parametrize(("line", "match"), [
    ("no tab here", r"pairs.tsv:2: expected 'source<TAB>target'"),
    ("a\tb\tc", "expected 'source<TAB>target'"),
    ("\tb", "expected 'source<TAB>target'"),
    ("a\x02\tb", "holds NUL, STX or ETX"),
])
def test_bad_pairs_files_name_the_line(tmp_path, line, match) -> None:
    path = tmp_path / "pairs.tsv"
    path.write_text(f"ok\tko\n{line}\n")
    with pytest.raises(ValueError, match=match):
        read_pairs(path)


def test_prepare_pairs_splits_at_the_end(tmp_path) -> None:
    source = tmp_path / "pairs.tsv"
    source.write_text(reversal_pairs(20, seed=1))
    meta = prepare_pairs(source, tmp_path / "out", val_fraction=0.25)
    assert (meta["train_pairs"], meta["val_pairs"], meta["kind"]) == (15, 5, "pairs")
    assert json.loads((tmp_path / "out" / "meta.json").read_text()) == meta
    pairs = read_pairs(source)
    assert read_pairs(tmp_path / "out" / "val.tsv") == pairs[15:]
    assert load_tokenizer(tmp_path / "out" / "tokenizer.txt").chars[:3] == ["\x00", "\x02",
                                                                            "\x03"]
    with pytest.raises(ValueError, match="leave no validation pairs"):
        prepare_pairs(source, tmp_path / "out", val_fraction=0.0)
