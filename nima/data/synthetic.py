r"""A synthetic corpus with hierarchical (tree-structured) patterns, for fast training tests.

Text is drawn from a small probabilistic grammar. Each *section* picks a topic, and the topic
fixes which nouns and verbs its sentences may use — a decision at the root of the tree that
constrains every leaf beneath it::

    corpus   := section ("\n" section)*
    section  := "# " TOPIC "\n" sentence{3..6}          one sentence per line
    sentence := NP " " VP "."
    NP       := DET " " [ADJ " "] NOUN[TOPIC]            the adjective with probability 1/2
    VP       := VERB[TOPIC] " " NP [" " PREP " " NP]     the prepositional phrase with p = 1/3

The words come from fixed vocabularies (`VOCAB`), so a model that has learned the structure
writes only valid words (`valid_words`), sentences that parse (`parse_sentence`) and topics
whose sentences stay on topic. `char_entropy` estimates how predictable the text is, to compare
a trained model's loss with the uniform baseline $\ln |\text{chars}|$.

Example:
    >>> text = generate_corpus(n_sections=1, seed=0)
    >>> text.splitlines()[0].startswith("# ")
    True
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np

__all__ = [
    "TOPICS",
    "VOCAB",
    "char_entropy",
    "generate_corpus",
    "parse_corpus",
    "parse_sentence",
    "valid_sentence_fraction",
    "valid_words",
]

# --8<-- [start:vocab]
VOCAB: dict[str, tuple[str, ...]] = {
    "det": ("the", "a", "every"),
    "adj": ("small", "old", "red", "quiet"),
    "prep": ("near", "under", "with"),
}
TOPICS: dict[str, dict[str, tuple[str, ...]]] = {
    "sea": {"noun": ("ship", "wave", "gull", "sailor"), "verb": ("sails", "rocks", "sees")},
    "forest": {"noun": ("tree", "fox", "owl", "path"), "verb": ("hides", "watches", "finds")},
    "city": {"noun": ("tower", "train", "clerk", "market"), "verb": ("builds", "passes", "hears")},
}
# --8<-- [end:vocab]


def _noun_phrase(rng: np.random.Generator, topic: str) -> list[str]:
    """NP := DET [ADJ] NOUN[topic]."""
    words = [str(rng.choice(VOCAB["det"]))]
    if rng.random() < 0.5:
        words.append(str(rng.choice(VOCAB["adj"])))
    words.append(str(rng.choice(TOPICS[topic]["noun"])))
    return words


def _sentence(rng: np.random.Generator, topic: str) -> str:
    """sentence := NP VP "." with VP := VERB[topic] NP [PREP NP]."""
    words = _noun_phrase(rng, topic)
    words.append(str(rng.choice(TOPICS[topic]["verb"])))
    words += _noun_phrase(rng, topic)
    if rng.random() < 1 / 3:
        words.append(str(rng.choice(VOCAB["prep"])))
        words += _noun_phrase(rng, topic)
    return " ".join(words) + "."


# --8<-- [start:generate_corpus]
def generate_corpus(n_sections: int = 200, seed: int = 0) -> str:
    """Draw `n_sections` sections from the grammar; the same seed gives the same text.

    Args:
        n_sections: how many sections (each a topic line and 3–6 sentences, ~170 characters).
        seed: seeds a `np.random.default_rng`, independent of any global state.

    Returns:
        The corpus, newline-terminated: sections separated by an empty line.
    """
    rng = np.random.default_rng(seed)
    topics = sorted(TOPICS)
    sections = []
    for _ in range(n_sections):
        topic = topics[rng.integers(len(topics))]  # the root decision ...
        n_sentences = int(rng.integers(3, 7))
        lines = [f"# {topic}"] + [_sentence(rng, topic) for _ in range(n_sentences)]  # ... leaves
        sections.append("\n".join(lines) + "\n")
    return "\n".join(sections)
# --8<-- [end:generate_corpus]


def valid_words() -> set[str]:
    """Every word the grammar can produce (topic names excluded)."""
    words = {w for ws in VOCAB.values() for w in ws}
    for parts in TOPICS.values():
        words.update(parts["noun"], parts["verb"])
    return words


def _parse_np(words: list[str], i: int, topic: str) -> int | None:
    """Match NP at `words[i:]`; return the index after it, or None."""
    if i >= len(words) or words[i] not in VOCAB["det"]:
        return None
    i += 1
    if i < len(words) and words[i] in VOCAB["adj"]:
        i += 1
    if i < len(words) and words[i] in TOPICS[topic]["noun"]:
        return i + 1
    return None


def parse_sentence(sentence: str, topic: str) -> bool:
    """Whether `sentence` is a sentence of the grammar for `topic`.

    Example:
        >>> parse_sentence("the old ship sails a gull.", "sea")
        True
        >>> parse_sentence("the old ship sails a fox.", "sea")  # a forest noun
        False
    """
    if topic not in TOPICS or not sentence.endswith("."):
        return False
    words = sentence[:-1].split(" ")
    i = _parse_np(words, 0, topic)
    if i is None or i >= len(words) or words[i] not in TOPICS[topic]["verb"]:
        return False
    i = _parse_np(words, i + 1, topic)
    if i is not None and i < len(words) and words[i] in VOCAB["prep"]:
        i = _parse_np(words, i + 1, topic)
    return i == len(words)


def parse_corpus(text: str) -> list[tuple[str, list[str]]]:
    """Parse a whole corpus into `(topic, sentences)` sections.

    Raises:
        ValueError: naming the first line that breaks the grammar.
    """
    sections: list[tuple[str, list[str]]] = []
    blocks = text.rstrip("\n").split("\n\n")
    for b, block in enumerate(blocks):
        lines = block.split("\n")
        head = lines[0]
        topic = head[2:]
        if not head.startswith("# ") or topic not in TOPICS:
            raise ValueError(f"parse_corpus: section {b} starts with {head!r}, not '# <topic>'")
        if not 3 <= len(lines) - 1 <= 6:
            raise ValueError(f"parse_corpus: section {b} has {len(lines) - 1} sentences, not 3-6")
        for line in lines[1:]:
            if not parse_sentence(line, topic):
                raise ValueError(f"parse_corpus: section {b} ({topic}): {line!r} does not parse")
        sections.append((topic, lines[1:]))
    return sections


def valid_sentence_fraction(text: str) -> float:
    """The share of sentence lines in `text` (e.g. a model's sample) that parse for their section's
    topic; lines before the first topic line count as invalid. 0.0 if there are none."""
    topic, total, valid = None, 0, 0
    for line in text.split("\n"):
        if line.startswith("# "):
            topic = line[2:]
        elif line:
            total += 1
            valid += topic is not None and parse_sentence(line, topic)
    return valid / total if total else 0.0


# --8<-- [start:char_entropy]
def char_entropy(text: str, order: int = 0) -> float:
    r"""Empirical conditional entropy of the next character given the `order` before it, in nats.

    $$H_k = -\sum_{c,\,x} p(c, x) \ln p(x \mid c), \qquad c = \text{the } k \text{ previous
    characters},$$

    with probabilities counted on `text` itself. $H_0$ is the unigram entropy; as $k$ grows,
    $H_k$ falls towards the corpus's true entropy rate (and, for large $k$ on a short text,
    below it, by memorising). A language model's cross-entropy loss in nats compares directly;
    the uniform baseline is $\ln |\text{distinct chars}|$.

    Example:
        >>> round(char_entropy("abab", order=0), 4), char_entropy("abab", order=1)
        (0.6931, 0.0)
    """
    if order < 0:
        raise ValueError(f"char_entropy: order must be >= 0, got {order}")
    if len(text) <= order:
        raise ValueError(f"char_entropy: text of {len(text)} chars is too short for order {order}")
    joint = Counter(text[i - order : i + 1] for i in range(order, len(text)))  # (context, next)
    context = Counter()
    for gram, count in joint.items():
        context[gram[:-1]] += count
    n = sum(joint.values())
    return sum(c / n * math.log(context[g[:-1]] / c) for g, c in joint.items())
# --8<-- [end:char_entropy]
