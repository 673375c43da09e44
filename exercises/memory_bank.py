r"""Exercises of the Memory bank page (docs/memory_bank.md)."""

import numpy as np

import nima
from exercises import close
from nima.nn import MemoryBank
from nima.nn.contrastive import info_nce as nima_info_nce


def ring_slots(count: int, n: int, capacity: int) -> np.ndarray:
    r"""Where a write lands in the ring.

    A bank of `capacity` slots has had `count` entries written so far, entry number $c$ in slot
    $c \bmod \text{capacity}$. Now `n` more arrive at once; of a write longer than the bank
    only the last `capacity` entries survive. Return the slots, in order, that the surviving
    new entries go to (`(min(n, capacity),)` ints).
    """
    raise NotImplementedError


def check_ring_slots(ring_slots) -> None:
    """Writes entries numbered 0, 1, 2, ... into a `MemoryBank` in writes of several sizes, and
    after each write finds, from the slot each new number landed in, what the slots were."""
    for capacity, sizes in [(5, [2, 2, 2, 3]), (4, [7, 1, 4]), (3, [1, 1, 1, 1, 5])]:
        bank = MemoryBank(capacity, 1, 1, dtype=np.float64)
        count = 0
        for n in sizes:
            k = np.arange(count, count + n, dtype=np.float64).reshape(1, 1, n, 1)
            bank.write(k, k)
            kept = min(n, capacity)
            expected = [int(np.flatnonzero(bank.keys.data[0, 0, :, 0] == number)[0])
                        for number in range(count + n - kept, count + n)]
            close(np.asarray(ring_slots(count, n, capacity)), np.array(expected),
                  f"the slots of a write of {n} after {count} entries (capacity {capacity})")
            count += n


def info_nce(q: np.ndarray, k: np.ndarray, negatives: np.ndarray, tau: float) -> float:
    r"""The InfoNCE loss in NumPy.

    `q` and `k` are `(N, d)`: row $i$ of each is a positive pair, the other rows of `k` are
    negatives for $q_i$, and so are the `(M, d)` `negatives`. Normalise every vector to unit
    length, then return the mean over $i$ of
    $-\log \frac{e^{\langle \hat q_i, \hat k_i\rangle/\tau}}{\sum_j e^{\langle \hat q_i,
    \hat k_j\rangle/\tau} + \sum_m e^{\langle \hat q_i, \hat n_m\rangle/\tau}}$.
    """
    raise NotImplementedError


def check_info_nce(info_nce) -> None:
    """Compares with `nima.nn.contrastive.info_nce` for τ = 0.1 and 1, with and without extra
    negatives."""
    rng = np.random.default_rng(0)
    q, k = rng.standard_normal((5, 4)), rng.standard_normal((5, 4))
    for M, tau in [(3, 0.1), (0, 1.0), (6, 1.0)]:
        neg = rng.standard_normal((M, 4))
        expected = nima_info_nce(nima.tensor(q), nima.tensor(k), neg, temperature=tau)
        close(float(info_nce(q, k, neg, tau)), expected.item(), f"the loss with M={M}, tau={tau}",
              rtol=1e-9)
