"""`nima.runtime`: the one place for choices that are about the machine, not the model.

Importing Nima, calling an op or training a model changes nothing outside Nima: OpenBLAS keeps
the threads you gave it, numba keeps yours, glibc's `malloc` keeps its settings, and the kernel
backend is the one you chose. Everything that would change such state is a choice you make
here, explicitly, for a block of code:

```python
with nima.runtime.using(backend="numpy", blas_threads=1):
    logits, loss = model(x, y)       # NumPy references, OpenBLAS on one thread
# every setting is back as it was
```

| setting | what it changes | scope |
|---|---|---|
| `backend` | `"numba"` kernels or their `"numpy"` references | the calling thread |
| `numba_threads` | numba threads for large kernels (small ones use one) | the calling thread |
| `blas_threads` | OpenBLAS's (NumPy's BLAS) thread pool, through `threadpoolctl` | the process |

`using` applies them on entry and restores them on exit; None leaves a setting alone. The YAML
section `runtime:` of a training config holds the same fields, and `nima.training.Trainer` runs
inside `using(...)` of them.

One setting cannot be scoped: `retain_freed_memory()` tunes glibc's allocator for the rest of
the process (glibc cannot report its previous settings, so nothing could restore them). It is
never applied unless you call it, or set `runtime.retain_memory: true` in a config.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from threadpoolctl import threadpool_limits

from nima.allocator import retain_freed_memory
from nima.kernels.backend import backend as kernel_backend
from nima.kernels.backend import checked
from nima.settings import check_int

__all__ = ["retain_freed_memory", "using"]


# --8<-- [start:using]
@contextmanager
def using(*, backend: str | None = None, numba_threads: int | None = None,
          blas_threads: int | None = None) -> Iterator[None]:
    """Run a block with these kernel, numba and BLAS choices; restore the previous ones after.

    Args:
        backend: `"numba"` or `"numpy"`, for the calling thread.
        numba_threads: numba threads for large kernels in the calling thread, at most
            `numba.config.NUMBA_NUM_THREADS`.
        blas_threads: OpenBLAS threads, for the whole process while the block runs.

    Raises:
        ValueError: an unknown backend or a thread count that is not a positive int (or
            exceeds numba's pool), named with its value.
    """
    if backend is not None:
        checked(backend)
    if blas_threads is not None:
        check_int("runtime.using.blas_threads", blas_threads, ge=1)
    if numba_threads is not None:
        import numba  # here, not at the top: numba loads with the first kernel, not with nima

    if numba_threads is not None and check_int("runtime.using.numba_threads", numba_threads,
                                               ge=1) > numba.config.NUMBA_NUM_THREADS:
        raise ValueError(f"runtime.using: numba_threads={numba_threads} exceeds numba's pool of "
                         f"{numba.config.NUMBA_NUM_THREADS} (NUMBA_NUM_THREADS)")
    with ExitStack() as stack:
        if backend is not None:
            stack.enter_context(kernel_backend(backend))
        if numba_threads is not None:
            previous = numba.get_num_threads()
            numba.set_num_threads(numba_threads)
            stack.callback(numba.set_num_threads, previous)
        if blas_threads is not None:
            stack.enter_context(threadpool_limits(limits=blas_threads, user_api="blas"))
        yield
# --8<-- [end:using]
