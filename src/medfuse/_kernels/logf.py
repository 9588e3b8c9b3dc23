"""A natural logarithm of float32 that vectorises (private; the log-space fusion of :mod:`.fusion`).

numba compiles ``np.log`` on float32 to a call of the C library's ``logf`` per value unless Intel's SVML
is installed (it is not on the development machines): a scalar call per value is ~40x slower than
reading float16 data. :func:`_log_f32` is the classic Cephes ``logf`` algorithm written branch-free in
plain float32 arithmetic and bit operations, which LLVM vectorises like any other loop:

``x = 2**e * m`` with ``m`` in ``[sqrt(1/2), sqrt(2))`` (exponent and mantissa taken from the bit
pattern), ``f = m - 1``, ``log(x) = e * ln2 + f - f**2 / 2 + f**3 * P(f)`` with Cephes' degree-8
polynomial ``P`` and ``ln2`` split in two parts (``0.693359375 - 2.12194440e-4``). Cephes documents a
peak relative error of 7.6e-8 on ``[0.5, 2]`` (under 1 ulp of float32); measured against numpy's float64
log over every float16 value in ``[1e-6, 1]`` and 10**6 random float32 values, the largest error is
within 2 ulp (``tests/test_log_fusion.py``). Valid for positive normal float32 inputs only: the fusion
kernel clamps every value to ``eps`` (a positive normal number) first.

The arithmetic is exactly the twin's (``tests/_reference/twin_fusion.py`` ``log_f32``): no FMA
contraction (medfuse compiles without fastmath), same operation order, so results are bit-identical.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir  # type: ignore[import-untyped]
from numba import types
from numba.extending import intrinsic, overload

from . import jit
from .f16 import _bits_to_float32

__all__ = ["LOG_COEFFS", "PLOGP_COEFFS", "_fma", "_log_f32", "_log_split", "_plogp"]

#: Cephes logf polynomial, highest degree first
LOG_COEFFS = (7.0376836292e-2, -1.1514610310e-1, 1.1676998740e-1, -1.2420140846e-1, 1.4249322787e-1,
              -1.6668057665e-1, 2.0000714765e-1, -2.4999993993e-1, 3.3333331174e-1)
_C = tuple(np.float32(c) for c in LOG_COEFFS)
_LN2_HI = np.float32(0.693359375)
_LN2_LO = np.float32(-2.12194440e-4)
_HALF = np.float32(0.5)
_ONE = np.float32(1.0)
#: bit pattern of sqrt(2) / 2 rescaled into [1, 2): mantissas above sqrt(2) move down one octave
_SQRT2_MANT = np.uint32(0x003504F3)


def _float32_bits(x):
    """Bit pattern (uint32) of a float32 (Python body, for ``NUMBA_DISABLE_JIT=1``)."""
    return np.array(x, dtype=np.float32).view(np.uint32)[()]


@intrinsic
def _float32_bits_intrinsic(typingctx, x):
    if x != types.float32:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(32))

    return types.uint32(x), codegen


@overload(_float32_bits, jit_options={"nogil": True})
def _float32_bits_impl(x):
    if x == types.float32:
        return lambda x: _float32_bits_intrinsic(x)  # type: ignore[call-arg]
    return None


@jit
def _log_split(x):
    """``x = 2**e (1 + f)`` with ``1 + f`` in ``[sqrt(1/2), sqrt(2))``, from the bits of a positive normal
    float32 (branch-free); returns ``(e, f)`` (int32, float32; ``f`` exact)."""
    bits = _float32_bits(x)
    mant = np.uint32(bits & np.uint32(0x007FFFFF))
    up = mant > _SQRT2_MANT  # m in (sqrt(2), 2): use m / 2 and e + 1
    e = np.int32(bits >> np.uint32(23)) - np.int32(127) + (np.int32(1) if up else np.int32(0))
    m = _bits_to_float32(np.uint32(mant | (np.uint32(0x3F000000) if up else np.uint32(0x3F800000))))
    return e, m - _ONE


@jit
def _log_f32(x):
    """Natural log of a positive normal float32 ``x`` (branch-free; see the module docstring)."""
    e, f = _log_split(x)
    z = f * f
    y = _C[0] * f + _C[1]
    y = y * f + _C[2]
    y = y * f + _C[3]
    y = y * f + _C[4]
    y = y * f + _C[5]
    y = y * f + _C[6]
    y = y * f + _C[7]
    y = y * f + _C[8]
    y = y * f * z
    fe = np.float32(e)
    y += _LN2_LO * fe
    y -= _HALF * z
    r = f + y
    r += _LN2_HI * fe
    return r


#: ``log(1 + f) = f - f**2 / 2 + f**3 * P(f)`` on ``[sqrt(1/2) - 1, sqrt(2) - 1]``: P of degree 5 (highest first),
#: fitted for :func:`_plogp` (the whole log within 1e-7 absolute)
PLOGP_COEFFS = (-0.10222571837335553, 0.1613914841971851, -0.17166653206276256, 0.19910450172939131,
                -0.24980600176845913, 0.3333468590743253)
_P0, _P1, _P2, _P3, _P4, _P5 = (np.float32(c) for c in PLOGP_COEFFS)
_LN2 = np.float32(np.log(2.0))


def _fma(a, b, c):
    """``a * b + c`` of float32 values, rounded once where compiled (LLVM's ``llvm.fma``: one instruction on
    any x86-64-v3 CPU); the Python body (``NUMBA_DISABLE_JIT=1``) rounds twice. For the maps only, whose
    tolerance is far above that difference: the fused labels never use it."""
    return np.float32(a * b + c)


@intrinsic
def _fma_intrinsic(typingctx, a, b, c):  # pragma: no cover - numba codegen, never run as Python
    if not (a == b == c == types.float32):
        return None

    def codegen(context, builder, signature, args):
        f32 = ir.FloatType()
        fn = builder.module.declare_intrinsic("llvm.fma", [f32], ir.FunctionType(f32, [f32, f32, f32]))
        return builder.call(fn, args)

    return types.float32(a, b, c), codegen


@overload(_fma, jit_options={"nogil": True})
def _fma_impl(a, b, c):  # pragma: no cover - numba typing, never run as Python
    if a == b == c == types.float32:
        return lambda a, b, c: _fma_intrinsic(a, b, c)  # type: ignore[call-arg]
    return None


@jit
def _plogp(x):
    """``x ln x`` of a float32 ``x`` (0 at ``x <= 0``; within 1e-7 absolute for ``x <= 1``), branch-free.

    ``x = 2**k * m`` with ``m`` in ``[sqrt(1/2), sqrt(2))`` by integer operations on the bit pattern (adding
    ``1 - bits(sqrt(1/2))`` carries mantissas above ``sqrt(2)`` into the exponent), then the degree-5
    polynomial of :data:`PLOGP_COEFFS`: ~20 vector operations, fewer than :func:`medfuse._kernels.logf._log_f32`
    (whose last ulp the maps do not need) or a table gather. A subnormal or zero ``x`` gets a finite log
    (about ``-88``), so ``x ln x`` is 0 or tiny. A negative ``x`` (-0.0, or a rounding below 0 that the range
    check accepts) counts as 0, as ``0 ln 0``; a non-finite ``x`` (a refused member) gives garbage, never an
    error.
    """
    x = x if x > np.float32(0.0) else np.float32(0.0)  # a select: stays vectorised
    ix = np.uint32(_float32_bits(x) + np.uint32(0x004AFB0D))  # np.uint32(...): 32-bit lanes (numba widens)
    k = np.float32(np.int32(ix >> np.uint32(23))) - np.float32(127.0)
    f = _bits_to_float32(np.uint32((ix & np.uint32(0x007FFFFF)) + np.uint32(0x3F3504F3))) - np.float32(1.0)
    z = f * f
    y = _fma(_P0, f, _P1)
    y = _fma(y, f, _P2)
    y = _fma(y, f, _P3)
    y = _fma(y, f, _P4)
    y = _fma(y, f, _P5)
    return x * _fma(k, _LN2, _fma(y * f, z, _fma(np.float32(-0.5), z, f)))
