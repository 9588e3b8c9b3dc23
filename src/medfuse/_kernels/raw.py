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
from collections.abc import Callable
from typing import Any

import numba
import numpy as np
from llvmlite import ir  # type: ignore[import-untyped]
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, overload

from . import jit

__all__ = ["_pointer", "_prefetch", "_store_labels", "_view", "inline"]


def inline(fn: Callable[..., Any]) -> Any:
    """``numba.njit(inline="always")``: a kernel helper that numba pastes into every caller before typing.

    Each call site is typed on its own (so one helper serves uint8 and uint16) and a branch on a constant
    argument (``if size == 4`` with ``size`` a literal at the call site) is pruned before typing: the
    compiled kernel is the flat function. No separate function is compiled, and with
    ``NUMBA_DISABLE_JIT=1`` the helper is a plain Python function. Every call site costs compile time
    (numba copies the helper's IR there and types it anew): fine for the vote kernel's two loops, too
    much for the fusion kernel's ten (see :mod:`medfuse._kernels.fusion`).
    """
    return numba.njit(inline="always", nogil=True)(fn)


def _pointer(address):
    """``void *`` to ``address`` (Python body, for ``NUMBA_DISABLE_JIT=1``)."""
    return ctypes.c_void_p(int(address))


@intrinsic
def _pointer_intrinsic(typingctx, address):  # pragma: no cover - numba codegen, never run as Python
    if not isinstance(address, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        value = context.cast(builder, args[0], signature.args[0], types.intp)
        return builder.inttoptr(value, cgutils.voidptr_t)

    return types.voidptr(address), codegen


@overload(_pointer, jit_options={"nogil": True})
def _pointer_impl(address):  # pragma: no cover - numba typing, never run as Python
    if isinstance(address, types.Integer):
        return lambda address: _pointer_intrinsic(address)  # type: ignore[call-arg]
    return None


@jit
def _view(address, n, dtype):
    """C-contiguous 1-D array of ``n`` items of ``dtype`` starting at byte ``address``."""
    return numba.carray(_pointer(address), (n,), dtype)  # type: ignore[attr-defined]


@inline
def _load_labels(src_addr, src_kind, s0, lab, n):
    """``lab[:n] = src[s0:s0 + n]`` from a label map at byte ``src_addr``: uint8 items if ``src_kind == 0``,
    else uint16 (the reverse of :func:`_store_labels`)."""
    if src_kind == 0:
        i8 = _view(src_addr + s0, n, np.uint8)
        for i in range(n):
            lab[i] = i8[i]
    else:
        i16 = _view(src_addr + 2 * s0, n, np.uint16)
        for i in range(n):
            lab[i] = i16[i]


@inline
def _store_labels(out_addr, out_kind, s0, lab, n):
    """``out[s0:s0 + n] = lab[:n]`` for the label output at byte ``out_addr``: uint8 items if ``out_kind == 0``,
    else uint16."""
    if out_kind == 0:
        o8 = _view(out_addr + s0, n, np.uint8)
        for i in range(n):
            o8[i] = lab[i]
    else:
        o16 = _view(out_addr + 2 * s0, n, np.uint16)
        for i in range(n):
            o16[i] = lab[i]


def _prefetch(address):
    """Hint the CPU to bring the cache line at byte ``address`` into L1 (no effect on results).

    This body runs only with ``NUMBA_DISABLE_JIT=1`` (and does nothing); compiled kernels emit LLVM's
    ``llvm.prefetch`` (read, locality 3: ``prefetcht0`` on x86), which never faults, so it may point past
    the end of an array.
    """
    return None


# The same three parts as _pointer (Python body, @intrinsic code generator, @overload): numba's pattern
# for an intrinsic, repeated per intrinsic.
@intrinsic
def _prefetch_intrinsic(typingctx, address):  # pragma: no cover - numba codegen, never run as Python
    if not isinstance(address, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        i8p = ir.IntType(8).as_pointer()
        ptr = builder.inttoptr(context.cast(builder, args[0], signature.args[0], types.intp), i8p)
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
        fn = builder.module.declare_intrinsic("llvm.prefetch", [i8p], fnty)
        builder.call(fn, [ptr, ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return types.none(address), codegen


@overload(_prefetch, jit_options={"nogil": True})
def _prefetch_impl(address):  # pragma: no cover - numba typing, never run as Python
    if isinstance(address, types.Integer):
        return lambda address: _prefetch_intrinsic(address)  # type: ignore[call-arg]
    return None
