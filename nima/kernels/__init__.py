"""Nima's compute kernels on plain NumPy arrays, each with a numba and a NumPy implementation.

The functions here check their arguments (errors name the op, the shapes and the dtypes), then
call the active backend's implementation — see `nima.kernels.backend`:

    >>> import numpy as np
    >>> from nima import kernels
    >>> kernels.softmax_forward(np.array([0.0, np.log(3.0)]))
    array([0.25, 0.75])
    >>> with kernels.backend("numpy"):
    ...     kernels.softmax_forward(np.array([0.0, np.log(3.0)]))
    array([0.25, 0.75])

| kernel | module | numba kernel's parallel structure |
|---|---|---|
| `matmul` | `nima.kernels.gemm` | `prange` over (batch, row block[, column block]) |
| `causal_attention_*` | `nima.kernels.causal_attention` | `prange` over (batch row, head) |
| `softmax_*`, `log_softmax_*` | `nima.kernels.softmax` | `prange` over rows |
| `cross_entropy_*` | `nima.kernels.cross_entropy` | `prange` over rows |
| `layer_norm_*`, `rms_norm_*` | `nima.kernels.layernorm` | `prange` over rows (row blocks) |
| `adam_update` | `nima.kernels.adam` | one thread, vectorised, per block of 1024 elements |
| `sum_of_squares` | `nima.kernels.sumsq` | one thread, vectorised, in float64 |

All take float32 or float64 (one dtype per call) and return new arrays (or a number). Nothing is
compiled at import: each numba kernel compiles on its first call for a dtype (or loads numba's
on-disk cache).
"""

import importlib
import math
from typing import Any

import numpy as np

from nima.kernels.backend import BACKENDS, backend, current, pick, use


class _KernelModule:
    """`nima.kernels.<name>`, imported at its first use.

    Every kernel module imports numba, which takes about 0.2 s — most of what `import nima`
    would cost. The dispatchers below reach their kernels through these stand-ins, so numba
    loads with the first kernel call instead. From that first use on, the stand-in's namespace
    is the module's own (not a copy): a lookup costs what a module attribute does, and a name
    replaced in the module (a test's monkeypatch) is replaced here too.
    """

    __slots__ = ("__dict__", "_name")

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:  # called only for names the namespace lacks
        module = importlib.import_module(f"nima.kernels.{self._name}")
        self.__dict__ = vars(module)
        return getattr(module, attr)


_adam = _KernelModule("adam")
_attention = _KernelModule("attention")
_ca = _KernelModule("causal_attention")
_ce = _KernelModule("cross_entropy")
_erf = _KernelModule("erf")
_gelu = _KernelModule("gelu")
_mm = _KernelModule("gemm")
_ln = _KernelModule("layernorm")
_sm = _KernelModule("softmax")
_sumsq = _KernelModule("sumsq")

__all__ = [
    "BACKENDS",
    "adam_update",
    "backend",
    "causal_attention_backward",
    "causal_attention_forward",
    "causal_softmax_forward",
    "check_eps",
    "cross_entropy_backward",
    "cross_entropy_forward",
    "current",
    "gelu_tanh_backward",
    "gelu_tanh_forward",
    "layer_norm_backward",
    "layer_norm_forward",
    "log_softmax_backward",
    "log_softmax_forward",
    "matmul",
    "normal_cdf",
    "rms_norm_backward",
    "rms_norm_forward",
    "softmax_backward",
    "softmax_forward",
    "sum_of_squares",
    "use",
]

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def _check_floats(op: str, *arrays: np.ndarray) -> None:
    """All arrays float32, or all float64."""
    dtypes = [a.dtype for a in arrays]
    first = dtypes[0]
    if first not in _FLOATS or dtypes.count(first) != len(dtypes):
        shown = ", ".join(str(d) for d in dtypes)
        raise TypeError(f"{op}: expected float32 or float64 arrays of one dtype, got {shown}")


def _check_same_shape(op: str, y: np.ndarray, dy: np.ndarray) -> None:
    if y.shape != dy.shape:
        raise ValueError(f"{op}: output shape {y.shape} and gradient shape {dy.shape} differ")


