"""With NUMBA_DISABLE_JIT=1 every numba kernel runs as plain Python and must still be right."""

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = """
import numba
import numpy as np

from nima.kernels import causal_attention as ca, cross_entropy as ce, gemm as mm, softmax as sm

assert numba.config.DISABLE_JIT
rng = np.random.default_rng(0)
x = rng.standard_normal((3, 5)).astype(np.float32)
x[1] = -np.inf
x[2, 0] = -np.inf
dy = rng.standard_normal((3, 5)).astype(np.float32)
close = dict(rtol=1e-5, atol=1e-6)
with np.errstate(all="raise"):
    y = sm.softmax_forward_numba(x)
    np.testing.assert_allclose(y, sm.softmax_forward_numpy(x), **close)
    np.testing.assert_allclose(sm.softmax_backward_numba(y, dy), sm.softmax_backward_numpy(y, dy),
                               **close)
    ly = sm.log_softmax_forward_numba(x)
    np.testing.assert_allclose(ly, sm.log_softmax_forward_numpy(x), **close)
    np.testing.assert_allclose(sm.log_softmax_backward_numba(ly, dy),
                               sm.log_softmax_backward_numpy(ly, dy), **close)
    t = np.array([4, 1, 0])
    losses, lse = ce.cross_entropy_forward_numba(x, t, 1, 0.1)
    ref_losses, ref_lse = ce.cross_entropy_forward_numpy(x, t, 1, 0.1)
    np.testing.assert_allclose(losses, ref_losses, **close)
    g = np.ones(3, np.float32)
    np.testing.assert_allclose(ce.cross_entropy_backward_numba(x, t, lse, g, 1, 0.1),
                               ce.cross_entropy_backward_numpy(x, t, ref_lse, g, 1, 0.1), **close)
for n in (5, 771):  # one panel of B, then several
    a = rng.standard_normal((2, 9, 6))
    b = rng.standard_normal((2, 6, n))
    np.testing.assert_allclose(mm.matmul_numba(a, b), a @ b, rtol=1e-12)
qkv, dy = rng.standard_normal((2, 7, 24)), rng.standard_normal((2, 7, 8))
angles = np.arange(7)[:, None] * np.array([1.0, 0.01])
tables = np.cos(angles), np.sin(angles)  # RoPE for 2 heads of size 4
y, p = ca.causal_attention_forward_numba(qkv, 2, 0.5, *tables)
ref_y, ref_p = ca.causal_attention_forward_numpy(qkv, 2, 0.5, *tables)
np.testing.assert_allclose(y, ref_y, rtol=1e-12)
np.testing.assert_allclose(ca.causal_attention_backward_numba(qkv, p, dy, 2, 0.5, *tables),
                           ca.causal_attention_backward_numpy(qkv, ref_p, dy, 2, 0.5, *tables),
                           rtol=1e-10)
print("ok")
"""


def test_kernels_run_without_jit() -> None:
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        capture_output=True,
        text=True,
        cwd=root,
        env={**os.environ, "NUMBA_DISABLE_JIT": "1", "PYTHONPATH": str(root)},
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
