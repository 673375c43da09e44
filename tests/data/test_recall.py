"""Key-value recall: every query is answerable, far from its definition, seeded; the parser
and the accuracy-by-distance metric against oracle predictions; errors."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nima.data.recall import RecallBin, generate_recall, parse_recall, recall_accuracy


@given(n=st.integers(0, 30), low=st.integers(1, 300), extra=st.integers(0, 200),
       concurrent=st.integers(1, 5), seed=st.integers(0, 999))
@settings(max_examples=30)
def test_every_query_is_far_from_its_definition(n: int, low: int, extra: int, concurrent: int,
                                                seed: int) -> None:
    text = generate_recall(n, low, low + extra, concurrent, seed)
    queries = parse_recall(text)  # raises if a value is not the one last set
    assert len(queries) == n == text.count("\nset ") + text.startswith("set ")
    longest_line = max((len(line) + 1 for line in text.splitlines()), default=0)
    for q in queries:
        assert low <= q.distance <= low + extra + longest_line
        assert text[q.position:q.position + 2] == q.value and q.value.isdigit()


def test_the_key_was_seen_more_than_block_size_tokens_earlier() -> None:
    block_size = 256
    queries = parse_recall(generate_recall(200, block_size + 1, 2 * block_size, seed=1))
    assert min(q.distance for q in queries) > block_size


def test_seeded_and_only_filler_words_between() -> None:
    a = generate_recall(20, 50, 80, seed=7)
    assert a == generate_recall(20, 50, 80, seed=7) != generate_recall(20, 50, 80, seed=8)
    for line in a.splitlines():
        filler = line.islower() and not any(c.isdigit() for c in line)
        assert line[:4] in ("set ", "get ") or filler


def test_parse_refuses_a_wrong_value() -> None:
    with pytest.raises(ValueError, match="asks for 12, but QX was set to 47"):
        parse_recall("set QX 47\nthe fox\nget QX 12\n")
    assert parse_recall("get QX 12\n") == []  # its definition is not in the text


def test_recall_accuracy_by_distance_against_oracle_predictions() -> None:
    text = "set AB 12\nthe fox\nget AB 12\nset CD 34\n" + "a " * 20 + "\nget CD 34\n"
    vocab = sorted(set(text))
    token_of = {c: i for i, c in enumerate(vocab)}
    logits = np.zeros((len(text), len(vocab)))
    for i, c in enumerate(text):
        logits[i, token_of[c]] = 1.0  # a perfect model
    queries = parse_recall(text)
    assert [q.distance for q in queries] == [18, 51]
    assert recall_accuracy(text, logits, token_of, [0, 30, 100]) == [
        RecallBin(0, 30, 1, 1.0), RecallBin(30, 100, 1, 1.0)]
    logits[queries[1].position + 1, token_of["a"]] = 5.0  # the second digit goes wrong
    bins = recall_accuracy(text, logits, token_of, [0, 30, 100, 200])
    assert [b.accuracy for b in bins[:2]] == [1.0, 0.0] and bins[2].count == 0
    assert np.isnan(bins[2].accuracy)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"min_distance": 0}, "expected 1 <= min_distance <= max_distance, got min_distance=0"),
    ({"min_distance": 10, "max_distance": 5}, "min_distance=10, max_distance=5"),
    ({"n_queries": -1}, "n_queries=-1"),
    ({"concurrent": 0}, "concurrent=0"),
])
def test_bad_settings_name_the_key_and_value(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        generate_recall(**kwargs)


def test_bad_metric_arguments() -> None:
    with pytest.raises(ValueError, match=r"expected logits of shape \(4, vocab\)"):
        recall_accuracy("abcd", np.zeros((3, 2)), {}, [0, 1])
    with pytest.raises(ValueError, match=r"edges must be increasing, at least two, got \[5, 5\]"):
        recall_accuracy("abcd", np.zeros((4, 2)), {}, [5, 5])
