"""The synthetic hierarchical corpus: deterministic, grammatical, and learnable."""

import itertools
import math

import pytest

from nima.data.synthetic import (
    TOPICS,
    char_entropy,
    generate_corpus,
    parse_corpus,
    parse_sentence,
    valid_sentence_fraction,
    valid_words,
)


def test_deterministic_per_seed() -> None:
    assert generate_corpus(50, seed=3) == generate_corpus(50, seed=3)
    assert generate_corpus(50, seed=3) != generate_corpus(50, seed=4)


def test_every_section_and_sentence_parses() -> None:
    text = generate_corpus(300, seed=0)
    sections = parse_corpus(text)
    assert len(sections) == 300
    assert {topic for topic, _ in sections} == set(TOPICS)  # every topic appears
    for topic, sentences in sections:
        assert 3 <= len(sentences) <= 6
        for s in sentences:
            assert parse_sentence(s, topic)  # nouns and verbs from this section's topic only
    assert valid_sentence_fraction(text) == 1.0


def test_words_come_from_the_vocabularies() -> None:
    text = generate_corpus(100, seed=1)
    words = {w.rstrip(".") for line in text.splitlines() if line and line[0] != "#"
             for w in line.split()}
    assert words <= valid_words()


@pytest.mark.parametrize(
    "sentence, topic, ok",
    [
        ("the ship sails a wave.", "sea", True),
        ("every small fox hides the old owl near a path.", "forest", True),
        ("the ship sails a wave", "sea", False),  # no full stop
        ("the ship sails a fox.", "sea", False),  # off-topic noun
        ("ship sails a wave.", "sea", False),  # missing determiner
        ("the ship sails.", "sea", False),  # missing object
        ("the ship sails a wave near.", "sea", False),  # dangling preposition
        ("the ship sails a wave.", "moon", False),  # unknown topic
    ],
)
def test_parse_sentence(sentence: str, topic: str, ok: bool) -> None:
    assert parse_sentence(sentence, topic) is ok


def test_parse_corpus_names_the_bad_line() -> None:
    text = generate_corpus(3, seed=0)
    bad = text.replace(".", " banana.", 1)
    with pytest.raises(ValueError, match="banana"):
        parse_corpus(bad)
    with pytest.raises(ValueError, match="not '# <topic>'"):
        parse_corpus("hello\nthe ship sails a wave.\n")


def test_valid_sentence_fraction_of_a_sample() -> None:
    sample = "# sea\nthe ship sails a wave.\nthe ship sails a fox.\nqwerty\n"
    assert valid_sentence_fraction(sample) == pytest.approx(1 / 3)
    assert valid_sentence_fraction("") == 0.0


def test_learnable_low_entropy_vs_uniform() -> None:
    text = generate_corpus(200, seed=0)
    uniform = math.log(len(set(text)))
    h = [char_entropy(text, order=k) for k in range(5)]
    assert all(a >= b - 1e-12 for a, b in itertools.pairwise(h))  # context only helps
    assert h[0] < uniform
    assert h[4] < 0.2 * uniform  # a 4-character context leaves little to guess


def test_char_entropy_known_answers() -> None:
    assert char_entropy("aaaa") == 0.0
    assert char_entropy("abab") == pytest.approx(math.log(2))
    assert char_entropy("abab", order=1) == 0.0
    with pytest.raises(ValueError, match="too short"):
        char_entropy("ab", order=2)
