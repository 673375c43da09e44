"""`retain_freed_memory`: after it, a large array comes from malloc's heap (whose pages are
reused), not from a fresh mmap. Observed through glibc's own accounting, `mallinfo2`."""

import ctypes
import ctypes.util
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent("""
    import ctypes, ctypes.util
    import numpy as np
    from nima.allocator import retain_freed_memory

    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
            "uordblks", "fordblks", "keepcost")]

    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.mallinfo2.restype = MallInfo2

    def mmapped_by(nbytes):
        before = libc.mallinfo2().hblkhd
        a = np.ones(nbytes // 8)  # written, so really allocated
        grown = libc.mallinfo2().hblkhd - before
        del a
        return grown

    size = 40 << 20  # above glibc's largest dynamic mmap threshold (32 MB)
    print(mmapped_by(size), retain_freed_memory(), retain_freed_memory(), mmapped_by(size))
""")


def _has_mallinfo2() -> bool:
    name = ctypes.util.find_library("c")
    return bool(name) and hasattr(ctypes.CDLL(name), "mallinfo2")


@pytest.mark.skipif(not _has_mallinfo2(), reason="needs glibc >= 2.33 (mallinfo2)")
def test_large_arrays_come_from_the_heap_after_tuning():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                         timeout=120, check=True).stdout.split()
    before, first, second, after = out
    assert int(before) >= 40 << 20  # a fresh mmap by default
    assert first == second == "True"  # accepted, and idempotent
    assert int(after) == 0  # served from the heap
