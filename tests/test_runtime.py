"""`nima.runtime` and the state Nima keeps per thread: nothing outside Nima changes unless asked
(OpenBLAS threads, numba threads, glibc's allocator, the kernel backend), `using` applies and
restores its settings, and grad mode, autocast and the backend are each thread's own."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time

import numba
import numpy as np
import pytest
from numba import prange
from threadpoolctl import threadpool_info

import nima
from nima import kernels, runtime
from nima.kernels import threads
from nima.kernels.threads import Grain, launch, parallel_kernel


def blas_threads() -> list[int]:
    return [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]


UNTOUCHED = """
    import ctypes, json, sys
    import numpy as np
    from threadpoolctl import threadpool_info

    def blas():
        return {{p["filepath"]: p["num_threads"] for p in threadpool_info()
                 if p["user_api"] == "blas"}}

    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
            "uordblks", "fordblks", "keepcost")]

    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = MallInfo2

    def mmapped(nbytes):
        # bytes glibc serves with mmap while an array of `nbytes` is alive: all of them with
        # glibc's defaults (above its 32 MB dynamic ceiling), none once retained
        before = libc.mallinfo2().hblkhd
        a = np.ones(nbytes // 8)
        after = libc.mallinfo2().hblkhd
        del a
        return after - before

    start = blas(), mmapped(48 << 20)
    import nima
    from nima.training import Trainer
    {work}
    after = blas(), mmapped(48 << 20)
    # libraries loaded since (numba may load SciPy's OpenBLAS) come with their own defaults;
    # every pool that was there keeps the threads it had
    print(json.dumps({{"before": [start[0], start[1]],
                      "after": [{{k: after[0][k] for k in start[0]}}, after[1]]}}))
"""


@pytest.mark.parametrize("work", [
    "",  # import alone
    "x = nima.randn(64, 64, requires_grad=True); (x @ x).relu().sum().backward()",
    # a training step written by hand, nanoGPT style, then a few generated tokens
    "\n".join([
        'model = nima.models.GPT(nima.models.GPTConfig.preset("baby", n_layer=1))',
        "opt = nima.optim.AdamW(model.parameters(), lr=1e-3)",
        "x = np.random.default_rng(0).integers(0, 65, (4, 64))",
        "_, loss = model(x, x)",
        "loss.backward()",
        "nima.optim.clip_grad_norm_(model.parameters(), 1.0)",
        "opt.step()",
        "opt.zero_grad()",
        "nima.generate(model, x[:1, :4], 5)"]),
])
def test_nothing_outside_nima_changes(work: str) -> None:
    code = textwrap.dedent(UNTOUCHED).format(work=work)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    import json
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["after"] == result["before"], result


def test_the_trainer_changes_the_allocator_only_when_the_config_says_so(tmp_path) -> None:
    code = textwrap.dedent(UNTOUCHED).format(work=textwrap.dedent(f"""
    sys.path.insert(0, {str(__import__("pathlib").Path(__file__).parent)!r})
    from tiny_runs import tiny_config
    from pathlib import Path
    Trainer(tiny_config(Path({str(tmp_path / "a")!r}), training={{"max_iters": 8}})).fit()
    assert mmapped(48 << 20) > 0, "default config: glibc keeps its defaults"
    Trainer(tiny_config(Path({str(tmp_path / "b")!r}), training={{"max_iters": 8}},
                        runtime={{"retain_memory": True}})).fit()
    assert mmapped(48 << 20) == 0, "opted in: freed memory stays in the heap"
    start = (start[0], 0)  # compared with the second, opted-in run's
    """))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr


def test_import_nima_leaves_numba_for_the_first_kernel_call() -> None:
    """numba (most of what importing Nima would cost) loads with the first kernel, not before;
    a numba thread count given to `using` loads it too."""
    code = textwrap.dedent("""
        import sys
        import numpy as np
        import nima
        assert "numba" not in sys.modules, "import nima imported numba"
        x = nima.tensor(np.ones((2, 3), dtype=np.float32), requires_grad=True)
        (x * 2.0).sum().backward()
        assert "numba" not in sys.modules, "an op without a kernel imported numba"
        nima.softmax(x, -1)
        assert "numba" in sys.modules
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


@pytest.mark.skipif(not blas_threads(), reason="no BLAS thread pool visible to threadpoolctl")
def test_using_applies_and_restores_every_setting() -> None:
    backend, numba_count, blas = kernels.current(), numba.get_num_threads(), blas_threads()
    other = "numpy" if backend == "numba" else "numba"
    with runtime.using(backend=other, numba_threads=1, blas_threads=1):
        assert kernels.current() == other
        assert numba.get_num_threads() == 1
        assert blas_threads() == [1] * len(blas)
    assert (kernels.current(), numba.get_num_threads(), blas_threads()) == \
        (backend, numba_count, blas)
    with runtime.using():  # nothing asked: nothing changes
        assert (kernels.current(), numba.get_num_threads()) == (backend, numba_count)


@pytest.mark.parametrize(("kwargs", "message"), [
    (dict(backend="gpu"), "unknown kernel backend 'gpu'"),
    (dict(numba_threads=0), "runtime.using.numba_threads: must be >= 1, got 0"),
    (dict(blas_threads=1.5), "runtime.using.blas_threads: expected int, got float 1.5"),
    (dict(numba_threads=10_000), "numba_threads=10000 exceeds numba's pool"),
])
def test_using_rejects_bad_settings(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message), runtime.using(**kwargs):
        pass


class RecordingKernel:
    """Stands in for a `parallel_kernel`: records which compilation `launch` called."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, *args: object) -> None:
        self.calls.append("parallel")

    def serial(self, *args: object) -> None:
        self.calls.append("serial")


def test_small_work_runs_the_serial_twin_and_changes_no_thread_count() -> None:
    @parallel_kernel()
    def double(x: np.ndarray, out: np.ndarray) -> None:
        for i in prange(x.shape[0]):
            out[i] = 2 * x[i]

    x = np.arange(10.0)
    small, large = np.empty(10), np.empty(10)
    before = numba.get_num_threads()
    launch(double, 10, x, small)  # below the grain: the serial compilation
    launch(double, 10**9, x, large)  # above it: the parallel one
    np.testing.assert_array_equal(small, 2 * x)
    np.testing.assert_array_equal(large, 2 * x)
    assert numba.get_num_threads() == before
    kernel = RecordingKernel()
    launch(kernel, 5)
    launch(kernel, 10**9)
    assert kernel.calls == ["serial", "parallel"]


def test_work_between_the_grains_goes_parallel_only_while_the_cores_are_free(monkeypatch) -> None:
    kernel = RecordingKernel()
    grain = Grain(free=100, busy=10_000)
    for free in (True, False):
        monkeypatch.setattr(threads, "cores_free", lambda free=free: free)
        for work in (99, 100, 9_999, 10_000):
            launch(kernel, work, grain=grain)
    assert kernel.calls == ["serial", "parallel", "parallel", "parallel",   # cores free
                     "serial", "serial", "serial", "parallel"]       # cores busy


@pytest.mark.parametrize("threads_, others, free", [
    (2, 0.0, True), (2, 0.4, True), (2, 0.6, False), (2, 1.0, False), (1, 0.0, False),
    (4, 1.0, False), (2, float("inf"), False)])
def test_the_cores_are_free_when_other_processes_leave_one_per_thread(
        monkeypatch, threads_: int, others: float, free: bool) -> None:
    monkeypatch.setattr(threads, "_cores", 4 if threads_ == 4 else 2)
    monkeypatch.setattr(threads, "_others", lambda: others)
    monkeypatch.setattr(threads.numba, "get_num_threads", lambda: threads_)
    assert threads.cores_free() is free


def test_the_sampler_counts_other_processes_busy_time_per_second(monkeypatch) -> None:
    clock, busy, mine = [100.0], [50.0], [3.0]
    monkeypatch.setattr(threads.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(threads.time, "process_time", lambda: mine[0])
    monkeypatch.setattr(threads, "machine_busy", lambda tick: busy[0])
    sample = threads._Sampler()
    assert sample() == float("inf")  # one reading is no interval yet: busy
    clock[0], busy[0], mine[0] = 100.5, 51.0, 3.4  # 1 s of busy time, 0.4 s of it this process's
    assert sample() == pytest.approx(1.2)  # (1.0 - 0.4) / 0.5 s
    clock[0], busy[0] = 100.6, 60.0  # within the interval: the last figure stands
    assert sample() == pytest.approx(1.2)
    monkeypatch.setattr(threads, "machine_busy", lambda tick: None)
    clock[0] = 101.0
    assert sample() == pytest.approx(1.2)  # /proc/stat gone: the figure is not updated from None


@pytest.mark.skipif(threads.machine_busy(100) is None, reason="no /proc/stat here")
def test_machine_busy_time_grows_with_this_process_work() -> None:
    tick = threads._others.tick
    before = threads.machine_busy(tick)
    end = time.process_time() + 0.3
    while time.process_time() < end:
        pass
    assert threads.machine_busy(tick) - before >= 0.2  # clock ticks: 10 ms apart


def in_thread(fn):
    """Run `fn` in a new thread; return what it returned (or raise what it raised)."""
    result = {}

    def run() -> None:
        try:
            result["value"] = fn()
        except BaseException as e:
            result["error"] = e

    t = threading.Thread(target=run)
    t.start()
    t.join()
    if "error" in result:
        raise result["error"]
    return result["value"]


def test_grad_mode_autocast_and_backend_are_per_thread() -> None:
    """A thread that decodes under no_grad (with NumPy kernels, in autocast) while another
    trains sees only its own modes, and so does the trainer."""
    default_backend = in_thread(kernels.current)
    x = nima.randn(3, 3, requires_grad=True)
    started, go_on = threading.Event(), threading.Event()
    seen = {}

    def decoder() -> None:
        with nima.no_grad(), nima.autocast(), kernels.backend("numpy"):
            started.set()
            go_on.wait(timeout=30)
            seen["decoder"] = (nima.is_grad_enabled(), nima.amp.autocast_dtype(),
                               kernels.current(), (x @ x).dtype)

    t = threading.Thread(target=decoder)
    t.start()
    assert started.wait(timeout=30)
    # the decoder is inside all three blocks now; this thread still trains as before
    y = (x @ x).sum()
    assert y.requires_grad and (x @ x).dtype == np.float32
    assert nima.is_grad_enabled() and nima.amp.autocast_dtype() is None
    assert kernels.current() == default_backend
    go_on.set()
    t.join()
    assert seen["decoder"] == (False, np.dtype(np.float16), "numpy", np.float16)
    # and a new thread starts from the defaults, whatever this one is doing
    with nima.no_grad(), kernels.backend("numpy"):
        assert in_thread(nima.is_grad_enabled) is True
        assert in_thread(kernels.current) == default_backend
