"""Who owns the cores: numba's thread pool or OpenBLAS's (decisions and measurements below).

Both libraries keep a pool of worker threads, and on this 2-core machine two pools fighting over
two cores is expensive: after a call, OpenBLAS's worker keeps spinning on a core for a while, so
a numba parallel kernel that starts right after a NumPy matmul waits for the scheduler to hand
that core over — about one 8 ms scheduler tick, whatever the size of the kernel.

Decision: while the numba backend is active, OpenBLAS runs on one thread (set through
threadpoolctl, lazily, right before the first numba kernel runs — `import nima` stays cheap);
switching to the numpy backend gives OpenBLAS its own default back, since then it does all the
heavy lifting. The numba backend does its matrix products with its own kernel, so OpenBLAS only
serves the odd `np.dot` outside the kernels, and one OpenBLAS thread is as fast as the numba
matmul at baby-GPT sizes anyway.

Measured by `benchmarks/bench_threads.py` (medians in ms, 200 repeats; "then softmax" adds the
numba softmax of the attention scores (48, 64, 64), 0.12–0.19 ms alone; in brackets: the pair's
cost beyond its two parts run alone):

| BLAS threads | product | NumPy mm | numba mm | NumPy mm, then softmax | numba mm, then softmax |
|---|---|---|---|---|---|
| 1 | (768,128)@(128,384) | 0.741 | 0.719 | 0.894 (−0.03) | 1.066 (+0.16) |
| 1 | (512,512)@(512,512) | 2.850 | 2.392 | 3.050 (+0.01) | 2.502 (−0.08) |
| 2 | (768,128)@(128,384) | 0.388 | 0.742 | **7.998 (+7.49)** | 1.042 (+0.18) |
| 2 | (512,512)@(512,512) | 1.929 | 2.519 | **7.999 (+5.95)** | 3.618 (+0.98) |

Two OpenBLAS threads make a lone NumPy matmul 1.5–1.9× faster, but any numba kernel right after
it then pays ~6–7.5 ms; with one thread the pair costs what its parts cost.


The second decision is numba's own: a parallel launch wakes the pool's other thread, and when
that core is busy (another process, a test runner, a browser) the launch waits for the scheduler
to run it — milliseconds, whatever the size of the work. Small kernels therefore run on the
calling thread alone (`threads_for`): below `GRAIN` elements of work the parallel win is a few
microseconds at best, and the loss under load is large. Training the 26k-parameter model of
`configs/tiny_synthetic.yaml` for 100 steps on a loaded machine (load average 9) took 35 s
with two numba threads for every kernel and 5.3 s with one.
"""

import threading

import numba
from threadpoolctl import threadpool_limits

_limiter = None  # the active threadpoolctl limit, or None when OpenBLAS has its default
GRAIN = 1 << 15  # elements of work below which a numba kernel runs on the calling thread
GEMM_GRAIN = 1 << 21  # the same for a matrix product, in multiply-adds (about 128^3)
_local = threading.local()  # numba's thread count is per calling thread, so is our cache of it


# --8<-- [start:blas_threads]
def limit_blas_threads() -> None:
    """Run OpenBLAS on one thread, leaving the cores to numba (idempotent and cheap).

    Applies to the BLAS libraries loaded at the first call — NumPy's OpenBLAS. (numba's first
    compile may load SciPy's OpenBLAS as well; nothing in Nima calls that one.)
    """
    global _limiter
    if _limiter is None:
        _limiter = threadpool_limits(limits=1, user_api="blas")


def restore_blas_threads() -> None:
    """Give OpenBLAS back the thread count it had before `limit_blas_threads`."""
    global _limiter
    if _limiter is not None:
        _limiter.restore_original_limits()
        _limiter = None
# --8<-- [end:blas_threads]


# --8<-- [start:threads_for]
def threads_for(work: int, grain: int = GRAIN) -> None:
    """Give the next numba kernel one thread if its work (elements, or multiply-adds for a
    matrix product) is below `grain`, else all of them. Cheap: numba is called only when the
    count changes."""
    want = 1 if work < grain else numba.config.NUMBA_NUM_THREADS
    if getattr(_local, "threads", None) != want:
        numba.set_num_threads(want)
        _local.threads = want
# --8<-- [end:threads_for]
