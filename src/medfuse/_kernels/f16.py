"""float16 (and float32) values read as raw bits and converted in registers (private).

numba has no float16 arithmetic on the CPU, so kernels read float16 data through a ``uint16`` view and
call :func:`_bits_to_float32`. Compiled, that is LLVM's ``fpext half -> float`` on the bit pattern: exact
for every one of the 65536 patterns (NaNs stay NaN), and vectorised by LLVM to the F16C ``vcvtph2ps``
instruction (or its AVX-512 form), so converting costs no more than reading float32. float32 data is read
through a ``uint32`` view the same way (a free bitcast), which lets kernels check ranges on the integer
bits: for non-negative finite floats, the order of the bit patterns is the order of the values, and every
negative value, infinity and NaN has a larger pattern than ``1.0`` (see :data:`ONE_BITS`).

With ``NUMBA_DISABLE_JIT=1`` the plain-Python bodies below run instead (slowly, for coverage).
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir  # type: ignore[import-untyped]
from numba import types
from numba.extending import intrinsic, overload

from .kinds import ONE_BITS

__all__ = ["ONE_BITS", "_bits_to_float32"]


def _bits_to_float32(bits):
    """float32 value of a float16 (``uint16``) or float32 (``uint32``) bit pattern.

    This body runs only with ``NUMBA_DISABLE_JIT=1``; compiled kernels use the intrinsic below.
    """
    if isinstance(bits, (np.uint16, np.uint32)):
        source = np.float16 if isinstance(bits, np.uint16) else np.float32
        return np.array(bits).view(source).astype(np.float32)[()]
    raise TypeError(f"expected a uint16 or uint32 scalar, got {type(bits).__name__}")


@intrinsic
def _bits_to_float32_intrinsic(typingctx, bits):
    if bits == types.uint16:
        def codegen(context, builder, signature, args):
            return builder.fpext(builder.bitcast(args[0], ir.HalfType()), ir.FloatType())
    elif bits == types.uint32:
        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], ir.FloatType())
    else:
        return None
    return types.float32(bits), codegen


@overload(_bits_to_float32, jit_options={"nogil": True})
def _bits_to_float32_impl(bits):
    if bits in (types.uint16, types.uint32):
        return lambda bits: _bits_to_float32_intrinsic(bits)  # type: ignore[call-arg]
    return None
