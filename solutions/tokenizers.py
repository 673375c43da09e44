"""Solutions of exercises/tokenizers.py."""

from collections import Counter
from itertools import pairwise


def _merge(ids, pair, new_id):
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def bpe_merges(text, n):
    ids, merges = list(text.encode("utf-8")), []
    for k in range(n):
        counts = Counter(pairwise(ids))
        if not counts:
            break
        top = max(counts.values())
        pair = min(p for p, c in counts.items() if c == top)  # the lowest of the most frequent
        ids = _merge(ids, pair, 256 + k)
        merges.append((pair, 256 + k))
    return merges


def _bpe_merges_first_seen(text, n):
    """Breaks ties by the pair seen first: Wikipedia's example then merges Za, not ab."""
    ids, merges = list(text.encode("utf-8")), []
    for k in range(n):
        counts = Counter(pairwise(ids))
        if not counts:
            break
        pair = counts.most_common(1)[0][0]
        ids = _merge(ids, pair, 256 + k)
        merges.append((pair, 256 + k))
    return merges


def bpe_encode(text, merges):
    rank = {pair: r for r, pair in enumerate(merges)}
    ids = list(text.encode("utf-8"))
    while len(ids) > 1:
        pair = min(pairwise(ids), key=lambda p: rank.get(p, len(rank)))
        if pair not in rank:
            break
        ids = _merge(ids, pair, merges[pair])
    return ids


def _bpe_encode_latest_first(text, merges):
    """Tries the merges latest first: the big merges find their parts not yet made."""
    ids = list(text.encode("utf-8"))
    for pair, new_id in reversed(list(merges.items())):
        ids = _merge(ids, pair, new_id)
    return ids


WRONG = {
    "bpe_merges": [_bpe_merges_first_seen],
    "bpe_encode": [_bpe_encode_latest_first],
}
