"""Linear and log space for the streaming kernels (private; :mod:`.fusion`, :mod:`.accumulate`,
:mod:`.channelwise`).

A kernel that adds members reads each value through :func:`_load16` / :func:`_load32` (and a hard
member's one-hot through :func:`_hard_values`). :func:`log_variant` compiles the same Python body a
second time with those three names bound to their log-space versions (numba freezes a function's globals
when it compiles it), so one body gives two kernels: the linear one is exactly what it was (same code,
same speed, same compile time) and the log one costs compile time only when log space is used.

The product form of log space (equal weights; :func:`product_variant`): the same body once more, its source
rewritten so that every class sum is a product of ``max(p, eps) * 2**s`` (:func:`_load_product`), whose
argmax is that of the sum of logs without a log per value.

Log space: a float16 member adds ``tab[bits]``, the caller's table of numpy's float32
``log(max(p, eps))`` for each of the 65536 patterns (exact; one load from a 256 KiB table per value), a
float32 member :func:`_log32` (two more 65536-entry tables, ~1e-9 from numpy's log), and a one-hot
member ``log(1) = 0`` / ``log(eps)`` (:func:`medfuse._kernels.logf._log_f32`). Range and sum checks
keep reading the raw bits.
"""

from __future__ import annotations

import ast
import functools
import inspect
import textwrap
import types as pytypes

import numpy as np
from numba import types
from numba.extending import overload

from . import jit
from .f16 import _bits_to_float32
from .logf import _float32_bits, _log_f32

__all__ = ["F32_INV", "F32_LOG", "_hard_values", "_load16", "_load32", "log_variant", "product_variant"]


@jit
def _load16(bits, tab, eps):
    """Value a member adds (times its weight): the probability (linear space; float16 or float32 bits)."""
    return _bits_to_float32(bits)


@jit
def _load32(bits, tab, eps):
    """Value a float32 member adds (times its weight): the probability (linear space)."""
    return _bits_to_float32(bits)


@jit
def _hard_values(eps, tab):
    """What a hard member adds (times its weight) where its label is / is not the class: 1, 0."""
    return np.float32(1.0), np.float32(0.0)


#: offsets in the log-space table: [float16 log | float32 log of the top 16 bits | their reciprocal]
F32_LOG = 65536
F32_INV = 131072


@jit
def _log32(bits, tab, eps):
    """``log(max(p, eps))`` of a float32 pattern: ``h`` = ``p`` cut to its top 16 bits (exact), then
    ``log(h) + log1p(r)`` with ``r = (p - h) / h < 2**-7`` (``p - h`` is exact), ``log(h)`` and ``1 / h``
    from the caller's table (numpy, float64 rounded to float32), ``log1p(r) = r (1 - r (1/2 - r / 3))``
    (truncation under 1e-9). Absolute error ~1e-9 against numpy's float64 log."""
    x = max(_bits_to_float32(bits), eps)
    b = _float32_bits(x)
    hi = b >> np.uint32(16)
    h = _bits_to_float32(np.uint32(hi << np.uint32(16)))
    r = (x - h) * tab[F32_INV + hi]
    return tab[F32_LOG + hi] + r * (np.float32(1.0) - r * (np.float32(0.5) - r * np.float32(1.0 / 3.0)))


def _load_log(bits, tab, eps):
    """Log space, either kind: ``tab[bits]`` for a float16 pattern (the caller's float32 table of numpy's
    ``log(max(p, eps))``), :func:`_log32` for a float32 pattern. Both are table loads plus a few
    operations, which keep log-space fusion memory-bound like the linear mean (an inlined polynomial log
    made the flat kernel's float32 loops 15x slower). This body runs with ``NUMBA_DISABLE_JIT=1``;
    compiled kernels use the overload below (typed per call site)."""
    if isinstance(bits, np.uint16):
        return tab[bits]
    return _log32(bits, tab, eps)


@overload(_load_log, jit_options={"nogil": True})
def _load_log_impl(bits, tab, eps):
    if bits == types.uint16:
        return lambda bits, tab, eps: tab[bits]
    if bits == types.uint32:
        return lambda bits, tab, eps: _log32(bits, tab, eps)
    return None


@jit
def _hard_values_log(eps, tab):
    """Log space: a one-hot member adds log(1) = 0 and log(eps)."""
    return np.float32(0.0), _log_f32(eps)


@jit
def _load_product(bits, tab, eps):
    """Product form of log space: the factor ``max(p, eps) * 2**s`` a member multiplies in, ``tab[0] = 2**s``
    (exact: a power of two), for float16 and float32 bits alike."""
    return max(_bits_to_float32(bits), eps) * tab[0]


