"""1-D views of raw memory inside kernels (private; used by the fusion and vote kernels).

Fusion reads M members without stacking them. Handing numba a list or tuple of arrays would compile
one specialisation per member count, dtype mix, layout and read-only flag (2-6 s each); instead the
public wrappers validate every member, keep it alive for the duration of the call, and pass its base
address (``ndarray.ctypes.data``) plus strides in plain integer arrays. Kernels then build
C-contiguous 1-D views of exactly the rows they read with :func:`_view`. One compiled signature serves
every member count, float16/float32/label mix, and read-only or writable input.

The contract a caller must keep: every address and length describes memory inside a live array of the
stated dtype. Nothing here checks that (the public wrappers do, before calling a kernel).

With ``NUMBA_DISABLE_JIT=1`` the same code runs in Python through ctypes pointers.
"""

from __future__ import annotations

import ctypes

import numba
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, overload

from . import jit

__all__ = ["_pointer", "_view"]


def _pointer(address):
    """``void *`` to ``address`` (Python body, for ``NUMBA_DISABLE_JIT=1``)."""
    return ctypes.c_void_p(int(address))


@intrinsic
def _pointer_intrinsic(typingctx, address):
    if not isinstance(address, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        value = context.cast(builder, args[0], signature.args[0], types.intp)
        return builder.inttoptr(value, cgutils.voidptr_t)

    return types.voidptr(address), codegen


@overload(_pointer, jit_options={"nogil": True})
def _pointer_impl(address):
    if isinstance(address, types.Integer):
        return lambda address: _pointer_intrinsic(address)  # type: ignore[call-arg]
    return None


@jit
def _view(address, n, dtype):
    """C-contiguous 1-D array of ``n`` items of ``dtype`` starting at byte ``address``."""
    return numba.carray(_pointer(address), (n,), dtype)  # type: ignore[attr-defined]
