"""Native lowerings of the ``scipy.special`` ops, by SciPy's own code, and of ``np.remainder``.

JIT code calls ``@chainrule_special_<function>`` (``chainrule_special_erfinv``, ...): the double
versions of ``scipy.special.cython_special``'s functions, whose addresses the engine binds at link
time (``RUNTIME_SYMBOLS``, as it binds BLAS), so native code computes the same elements as the
ufuncs the NumPy backend calls. A cython_special function takes a trailing ``int`` (Cython's
``skip_dispatch``), passed as 0. float32 operands are widened to double and the result rounded
back, which is what SciPy's float32 loops do for these functions.

``np.remainder`` is NumPy's own formula (``npy_remainder``): C's ``fmod``, moved into the sign of
the divisor, with a zero taking the divisor's sign; on integers, ``srem`` moved the same way.

``scalar_ops`` registers ``EMITTERS`` (float results; integers too for ``mod``); this module imports nothing of the
backend's, so there is no cycle.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import numpy as np

from chainrule.backends.llvm.capsules import exported_address
from chainrule.backends.llvm.irtext import Function

# op -> the name of its double-precision function in cython_special's C API (fused functions are
# exported once per type: ``__pyx_fuse_1psi`` is the double psi, ``__pyx_fuse_0psi`` the complex one)
CYTHON_SPECIAL = {
    "logit": "__pyx_fuse_0logit",
    "erfinv": "__pyx_fuse_0erfinv",
    "erfcx": "__pyx_fuse_1erfcx",
    "gammaln": "gammaln",
    "digamma": "__pyx_fuse_1psi",
    "xlogy": "__pyx_fuse_1xlogy",
    "xlog1py": "__pyx_fuse_1xlog1py",
    "entr": "entr",
    "betaln": "betaln",
    "i0": "i0",
    "i0e": "i0e",
    "i1": "i1",
    "i1e": "i1e",
    "gamma": "__pyx_fuse_1gamma",
    "rgamma": "__pyx_fuse_1rgamma",
    "loggamma": "__pyx_fuse_1loggamma",
    "beta": "beta",
    "binom": "binom",
    "poch": "poch",
    "ndtri": "ndtri",
    "erfcinv": "erfcinv",
    "exp1": "__pyx_fuse_1exp1",
    "dawsn": "__pyx_fuse_1dawsn",
    "spence": "__pyx_fuse_1spence",
    "gammainc": "gammainc",
    "gammaincc": "gammaincc",
    "jv": "__pyx_fuse_1jv",
    "yv": "__pyx_fuse_1yv",
    "iv": "__pyx_fuse_1iv",
    "kv": "__pyx_fuse_1kv",
}
_TYPES = {"float64": "double", "float32": "float"}


def symbol(op: str) -> str:
    """The name JIT code calls ``op``'s cython_special function by."""
    return f"chainrule_special_{op}"


@cache
def address(op: str) -> int:
    """The address of the cython_special function computing ``op`` (an op of ``CYTHON_SPECIAL``)."""
    from scipy.special import cython_special

    return exported_address(cython_special, CYTHON_SPECIAL[op])


def _binder(op: str) -> Callable[[], int]:
    return lambda: address(op)


# Name in JIT code -> function returning its address (the engine imports those a module mentions).
RUNTIME_SYMBOLS: dict[str, Callable[[], int]] = {symbol(op): _binder(op) for op in CYTHON_SPECIAL}


def _cython_special_call(op: str) -> Callable[..., str]:
    def emit(block: Function, operands: list[str], types: list[str], dtype: str) -> str:
        narrow = _TYPES[dtype]
        widened = [o if dtype == "float64" else block.emit(f"fpext float {o} to double") for o in operands]
        parameters = ", ".join(["double"] * len(operands))
        # Not declared pure: SciPy's error reporting reads its global settings (and could warn).
        block.declare(f"declare double @{symbol(op)}({parameters}, i32) nounwind")
        arguments = ", ".join(f"double {w}" for w in widened)
        result = block.emit(f"call double @{symbol(op)}({arguments}, i32 0)")
        return result if dtype == "float64" else block.emit(f"fptrunc double {result} to {narrow}")

    return emit


def _remainder(block: Function, operands: list[str], types: list[str], dtype: str) -> str:
    """NumPy's ``npy_remainder``: ``fmod(a, b)``, plus ``b`` where the two signs differ, and a zero
    with the sign of ``b``; NaN (from b == 0, an infinite a, or a NaN) stays NaN."""
    a, b = operands
    if dtype not in _TYPES:
        return _integer_remainder(block, a, b, np.dtype(dtype))
    t = _TYPES[dtype]
    emit = block.emit
    remainder = block.math("fmod", dtype, a, b)
    nonzero = emit(f"fcmp une {t} {remainder}, 0.0")  # NaN counts as nonzero, as in C's `if (mod)`
    differ = emit(f"xor i1 {emit(f'fcmp olt {t} {b}, 0.0')}, {emit(f'fcmp olt {t} {remainder}, 0.0')}")
    moved = emit(f"select i1 {differ}, {t} {emit(f'fadd {t} {remainder}, {b}')}, {t} {remainder}")
    signed_zero = block.math("copysign", dtype, "0.0", b)
    return emit(f"select i1 {nonzero}, {t} {moved}, {t} {signed_zero}")


def _integer_remainder(block: Function, a: str, b: str, dtype: np.dtype) -> str:
    """NumPy's integer remainder: the sign of ``b``, and 0 for ``b == 0`` (where NumPy warns; LLVM's
    ``srem`` is undefined there, and for ``b == -1`` at the type's minimum, so both divide by 1)."""
    t, emit = f"i{dtype.itemsize * 8}", block.emit  # signed: scalar_ops lowers no unsigned type
    unsafe = emit(f"icmp ule {t} {emit(f'add {t} {b}, 1')}, 1")  # b is 0 or -1
    remainder = emit(f"srem {t} {a}, {emit(f'select i1 {unsafe}, {t} 1, {t} {b}')}")
    differ = emit(f"xor i1 {emit(f'icmp slt {t} {b}, 0')}, {emit(f'icmp slt {t} {remainder}, 0')}")
    moved = emit(f"and i1 {differ}, {emit(f'icmp ne {t} {remainder}, 0')}")
    return emit(f"select i1 {moved}, {t} {emit(f'add {t} {remainder}, {b}')}, {t} {remainder}")


# op -> emitter (block, operands, operand dtypes, result dtype) -> register
EMITTERS: dict[str, Callable[..., str]] = {op: _cython_special_call(op) for op in CYTHON_SPECIAL}
EMITTERS["mod"] = _remainder
