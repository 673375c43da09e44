r"""A vectorisable $e^x$ for the numba kernels.

There is no SVML on this machine, so `np.exp` inside a numba loop stays a scalar libm call and a
fused softmax is exp-bound. `fast_exp` uses only operations LLVM can vectorise (multiply-add,
`floor`, float-to-int conversion, a bit cast and selects):

1. range reduction: $n = \lfloor x \log_2 e + \tfrac12 \rfloor$ and
   $r = x - n \ln 2 \in [-\tfrac{\ln 2}{2}, \tfrac{\ln 2}{2}]$, with $\ln 2$ split into a
   short high part and a low correction (Cody–Waite) so $n \ln 2$ is subtracted exactly;
2. $e^r \approx 1 + c_1 r + \dots + c_5 r^5$, a minimax polynomial for the relative error;
3. $2^n$ is built directly from its IEEE-754 bits, $(n + 127) \cdot 2^{23}$, bit cast to
   float32; $e^x = 2^n e^r$.

Domain and special values (float32): $x < \ln(\text{FLT\_MIN}) \approx -87.34$ (including
$-\infty$) gives exactly $0$ — results that would be subnormal are flushed; $x > 88.03$ gives
$+\infty$ (true overflow is at 88.72; Nima only calls it with $x \le 0$, after subtracting a row
maximum); NaN stays NaN. Inside the domain the relative error is below $2\cdot10^{-7}$ (about
2 ulp; the polynomial alone is good to $9\cdot10^{-8}$), checked over a dense grid by the tests.

float64 is used for gradient checks, not for speed, so `fast_exp` on float64 is plain
`math.exp` (correctly rounded to about 1 ulp); the kernels are written once and specialise on the
dtype.

The bit cast is a tiny `numba.extending.intrinsic`; like `fast_exp` itself it has a pure-Python
twin, so everything still runs with `NUMBA_DISABLE_JIT=1`.
"""

import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic, overload


# --8<-- [start:bitcast]
def int32_bits_to_float32(bits: int) -> np.float32:
    """Reinterpret the 32 bits of an int32 as a float32 (pure-Python path)."""
    return np.int32(bits).view(np.float32)


@intrinsic
def _int32_bits_to_float32(typingctx, bits):
    """The same bit cast as one LLVM `bitcast` instruction, for compiled code."""
    if not isinstance(bits, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        as_int32 = context.cast(builder, args[0], signature.args[0], types.int32)
        return builder.bitcast(as_int32, ir.FloatType())

    return types.float32(bits), codegen


@overload(int32_bits_to_float32)
def _int32_bits_to_float32_jit(bits):
    return lambda bits: _int32_bits_to_float32(bits)
# --8<-- [end:bitcast]


# --8<-- [start:fast_exp]
_LOG2E = np.float32(1.44269504088896341)
_LN2_HI = np.float32(0.693359375)  # few mantissa bits: n * _LN2_HI is exact
_LN2_LO = np.float32(-2.12194440e-4)  # ln 2 - _LN2_HI
_EXP_LO = np.float32(-87.3365447505531)  # ln(FLT_MIN): below this, flush to 0
_EXP_HI = np.float32(88.0296919311)  # largest x whose n fits the float32 exponent
# Minimax fit of e^r on [-ln2/2, ln2/2] for relative error, constant term pinned to 1.
_C1 = np.float32(0.9999997019767761)
_C2 = np.float32(0.4999915063381195)
_C3 = np.float32(0.1666763573884964)
_C4 = np.float32(0.04189793020486832)
_C5 = np.float32(0.008290313184261322)


@njit(cache=True, fastmath={"contract"})
def fast_exp_float32(x: np.float32) -> np.float32:
    """$e^x$ in float32 by range reduction, a degree-5 polynomial and exponent bits.

    Branch-free (selects only) so a loop calling it vectorises; about 20 vector instructions.
    $n$ comes from $x$ clamped to the domain (the float-to-int conversion is then always
    defined), $r$ from $x$ itself, so a NaN flows through the polynomial into the result.
    """
    xc = x if x > _EXP_LO else _EXP_LO
    xc = xc if xc < _EXP_HI else _EXP_HI
    n = np.floor(xc * _LOG2E + np.float32(0.5))
    r = x - n * _LN2_HI - n * _LN2_LO
    er = ((((_C5 * r + _C4) * r + _C3) * r + _C2) * r + _C1) * r + np.float32(1)
    two_n = int32_bits_to_float32(np.int32((n + np.float32(127)) * np.float32(8388608)))
    y = er * two_n
    y = np.float32(0) if x < _EXP_LO else y
    return np.float32(np.inf) if x > _EXP_HI else y


def fast_exp(x: float) -> float:
    r"""$e^x$: the polynomial `fast_exp_float32` for float32, `math.exp` for float64.

    This Python body runs only when called from Python or under `NUMBA_DISABLE_JIT=1`; compiled
    callers get the `overload` below. NumPy scalars warn where the compiled code silently
    overflows into a value the final selects discard (e.g. $x = -\infty$), hence the `errstate`.
    """
    if isinstance(x, np.float32):
        with np.errstate(over="ignore", invalid="ignore"):
            return fast_exp_float32(x)
    return math.exp(x)


@overload(fast_exp)
def _fast_exp_jit(x):
    if x == types.float32:
        return lambda x: fast_exp_float32(x)
    if x == types.float64:
        return lambda x: math.exp(x)
    return None
# --8<-- [end:fast_exp]