@jit
def _hard_values_product(eps, tab):
    """Product form: a one-hot member's factors ``1 * 2**s`` and ``eps * 2**s``."""
    return tab[0], eps * tab[0]


def _variant(fn, suffix, **replace):
    """``fn`` compiled with some of its module globals replaced (numba freezes globals at compile time)."""
    py = getattr(fn, "py_func", fn)
    scope = dict(py.__globals__)
    scope.update(replace)
    new = pytypes.FunctionType(py.__code__, scope, py.__name__, py.__defaults__, py.__closure__)
    new.__qualname__ = py.__qualname__ + suffix  # its own numba cache file
    new.__doc__ = py.__doc__
    return jit(new)


class _ToProduct(ast.NodeTransformer):
    """``u += w * _load16(...)`` / ``u += w * _load32(...)`` -> ``u *= _load16(...)``; ``u += (hot if ... else
    cold)`` -> ``u *= (...)``; ``zero if first else x`` -> ``one if first else x``. Counts what it changed."""

    def __init__(self) -> None:
        self.sums = self.starts = 0

    def visit_AugAssign(self, node: ast.AugAssign) -> ast.AST:
        self.generic_visit(node)
        if not (isinstance(node.target, ast.Name) and node.target.id == "u" and isinstance(node.op, ast.Add)):
            return node
        value = node.value
        if (isinstance(value, ast.BinOp) and isinstance(value.op, ast.Mult) and isinstance(value.right, ast.Call)
                and isinstance(value.right.func, ast.Name) and value.right.func.id in ("_load16", "_load32")):
            value = value.right
        elif not isinstance(value, ast.IfExp):
            raise TypeError(f"line {node.lineno}: a class sum `u += ...` the product form does not know")
        self.sums += 1
        return ast.copy_location(ast.AugAssign(target=node.target, op=ast.Mult(), value=value), node)

    def visit_IfExp(self, node: ast.IfExp) -> ast.AST:
        self.generic_visit(node)
        if (isinstance(node.test, ast.Name) and node.test.id == "first" and isinstance(node.body, ast.Name)
                and node.body.id == "zero"):
            self.starts += 1
            node.body = ast.copy_location(ast.Name(id="one", ctx=ast.Load()), node.body)
        return node


@functools.cache
def product_variant(fn):
    """The product form of a kernel body written with :func:`_load16` / :func:`_load32` / :func:`_hard_values`
    and class sums ``u = zero if first else ...; u += w * _load16(...)``: its source with every class sum
    turned into a product (``u = one if first ...; u *= _load16(...)``, see :class:`_ToProduct`) and the
    loads bound to :func:`_load_product`, compiled lazily. The kernel is called with weights 1 (a hard
    member's factor is ``1 * hot``) and ``tab = [2**s]``. Built once per kernel, on first use (it reads
    the kernel's source); None where that source cannot be read (an application frozen without its
    ``.py`` files): callers then sum logs."""
    py = getattr(fn, "py_func", fn)
    try:
        source = inspect.getsource(py)
    except OSError:
        return None
    tree = ast.parse(textwrap.dedent(source))
    ast.increment_lineno(tree, py.__code__.co_firstlineno - 1)
    fdef = tree.body[0]
    if not isinstance(fdef, ast.FunctionDef):  # pragma: no cover - kernels are functions
        raise TypeError(f"{py.__name__} is not a function")
    fdef.decorator_list = []
    change = _ToProduct()
    change.visit(tree)
    if change.sums == 0 or change.starts == 0:  # pragma: no cover - a kernel edited out of the pattern
        raise TypeError(f"{py.__name__}: no class sum in the product form's pattern")
    ast.fix_missing_locations(tree)
    scope = dict(py.__globals__)
    scope.update(_load16=_load_product, _load32=_load_product, _hard_values=_hard_values_product)
    exec(compile(tree, py.__code__.co_filename, "exec"), scope)  # our own kernel's source, rewritten
    new = scope[py.__name__]
    new.__qualname__ = py.__qualname__ + "_product"  # its own numba cache file
    new.__doc__ = py.__doc__
    return jit(new)


def log_variant(fn):
    """The log-space kernel of a kernel body written with :func:`_load16` / :func:`_load32` /
    :func:`_hard_values` (compiled lazily, like every kernel)."""
    return _variant(fn, "_log", _load16=_load_log, _load32=_load_log, _hard_values=_hard_values_log)
