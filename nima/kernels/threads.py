"""Who owns the cores: numba's thread pool or OpenBLAS's (decision and measurements below).

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
"""

from threadpoolctl import threadpool_limits

_limiter = None  # the active threadpoolctl limit, or None when OpenBLAS has its default


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
