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
to run it — milliseconds, whatever the size of the work. Small kernels therefore run on the
calling thread alone (`launch`). "Small" is about a millisecond of work or less: a second
thread could save at most half of it, and a wait for a busy core costs a whole scheduler slice.
So `GRAIN` is 2^20 elements (a softmax or layer norm of a million values, 0.5-1 ms) and
`GEMM_GRAIN` 2^26 multiply-adds (0.7 ms at 100 GFLOP/s): every kernel of the baby GPT runs on
one thread, the products and attention of a GPT with 256-wide layers and 256-token windows on
all of them. Measured on a 2-core AMD EPYC (Zen 4) at a load average of 10: the baby GPT's
training step took a median 250 ms of wall time with these grains and 1200 ms with the earlier
ones (32k elements, 2M multiply-adds), which sent nearly every kernel to both cores; and
training the 26k-parameter model of `configs/tiny_synthetic.yaml` for 100 steps (load average
9) took 35 s with two numba threads for every kernel and 5.3 s with one. Large kernels use the
calling thread's numba thread count (`numba.get_num_threads()`, which the caller may set, e.g.
through `nima.runtime.using(numba_threads=...)`).

A small kernel does not just run on one thread: it runs a second compilation of the same
source without `parallel=True` (`parallel_kernel` makes both; numba reads `prange` as `range`
in it). A parallel function pays for its scheduler even on one thread — at (1, 128) @ (128, 384),
the product of decoding one token, 20 us against the arithmetic's 3 — and switching numba's
thread count for the call would cost another microsecond or two each way. The serial twin
needs neither, and changes no thread count at all.
"""

import types
from collections.abc import Callable
from typing import Any

from numba import njit

GRAIN = 1 << 20  # elements of work below which a numba kernel runs on the calling thread
GEMM_GRAIN = 1 << 26  # the same for a matrix product, in multiply-adds (about 406^3)


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


# --8<-- [start:launch]
def launch(kernel: Any, work: int, *args: Any, grain: int = GRAIN) -> Any:
    """`kernel(*args)` — made by `parallel_kernel` — on the calling thread alone, serially, if
    its `work` (elements, or multiply-adds for a matrix product) is below `grain`; else in
    parallel, with this thread's numba thread count."""
    return (kernel.serial if work < grain else kernel)(*args)
# --8<-- [end:launch]