def _check_rows(op: str, x: np.ndarray) -> None:
    if x.ndim < 1:
        raise ValueError(f"{op}: expected at least 1 dimension (rows along the last), got a scalar")


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    r"""$C_b = A_b B_b$: (B, M, K) @ (B, K, N) -> (B, M, N), or (M, K) @ (K, N) -> (M, N).

    Any strides in; a new C-contiguous array out.
    """
    if a.ndim != b.ndim or a.ndim not in (2, 3):
        raise ValueError(f"matmul: expected two 2-D or two 3-D arrays, got {a.shape} and {b.shape}")
    if a.shape[-1] != b.shape[-2] or a.shape[:-2] != b.shape[:-2]:
        raise ValueError(f"matmul: shapes {a.shape} and {b.shape} do not match")
    _check_floats("matmul", a, b)
    return pick(_mm.matmul_numpy, _mm.matmul_numba)(a, b)


# --8<-- [start:softmax_forward]
def softmax_forward(x: np.ndarray) -> np.ndarray:
    """Softmax over the last axis; a fully masked (all $-\\infty$) row gives zeros."""
    _check_rows("softmax_forward", x)
    _check_floats("softmax_forward", x)
    return pick(_sm.softmax_forward_numpy, _sm.softmax_forward_numba)(x)
# --8<-- [end:softmax_forward]


def softmax_backward(y: np.ndarray, dy: np.ndarray) -> np.ndarray:
    r"""$dx = y \odot (dy - \langle dy, y\rangle)$ per row, from the softmax output $y$."""
    _check_same_shape("softmax_backward", y, dy)
    _check_rows("softmax_backward", y)
    _check_floats("softmax_backward", y, dy)
    return pick(_sm.softmax_backward_numpy, _sm.softmax_backward_numba)(y, dy)


def causal_softmax_forward(x: np.ndarray, shift: int | None = None) -> np.ndarray:
    """Causal softmax of scores `(..., Tq, Tk)`: row `i` over keys `j <= i + shift`, zeros
    after; `shift` defaults to `Tk - Tq` (see `nima.kernels.attention`)."""
    if x.ndim < 2:
        raise ValueError(f"causal_softmax_forward: expected scores (..., Tq, Tk), got shape "
                         f"{x.shape}")
    if x.dtype not in _FLOATS:
        raise TypeError(f"causal_softmax_forward: expected float32 or float64 scores, got "
                        f"{x.dtype} (shape {x.shape})")
    shift = x.shape[-1] - x.shape[-2] if shift is None else int(shift)
    forward = pick(_attention.causal_softmax_forward_numpy,
                   _attention.causal_softmax_forward_numba)
    return forward(x, shift)


