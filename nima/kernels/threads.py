"""How many threads a numba kernel uses — and why Nima leaves OpenBLAS's threads alone.

Both numba and OpenBLAS keep a pool of worker threads, and on a 2-core machine two pools fighting
over two cores is expensive: after a call, OpenBLAS's worker keeps spinning on a core for a
while, so a numba parallel kernel that starts right after a NumPy matmul waits for the scheduler
to hand that core over — about one 8 ms scheduler tick, whatever the size of the kernel.

Measured by `benchmarks/bench_threads.py` (medians in ms, 200 repeats; "then softmax" adds the
numba softmax of the attention scores (48, 64, 64), 0.12–0.19 ms alone; in brackets: the pair's
cost beyond its two parts run alone):

| BLAS threads | product | NumPy mm | numba mm | NumPy mm, then softmax | numba mm, then softmax |
|---|---|---|---|---|---|
| 1 | (768,128)@(128,384) | 0.741 | 0.719 | 0.894 (−0.03) | 1.066 (+0.16) |
| 1 | (512,512)@(512,512) | 2.850 | 2.392 | 3.050 (+0.01) | 2.502 (−0.08) |
| 2 | (768,128)@(128,384) | 0.388 | 0.742 | **7.998 (+7.49)** | 1.042 (+0.18) |
| 2 | (512,512)@(512,512) | 1.929 | 2.519 | **7.999 (+5.95)** | 3.618 (+0.98) |

Nima's answer is to keep the two pools apart rather than to reconfigure either behind the
user's back: with the numba backend every product and reduction Nima computes runs in its own
kernels, never in BLAS, so OpenBLAS's threads stay asleep; with the numpy backend numba is not
used. A program that mixes its own NumPy products with Nima's numba kernels can limit OpenBLAS
for a block of code, explicitly: `nima.runtime.using(blas_threads=1)`.

The second decision is numba's own: a parallel launch wakes the pool's other thread, and when
that core is busy (another process, a test runner, a browser) the launch waits for the scheduler
to run it — milliseconds, whatever the size of the work. Measured on a 2-core AMD EPYC (Zen 4) at
a load average of 10, the baby GPT's training step took a median 1200 ms of wall time when nearly
every kernel went to both cores, and 250 ms when each ran on the calling thread alone. On an idle
machine the same second core halves the kernels' time (1.8-2.0x on one of 25k elements or of
2^20 multiply-adds, while the worker is awake), and PyTorch takes it.

So the grain of a kernel — the work below which it runs on the calling thread — depends on
whether the cores are free (`Grain`), and `launch` asks `cores_free()` when the work falls
between the two grains:

| work | cores free | cores busy |
|---|---|---|
| elements (`ROWS`) | from 2^15 in parallel | from 2^20 in parallel |
| multiply-adds (`PRODUCT`) | from 2^20 | from 2^26 |

"Free" is measured, not assumed: `cores_free` reads the machine's busy time from `/proc/stat` at
most every 0.2 s, subtracts this process's own CPU time over the same interval, and calls the
cores free when what other processes used leaves one per numba thread, with half a core to
spare. It changes nothing anywhere; until its first interval has passed, and where there is no
`/proc/stat`, the cores count as busy. The busy grains are about a millisecond of work: a second
thread could save at most half of it, a wait for a busy core costs a whole scheduler slice. Large
kernels use the calling thread's numba thread count (`numba.get_num_threads()`, which the caller
may set, e.g. through `nima.runtime.using(numba_threads=...)`).

A small kernel does not just run on one thread: it runs a second compilation of the same
source without `parallel=True` (`parallel_kernel` makes both; numba reads `prange` as `range`
in it). A parallel function pays for its scheduler even on one thread — at (1, 128) @ (128, 384),
the product of decoding one token, 20 us against the arithmetic's 3 — and switching numba's
thread count for the call would cost another microsecond or two each way. The serial twin
needs neither, and changes no thread count at all.
"""

import os
import time
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numba
from numba import njit


@dataclass(frozen=True)
class Grain:
    """Work (elements, or multiply-adds) from which a kernel runs in parallel: `free` when the
    machine has a core for each numba thread, `busy` when other processes hold them."""

    free: int
    busy: int


ROWS = Grain(free=1 << 15, busy=1 << 20)  # elementwise and row kernels, in elements
PRODUCT = Grain(free=1 << 20, busy=1 << 26)  # matrix products, in multiply-adds


# --8<-- [start:parallel_kernel]
def parallel_kernel(**options: Any) -> Callable[[Callable[..., Any]], Any]:
    """`@parallel_kernel()` instead of `@njit(parallel=True, cache=True)`: compile a `prange`
    kernel twice — in parallel, and (as the attribute `.serial`) without `parallel=True`, for
    `launch` to run small work on the calling thread. Both are cached on disk; `options` go to
    both (e.g. `fastmath`)."""
    def compile_both(fn: Callable[..., Any]) -> Any:
        twin = types.FunctionType(fn.__code__, fn.__globals__, f"{fn.__name__}_serial",
                                  fn.__defaults__, fn.__closure__)
        twin.__qualname__ = f"{fn.__qualname__}_serial"  # numba's cache is keyed by it
        kernel = njit(parallel=True, cache=True, **options)(fn)
        kernel.serial = njit(cache=True, **options)(twin)
        return kernel
    return compile_both
# --8<-- [end:parallel_kernel]


# --8<-- [start:cores_free]
class _Sampler:
    """How many cores other processes kept busy over the last `INTERVAL` seconds: the machine's
    busy time (`/proc/stat`, in clock ticks) minus this process's CPU time, per second."""

    INTERVAL = 0.2

    def __init__(self) -> None:
        self.when = self.busy = self.mine = None
        self.others = float("inf")  # nothing measured yet: count the cores as busy
        self.tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

    def __call__(self) -> float:
        now = time.monotonic()
        if self.when is None or now - self.when >= self.INTERVAL:
            busy, mine = machine_busy(self.tick), time.process_time()
            if busy is not None and self.busy is not None:
                self.others = ((busy - self.busy) - (mine - self.mine)) / (now - self.when)
            self.when, self.busy, self.mine = now, busy, mine
        return self.others


def machine_busy(tick: int) -> float | None:
    """Seconds of CPU time every core has spent busy since boot, from the first line of
    `/proc/stat` (user, nice, system, idle, iowait, irq, softirq, steal, ... in clock ticks);
    None where it cannot be read."""
    try:
        with open("/proc/stat", "rb") as f:
            fields = f.readline().split()[1:9]
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields)
    return (user + nice + system + irq + softirq + steal) / tick


_others = _Sampler()
_cores = os.cpu_count() or 1


def cores_free() -> bool:
    """Whether this thread has more than one numba thread and other processes leave a core for
    each of them, with half a core to spare (measured over the last 0.2 s)."""
    threads = numba.get_num_threads()
    return threads > 1 and _cores - _others() >= threads - 0.5
# --8<-- [end:cores_free]


# --8<-- [start:launch]
def launch(kernel: Any, work: int, *args: Any, grain: Grain = ROWS) -> Any:
    """`kernel(*args)` — made by `parallel_kernel` — in parallel, with this thread's numba
    thread count, if its `work` (elements, or multiply-adds) reaches `grain.busy`, or
    `grain.free` while the cores are free; otherwise serially, on the calling thread alone."""
    if work >= grain.busy or (work >= grain.free and cores_free()):
        return kernel(*args)
    return kernel.serial(*args)
# --8<-- [end:launch]
