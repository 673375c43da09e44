"""Keep freed memory for the next step: glibc malloc tuned for a training loop.

Every training step allocates the same activations and gradients again — at the baby GPT's
sizes, dozens of arrays of 0.1–2 MB. glibc serves an allocation above `M_MMAP_THRESHOLD`
(128 KB, raised dynamically up to 32 MB) with a fresh `mmap`, and gives freed memory at the top
of the heap back to the kernel beyond `M_TRIM_THRESHOLD`. Either way the next step's arrays land
on fresh pages, and the first write to each 4 KB page is a page fault the kernel must zero-fill:
about 8 ms of a 54 ms step, measured by `benchmarks/bench_train_step.py`.

`retain_freed_memory()` asks glibc to serve arrays below 64 MB from its heap and to keep up to
1 GB of freed heap instead of trimming it, so the second step reuses the first step's pages. The
cost is that the process holds on to its peak memory. It changes nothing on other C libraries
(macOS, musl, Windows): there it returns False. It is process-wide and cannot be undone (glibc
does not report the settings it replaces), so Nima never calls it on its own: a script calls
`nima.runtime.retain_freed_memory()`, and the trainer does when its config says
`runtime.retain_memory: true`.
"""

from __future__ import annotations

import ctypes
import ctypes.util

__all__ = ["retain_freed_memory"]

# mallopt parameters, from glibc's <malloc.h>
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
MMAP_THRESHOLD = 64 << 20  # arrays below this come from the heap, whose pages are reused
TRIM_THRESHOLD = 1 << 30  # freed heap kept before any is returned to the kernel
TOP_PAD = 64 << 20  # extra heap requested per growth, so growing is rare

_done: bool | None = None


def retain_freed_memory() -> bool:
    """Tune glibc malloc so freed arrays' pages are reused, not returned and faulted in again.

    Returns:
        True when glibc accepted the settings (once per process; later calls just repeat the
        answer), False on a C library without `mallopt`.
    """
    global _done
    if _done is None:
        name = ctypes.util.find_library("c")
        try:
            libc = ctypes.CDLL(name) if name else None
            mallopt = libc.mallopt if libc is not None else None
        except (OSError, AttributeError):
            mallopt = None
        _done = mallopt is not None and all(
            mallopt(param, value) == 1 for param, value in (
                (M_MMAP_THRESHOLD, MMAP_THRESHOLD), (M_TRIM_THRESHOLD, TRIM_THRESHOLD),
                (M_TOP_PAD, TOP_PAD)))
    return _done
