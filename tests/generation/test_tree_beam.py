"""Tree beam search: equal to beam search when every beam may propose num_beams children, the
exhaustive optimum on a tiny vocabulary, a tree whose nodes are the hypotheses (their summed
log-probabilities checked by full forwards), at most c children per node, and its settings."""

import itertools

import numpy as np
import pytest

from nima.generation import GenerationConfig, SearchTree, generate, softmax
from nima.generation.tree_beam import expand


def summed_logprob(logits_of, model, row: np.ndarray, T0: int) -> float:
    return sum(float(np.log(softmax(logits_of(model, row[None, :t]))[0, row[t]]))
               for t in range(T0, row.size))


@pytest.mark.parametrize(("beams", "width"), [(2, 2), (3, 3), (3, 5), (4, 11)])
@pytest.mark.parametrize("eos", [None, 3])
def test_width_at_least_num_beams_is_beam_search(make_gpt, beams: int, width: int,
                                                 eos: int | None) -> None:
    model = make_gpt(seed=21)
    idx = np.random.default_rng(4).integers(0, 11, size=(2, 3))
    settings = dict(num_beams=beams, num_return_sequences=beams, eos_token_id=eos,
                    length_penalty=0.8)
    plain = generate(model, idx, 12, strategy="beam", **settings)
    tree = generate(model, idx, 12, strategy="tree_beam", tree_width=width, **settings)
    np.testing.assert_array_equal(tree.sequences, plain.sequences)
    np.testing.assert_array_equal(tree.lengths, plain.lengths)
    np.testing.assert_allclose(tree.scores, plain.scores, rtol=1e-12)
    assert tree.strategy == "tree_beam" and plain.trees is None and len(tree.trees) == 2


def test_a_narrow_tree_finds_the_exhaustive_optimum_on_a_tiny_vocabulary(make_gpt,
                                                                         logits_of) -> None:
    """Vocabulary 3, 4 new tokens: 81 sequences, scored one by one with full forwards. Nine
    beams of three children each hold every 2-token prefix, and the tree finds the best."""
    model = make_gpt(seed=22, vocab_size=3, scale=0.9)
    idx = np.array([[2, 0, 1]])
    best = max(itertools.product(range(3), repeat=4),
               key=lambda s: summed_logprob(logits_of, model, np.array([2, 0, 1, *s]), 3))
    out = generate(model, idx, 4, strategy="tree_beam", num_beams=27, tree_width=3)
    assert out.generated(0) == list(best)
    assert out.sequence_logprobs[0] == pytest.approx(
        summed_logprob(logits_of, model, out.sequences[0], 3), rel=1e-9)


def test_the_tree_holds_every_hypothesis_with_its_log_probability(make_gpt, logits_of) -> None:
    model = make_gpt(seed=23, vocab_size=7)
    idx = np.array([[1, 2]])
    out = generate(model, idx, 5, strategy="tree_beam", num_beams=3, tree_width=2,
                   num_return_sequences=3)
    tree = out.trees[0]
    assert tree.prompt == [1, 2] and tree.nodes[0].status == "root"
    for i, node in enumerate(tree.nodes[1:], start=1):
        path = tree.path(i)
        assert len(path) == node.depth and path[-1] == node.token
        row = np.array([1, 2, *path])
        assert node.logprob == pytest.approx(summed_logprob(logits_of, model, row, 2), rel=1e-9)
        proposals = [tree.nodes[c].token for c in node.children]
        assert len(proposals) <= 2 and len(set(proposals)) == len(proposals)  # at most c
    for depth in range(1, 6):
        kept = [n for n in tree.nodes if n.depth == depth and n.status == "beam"]
        assert len(kept) == min(3, 2 ** depth)  # the beams of each step (2 from the root)
        assert all(tree.nodes[n.parent].status in ("beam", "root") for n in kept)
    finals = {tuple(tree.path(i)) for i, n in enumerate(tree.nodes) if n.depth == 5 and
              n.status == "beam"}
    assert {tuple(out.generated(r)) for r in range(3)} == finals  # no eos: the last beams
    kept = set()  # the kept nodes and their ancestors: what render draws
    for i, n in enumerate(tree.nodes):
        while n.status == "beam" and i > 0 and i not in kept:
            kept.add(i)
            i = tree.nodes[i].parent
    text = tree.render(lambda ids: "".join("abcdefg"[i] for i in ids))
    assert text.splitlines()[0] == "'bc'" and len(text.splitlines()) == 1 + len(kept)


def test_narrow_trees_spread_the_beams_and_can_end(make_gpt) -> None:
    model = make_gpt(seed=24)
    idx = np.array([[4, 4]])
    out = generate(model, idx, 8, strategy="tree_beam", num_beams=4, tree_width=1,
                   eos_token_id=5, num_return_sequences=4)
    tree = out.trees[0]
    for node in tree.nodes:  # one continuation each, and perhaps the end token
        assert sum(tree.nodes[c].token != 5 for c in node.children) <= 1
    ended = [i for i, n in enumerate(tree.nodes) if n.status == "end"]
    assert ended and all(tree.nodes[i].token == 5 for i in ended)
    rows = {tuple(out.generated(r)) for r in range(4)}
    assert rows & {tuple(tree.path(i)) for i in ended}  # a finished hypothesis was returned
    assert tree.render().count("[end]") == len(ended)
    parents = [tree.nodes[i].parent for i, n in enumerate(tree.nodes) if n.status == "beam"]
    assert len(set(parents)) > len(parents) // 2  # one child each: the beams spread


def test_expand_keeps_c_children_and_the_end_token() -> None:
    logp = np.log(np.array([[0.1, 0.4, 0.2, 0.3], [0.25, 0.25, 0.4, 0.1]]))
    out = expand(logp, 2, eos_token_id=0)
    assert np.isfinite(out).tolist() == [[True, True, False, True], [True, True, True, False]]
    np.testing.assert_array_equal(expand(logp, 4, None), logp)
    assert np.isfinite(expand(logp, 1, None)).sum(1).tolist() == [1, 1]


def test_search_tree_by_hand() -> None:
    tree = SearchTree([9])
    a = tree.add(0, 1, -0.5, "beam")
    b = tree.add(a, 2, -0.9, "end")
    tree.add(a, 3, -2.0)
    assert tree.path(b) == [1, 2] and tree.edges() == [(0, 1), (1, 2), (1, 3)]
    assert tree.render() == "'9'\n└─ '1' -0.50\n   └─ '2' -0.90 [end]"
    assert "'3' -2.00 [pruned]" in tree.render(statuses=("beam", "end", "pruned"))
    with pytest.raises(ValueError, match=r"SearchTree\.add: status must be one of"):
        tree.add(0, 1, 0.0, "root")


@pytest.mark.parametrize(("settings", "message"), [
    (dict(strategy="tree_beam", tree_width=0), "GenerationConfig.tree_width: must be >= 1, got 0"),
    (dict(strategy="tree_beam", num_beams=2, num_return_sequences=3),
     "GenerationConfig.num_return_sequences: at most num_beams=2"),
    (dict(strategy="tree_beam", num_beams=2, stop_strings=("x",)),
     "GenerationConfig.stop_strings: not supported with beam search"),
    (dict(strategy="sample", num_beams=2),
     "GenerationConfig.num_beams: 2 beams need strategy 'beam' or 'tree_beam', got 'sample'"),
])
def test_settings(settings: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        GenerationConfig(**settings)
    assert GenerationConfig(strategy="tree_beam", num_beams=3).tree_width == 2