def _qkv_tables(op: str, qkv: np.ndarray, n_head: int, rotary: Any) -> tuple[Any, Any]:
    """Check `qkv` `(B, T, 3C)` (float, `C` shared equally by `n_head` heads) and the rotary
    tables `(cos, sin)`, each `(T, d/2)`, or None; return the tables in `qkv`'s dtype, empty
    without rotation."""
    if n_head < 1 or qkv.ndim != 3 or qkv.shape[-1] % (3 * n_head):
        raise ValueError(f"{op}: expected qkv of shape (B, T, 3 C) with C divisible by "
                         f"n_head={n_head}, got shape {qkv.shape}")
    if qkv.dtype not in _FLOATS:
        raise TypeError(f"{op}: expected float32 or float64 qkv, got {qkv.dtype}")
    if rotary is None:
        empty = np.empty((0, 0), qkv.dtype)
        return empty, empty
    t, d = qkv.shape[1], qkv.shape[-1] // (3 * n_head)
    cos, sin = (np.ascontiguousarray(a, dtype=qkv.dtype) for a in rotary)
    if d % 2 or cos.shape != (t, d // 2) or sin.shape != (t, d // 2):
        raise ValueError(f"{op}: rotary tables for {t} positions of head size {d} must be "
                         f"(cos, sin) of shape {(t, d // 2)}, got {cos.shape} and {sin.shape}")
    return cos, sin


def causal_attention_forward(qkv: np.ndarray, n_head: int, scale: float,
                             rotary: tuple[np.ndarray, np.ndarray] | None = None,
                             ) -> tuple[np.ndarray, np.ndarray]:
    """Causal self-attention from the packed projection `(B, T, 3C)`: `(y (B, T, C),
    P (B, n_head, T, T))`; queries and keys rotated by `rotary = (cos, sin)` `(T, d/2)` if
    given (see `nima.kernels.causal_attention`)."""
    cos, sin = _qkv_tables("causal_attention_forward", qkv, n_head, rotary)
    return pick(_ca.causal_attention_forward_numpy,
                _ca.causal_attention_forward_numba)(qkv, n_head, scale, cos, sin)


def causal_attention_backward(qkv: np.ndarray, p: np.ndarray, dy: np.ndarray, n_head: int,
                              scale: float, rotary: tuple[np.ndarray, np.ndarray] | None = None,
                              ) -> np.ndarray:
    """The gradient of `qkv` from the saved weights `p` and the output's gradient `dy`."""
    op = "causal_attention_backward"
    cos, sin = _qkv_tables(op, qkv, n_head, rotary)
    _check_floats(op, qkv, p, dy)
    b, t, width = qkv.shape
    if p.shape != (b, n_head, t, t) or dy.shape != (b, t, width // 3):
        raise ValueError(f"{op}: qkv {qkv.shape} needs weights {(b, n_head, t, t)} and a "
                         f"gradient {(b, t, width // 3)}, got {p.shape} and {dy.shape}")
    return pick(_ca.causal_attention_backward_numpy,
                _ca.causal_attention_backward_numba)(qkv, p, dy, n_head, scale, cos, sin)


def gelu_tanh_forward(x: np.ndarray) -> np.ndarray:
    r"""GPT-2's tanh GELU, $y = x\,\sigma(2u)$, $u = \sqrt{2/\pi}(x + 0.044715 x^3)$
    (`nima.kernels.gelu`); float16 takes the NumPy reference."""
    if x.dtype not in _FLOATS:
        return _gelu.gelu_tanh_forward_numpy(x)
    return pick(_gelu.gelu_tanh_forward_numpy, _gelu.gelu_tanh_forward_numba)(x)


def gelu_tanh_backward(grad: np.ndarray, x: np.ndarray) -> np.ndarray:
    r"""Gradient of the tanh GELU from $\bar y$ and $x$ ($\bar y$ broadcasts to x's shape);
    float16 takes the NumPy reference."""
    try:
        fits = np.broadcast_shapes(grad.shape, x.shape) == x.shape
    except ValueError:
        fits = False
    if not fits:
        raise ValueError(f"gelu_tanh_backward: gradient of shape {grad.shape} does not "
                         f"broadcast to x's shape {x.shape}")
    if x.dtype not in _FLOATS:
        return _gelu.gelu_tanh_backward_numpy(grad, x)
    _check_floats("gelu_tanh_backward", grad, x)
    return pick(_gelu.gelu_tanh_backward_numpy, _gelu.gelu_tanh_backward_numba)(grad, x)


def normal_cdf(x: np.ndarray) -> np.ndarray:
    r"""$\Phi(x) = \tfrac12\bigl(1 + \operatorname{erf}(x/\sqrt2)\bigr)$, the standard normal
    CDF, elementwise in x's dtype (`nima.kernels.erf`; one kernel)."""
    return 0.5 * (1 + _erf.erf(x * (1 / math.sqrt(2))))


def log_softmax_forward(x: np.ndarray) -> np.ndarray:
    r"""$x - \operatorname{lse}(x)$ over the last axis; a fully masked row stays all $-\infty$."""
    _check_rows("log_softmax_forward", x)
    _check_floats("log_softmax_forward", x)
    return pick(_sm.log_softmax_forward_numpy, _sm.log_softmax_forward_numba)(x)


def log_softmax_backward(y: np.ndarray, dy: np.ndarray) -> np.ndarray:
    r"""$dx = dy - e^{y} \sum dy$ per row, from the output $y$; zeros for fully masked rows."""
    _check_same_shape("log_softmax_backward", y, dy)
    _check_rows("log_softmax_backward", y)
    _check_floats("log_softmax_backward", y, dy)
    return pick(_sm.log_softmax_backward_numpy, _sm.log_softmax_backward_numba)(y, dy)


def _checked_targets(logits: np.ndarray, targets: np.ndarray, ignore_index: int) -> np.ndarray:
    """Targets as int64 (N,), each in [0, C) or equal to `ignore_index`."""
    if logits.ndim != 2 or targets.shape != logits.shape[:1]:
        raise ValueError(
            f"cross_entropy: expected logits (N, C) and targets (N,), "
            f"got {logits.shape} and {targets.shape}"
        )
    if not np.issubdtype(targets.dtype, np.integer):
        raise TypeError(f"cross_entropy: targets must be integers, got {targets.dtype}")
    n_classes = logits.shape[1]
    if targets.size == 0 or 0 <= targets.min() <= targets.max() < n_classes:
        return np.ascontiguousarray(targets, dtype=np.int64)  # the common case: two reductions
    bad = (targets != ignore_index) & ((targets < 0) | (targets >= n_classes))
    if bad.any():
        value = targets[np.argmax(bad)]
        raise ValueError(
            f"cross_entropy: target {value} is out of range for {n_classes} classes "
            f"(expected 0 <= target < {n_classes}, or ignore_index={ignore_index})"
        )
    return np.ascontiguousarray(targets, dtype=np.int64)


def cross_entropy_forward(
    logits: np.ndarray,
    targets: np.ndarray,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    r"""Per-row losses (N,) and row log-sum-exps (N,) for logits (N, C), targets (N,).

    $\ell_i = (1-\varepsilon)(\operatorname{lse}_i - x_{i,t_i})
    + \varepsilon(\operatorname{lse}_i - \bar x_i)$; 0 where the target is `ignore_index`,
    $+\infty$ for a fully masked row. The lse is what `cross_entropy_backward` needs.
    """
    _check_floats("cross_entropy_forward", logits)
    targets = _checked_targets(logits, targets, ignore_index)
    forward = pick(_ce.cross_entropy_forward_numpy, _ce.cross_entropy_forward_numba)
    return forward(logits, targets, ignore_index, label_smoothing)


def cross_entropy_backward(
    logits: np.ndarray,
    targets: np.ndarray,
    lse: np.ndarray,
    grad_losses: np.ndarray,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
) -> np.ndarray:
    r"""$\partial L/\partial x_i = g_i(\operatorname{softmax}(x_i) - (1-\varepsilon)\,
    \mathrm{onehot}(t_i) - \varepsilon/C)$; zero rows where ignored or fully masked.

    `lse` and `grad_losses` (N,) are cast to the logits' dtype.
    """
    _check_floats("cross_entropy_backward", logits)
    targets = _checked_targets(logits, targets, ignore_index)
    if lse.shape != targets.shape or grad_losses.shape != targets.shape:
        raise ValueError(
            f"cross_entropy_backward: lse {lse.shape} and grad_losses {grad_losses.shape} "
            f"must both be ({logits.shape[0]},)"
        )
    backward = pick(_ce.cross_entropy_backward_numpy, _ce.cross_entropy_backward_numba)
    return backward(logits, targets, lse, grad_losses, ignore_index, label_smoothing)


def _check_norm(op: str, x: np.ndarray, weight: np.ndarray | None,
                *more: np.ndarray | None) -> None:
    """x has rows (C >= 1) along its last axis; weight is (C,) or None; one float dtype."""
    if x.ndim < 1 or x.shape[-1] == 0:
        raise ValueError(f"{op}: expected rows along a non-empty last axis, got shape {x.shape}")
    if weight is not None and weight.shape != x.shape[-1:]:
        raise ValueError(f"{op}: weight of shape {weight.shape} does not match x of shape "
                         f"{x.shape} (expected ({x.shape[-1]},))")
    _check_floats(op, x, *(a for a in (weight, *more) if a is not None))


def check_eps(op: str, eps: float) -> float:
    r"""`eps` as a float, if it is a finite real number $\ge 0$; else a ValueError naming `op`.

    $\epsilon = 0$ is allowed: a constant row then has $\text{rstd} = 1/0 = \infty$ and
    normalises to NaN, on both backends, as the formula says.
    """
    if isinstance(eps, bool) or not isinstance(eps, int | float | np.integer | np.floating) \
            or not math.isfinite(eps) or eps < 0:
        raise ValueError(f"{op}: eps must be a finite number >= 0, got {eps!r}")
    return float(eps)


def _check_row_stats(op: str, x: np.ndarray, dy: np.ndarray, *stats: np.ndarray) -> None:
    """dy has x's shape; each saved statistic has x.shape[:-1]."""
    if dy.shape != x.shape:
        raise ValueError(f"{op}: gradient shape {dy.shape} and input shape {x.shape} differ")
    for s in stats:
        if s.shape != x.shape[:-1]:
            raise ValueError(f"{op}: saved row statistics of shape {s.shape} do not match "
                             f"input shape {x.shape} (expected {x.shape[:-1]})")


def layer_norm_forward(
    x: np.ndarray, weight: np.ndarray | None = None, bias: np.ndarray | None = None,
    eps: float = 1e-5,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""(y, mean, rstd): $y = (x - \mu)\,\text{rstd} \odot w + b$ over the last axis.

    Biased variance, $\text{rstd} = 1/\sqrt{\sigma^2 + \epsilon}$; weight, bias (C,) or None;
    mean and rstd have shape `x.shape[:-1]` (what `layer_norm_backward` needs).
    """
    _check_norm("layer_norm_forward", x, weight, bias)
    if bias is not None and bias.shape != x.shape[-1:]:
        raise ValueError(f"layer_norm_forward: bias of shape {bias.shape} does not match x of "
                         f"shape {x.shape} (expected ({x.shape[-1]},))")
    eps = check_eps("layer_norm_forward", eps)
    return pick(_ln.layer_norm_forward_numpy, _ln.layer_norm_forward_numba)(x, weight, bias, eps)


def layer_norm_backward(
    dy: np.ndarray, x: np.ndarray, weight: np.ndarray | None, mean: np.ndarray,
    rstd: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""(dx, dweight, dbias) of layer norm from the saved mean and rstd.

    $\bar x = \text{rstd}(\bar{\hat x} - \operatorname{mean}\bar{\hat x} - \hat x
    \operatorname{mean}(\bar{\hat x}\hat x))$, $\bar{\hat x} = \bar y \odot w$;
    dweight $= \sum_{\text{rows}} \bar y \odot \hat x$, dbias $= \sum_{\text{rows}} \bar y$.
    """
    _check_norm("layer_norm_backward", x, weight, dy, mean, rstd)
    _check_row_stats("layer_norm_backward", x, dy, mean, rstd)
    backward = pick(_ln.layer_norm_backward_numpy, _ln.layer_norm_backward_numba)
    return backward(dy, x, weight, mean, rstd)


def rms_norm_forward(
    x: np.ndarray, weight: np.ndarray | None = None, eps: float = 1e-6
) -> tuple[np.ndarray, np.ndarray]:
    r"""(y, rstd): $y = x\,\text{rstd} \odot w$, $\text{rstd} = 1/\sqrt{\operatorname{mean}(x^2)
    + \epsilon}$ over the last axis; rstd has shape `x.shape[:-1]`."""
    _check_norm("rms_norm_forward", x, weight)
    eps = check_eps("rms_norm_forward", eps)
    return pick(_ln.rms_norm_forward_numpy, _ln.rms_norm_forward_numba)(x, weight, eps)


def rms_norm_backward(
    dy: np.ndarray, x: np.ndarray, weight: np.ndarray | None, rstd: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    r"""(dx, dweight) of RMSNorm: $\bar x = \text{rstd}(\bar{\hat x} - \hat x
    \operatorname{mean}(\bar{\hat x}\hat x))$, dweight $= \sum_{\text{rows}} \bar y \odot \hat x$.
    """
    _check_norm("rms_norm_backward", x, weight, dy, rstd)
    _check_row_stats("rms_norm_backward", x, dy, rstd)
    return pick(_ln.rms_norm_backward_numpy, _ln.rms_norm_backward_numba)(dy, x, weight, rstd)


def adam_update(param: np.ndarray, grad: np.ndarray, exp_avg: np.ndarray,
                exp_avg_sq: np.ndarray, lr: float, beta1: float, beta2: float, eps: float,
                weight_decay: float, step: int, decoupled: bool, fused: bool | None = None) -> None:
    r"""One Adam/AdamW step of `param`, `exp_avg` ($m$), `exp_avg_sq` ($v$), in place.

    `fused`: True the numba kernel, False the NumPy reference, None the active backend's. The
    kernel needs C-contiguous `param`, `exp_avg`, `exp_avg_sq` (as every array Nima allocates);
    other layouts take the reference. Both give the same bits.
    """
    arrays = (param, grad, exp_avg, exp_avg_sq)
    if any(a.shape != param.shape for a in arrays):
        shown = ", ".join(str(a.shape) for a in arrays)
        raise ValueError(f"adam_update: param, grad, exp_avg, exp_avg_sq must share a shape, "
                         f"got {shown}")
    _check_floats("adam_update", param, exp_avg, exp_avg_sq)
    reference, kernel = _adam.adam_update_numpy, _adam.adam_update_numba
    update = pick(reference, kernel) if fused is None else (kernel if fused else reference)
    if not all(a.flags.c_contiguous for a in (param, exp_avg, exp_avg_sq)):
        update = reference
    update(param, grad, exp_avg, exp_avg_sq, lr, beta1, beta2, eps, weight_decay, step, decoupled)


def sum_of_squares(x: np.ndarray) -> float:
    r"""$\sum_i x_i^2$ of a float array of any shape and strides, accumulated in float64
    (float16 takes the NumPy reference: the kernel is compiled for float32 and float64)."""
    if x.dtype.kind != "f":
        raise TypeError(f"sum_of_squares: expected a float array, got {x.dtype}")
    if x.dtype not in _FLOATS:
        return _sumsq.sum_of_squares_numpy(x)
    return pick(_sumsq.sum_of_squares_numpy, _sumsq.sum_of_squares_numba)(x)
