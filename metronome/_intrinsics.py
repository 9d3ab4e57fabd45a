"""LLVM-level intrinsics the live C callbacks use: an address as ``void*`` and CLOCK_MONOTONIC in ns.

Kept apart from :mod:`metronome._kernels` (which holds the kernels themselves); compiled code calls them directly.
"""

from __future__ import annotations

from ._jitcache import CHOICE as _CHOICE  # noqa: F401  (first: it picks numba's cache folder before numba loads)
from llvmlite import ir  # noqa: E402
from numba import types  # noqa: E402
from numba.core import cgutils  # noqa: E402
from numba.extending import intrinsic  # noqa: E402


@intrinsic
def _voidptr(typingctx, addr):
    """An integer address as a ``void*`` (numba documents this pattern for arrays from raw memory)."""
    sig = types.voidptr(addr)

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], cgutils.voidptr_t)

    return sig, codegen


@intrinsic
def _monotonic_ns(typingctx):
    """``clock_gettime(CLOCK_MONOTONIC)`` in ns, called directly from compiled code (vDSO: no syscall, no
    allocation), declared at the LLVM level so the callback stays cacheable (a ctypes global would not be)."""
    sig = types.int64()

    def codegen(context, builder, signature, args):
        i64 = ir.IntType(64)
        ts_t = ir.LiteralStructType([i64, i64])
        fnty = ir.FunctionType(ir.IntType(32), [ir.IntType(32), ts_t.as_pointer()])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "clock_gettime")
        ts = cgutils.alloca_once(builder, ts_t)
        builder.call(fn, [ir.Constant(ir.IntType(32), 1), ts])  # CLOCK_MONOTONIC = 1 on Linux
        sec = builder.load(cgutils.gep_inbounds(builder, ts, 0, 0))
        nsec = builder.load(cgutils.gep_inbounds(builder, ts, 0, 1))
        return builder.add(builder.mul(sec, ir.Constant(i64, 1000000000)), nsec)

    return sig, codegen
