"""MemoryBank: FIFO contents against a list oracle, memory bounded by capacity, detached
storage and copies on read, checkpoints, reorder, errors."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nima
from nima.nn.memory_bank import MemoryBank


def entries(n: int, start: int, B: int = 2, nh: int = 2, hd: int = 3) -> np.ndarray:
    """Entries numbered start..start+n-1 (the number in every element), `(B, nh, n, hd)`."""
    return np.broadcast_to(np.arange(start, start + n, dtype=np.float64)[:, None],
                           (B, nh, n, hd)).copy()


@given(capacity=st.integers(1, 6), writes=st.lists(st.integers(0, 9), max_size=6))
@settings(max_examples=40)
def test_fifo_keeps_the_last_capacity_entries_oldest_first(capacity: int,
                                                         writes: list[int]) -> None:
    bank = MemoryBank(capacity, 2, 3, batch_size=2, dtype=np.float64)
    nbytes = bank.keys.data.nbytes + bank.values.data.nbytes
    written = 0
    for n in writes:
        bank.write(entries(n, written), -entries(n, written))
        written += n
        assert bank.keys.data.nbytes + bank.values.data.nbytes == nbytes  # bounded
    k, v = bank.read()
    expected = np.arange(max(0, written - capacity), written)  # the survivors, oldest first
    assert bank.size == expected.size == k.shape[2]
    np.testing.assert_array_equal(k[0, 0, :, 0], expected)
    np.testing.assert_array_equal(v, -k)


def test_writes_are_detached_and_reads_are_copies() -> None:
    bank = MemoryBank(4, 2, 3, batch_size=2, dtype=np.float64)
    k = nima.tensor(entries(2, 0), requires_grad=True)
    bank.write(k * 2.0, k)  # a tensor in a graph: stored as a plain array
    k.data[...] = 99.0  # changing the source later does not reach the bank
    first, _ = bank.read()
    np.testing.assert_array_equal(first[0, 0, :, 0], [0.0, 2.0])
    bank.write(entries(4, 10), entries(4, 10))  # overwrites every slot ...
    np.testing.assert_array_equal(first[0, 0, :, 0], [0.0, 2.0])  # ... not the copy read before
    first[...] = -1.0
    assert bank.read()[0][0, 0, :, 0].tolist() == [10, 11, 12, 13]


def test_the_bank_is_in_the_state_dict_and_survives_a_checkpoint(tmp_path) -> None:
    bank = MemoryBank(3, 2, 3, batch_size=2)
    bank.write(entries(5, 0), entries(5, 100))
    nima.save(bank.state_dict(), tmp_path / "bank.safetensors")
    assert set(bank.state_dict()) == {"keys", "values", "count"}
    restored = MemoryBank(3, 2, 3, batch_size=2)
    restored.load_state_dict(nima.load(tmp_path / "bank.safetensors"))
    for a, b in zip(restored.read(), bank.read(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert restored.size == 3 and int(restored.count.data) == 5


def test_reorder_and_reset() -> None:
    bank = MemoryBank(4, 2, 3, batch_size=2, dtype=np.float64)
    k = entries(3, 0)
    k[1] += 50.0  # stream 1 differs
    bank.write(k, k)
    bank.reorder(np.array([1, 1, 0]))
    got, _ = bank.read()
    assert got.shape == (3, 2, 3, 3) and got[0, 0, 0, 0] == 50.0 and got[2, 0, 0, 0] == 0.0
    with pytest.raises(ValueError, match=r"MemoryBank.reorder: indices must be 1-D ints in "
                                         r"\[0, 3\)"):
        bank.reorder(np.array([3]))
    bank.reset()
    assert bank.size == 0 and bank.read()[0].shape == (3, 2, 0, 3)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"capacity": 0}, "MemoryBank: capacity must be >= 1, got 0"),
    ({"n_head": 0}, "MemoryBank: n_head must be >= 1, got 0"),
    ({"head_dim": 0}, "MemoryBank: head_dim must be >= 1, got 0"),
    ({"batch_size": 0}, "MemoryBank: batch_size must be >= 1, got 0"),
])
def test_bad_settings_name_the_key_and_value(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        MemoryBank(**{"capacity": 4, "n_head": 2, "head_dim": 3, **kwargs})


def test_bad_writes() -> None:
    bank = MemoryBank(4, 2, 3, batch_size=2)
    with pytest.raises(ValueError, match=r"expected keys and values of shape \(2, 2, n, 3\), "
                                         r"got \(1, 2, 1, 3\)"):
        bank.write(np.zeros((1, 2, 1, 3)), np.zeros((1, 2, 1, 3)))
