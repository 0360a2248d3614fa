"""LAPACK for JIT code: SciPy's ``cython_lapack`` functions by address, their workspace sizes, and
what a nonzero ``info`` means.

JIT code calls ``@chainrule_lapack_<name>`` (``chainrule_lapack_dpotrf``, ...); the engine binds
each name to the function ``scipy.linalg.cython_lapack`` exports (``RUNTIME_SYMBOLS``), as it
binds BLAS, so cached object code holds no address. Those are C wrappers of the Fortran routines:
every argument a pointer, no hidden string lengths. ``trsm``, ``gemm``, ``axpy``, ``copy`` and
``scal`` come from ``cython_blas``.

Workspace sizes are asked of LAPACK itself (``lwork = -1``) when the kernel is planned: the shapes
are static, so the answer is too, and the workspace is a fixed part of the kernel's arena.

A factorization that fails (``info > 0``) raises ``LinAlgError`` after the native call with
NumPy's own message ("Singular matrix", "Matrix is not positive definite", ...): the class is
both a ``ChainruleError`` (naming the user's line) and NumPy's ``LinAlgError``, so code catching
NumPy's error catches it on either backend.
"""

from __future__ import annotations

import ctypes
import math
from collections.abc import Callable
from functools import cache
from typing import Any, NoReturn

import numpy as np

from chainrule.backends.llvm import blas
from chainrule.backends.llvm.capsules import exported_address
from chainrule.errors import ChainruleError

# routine (without its d/s prefix) -> the number of (pointer) arguments it takes
ARITY = {
    "potrf": 5,  # uplo, n, a, lda, info
    "gesv": 8,  # n, nrhs, a, lda, ipiv, b, ldb, info
    "getrf": 6,  # m, n, a, lda, ipiv, info
    "getrs": 9,  # trans, n, nrhs, a, lda, ipiv, b, ldb, info
    "syevd": 11,  # jobz, uplo, n, a, lda, w, work, lwork, iwork, liwork, info
    "gesdd": 14,  # jobz, m, n, a, lda, s, u, ldu, vt, ldvt, work, lwork, iwork, info
    "geqrf": 8,  # m, n, a, lda, tau, work, lwork, info
    "orgqr": 9,  # m, n, k, a, lda, tau, work, lwork, info
    "laset": 7,  # uplo, m, n, alpha, beta, a, lda
    "lacpy": 7,  # uplo, m, n, a, lda, b, ldb
    "trsm": 11,  # side, uplo, transa, diag, m, n, alpha, a, lda, b, ldb (BLAS)
    "gemm": 13,  # transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc (BLAS)
    "axpy": 6,  # n, alpha, x, incx, y, incy (BLAS)
    "copy": 5,  # n, x, incx, y, incy (BLAS)
    "scal": 4,  # n, alpha, x, incx (BLAS)
    "lange": 6,  # norm, m, n, a, lda, work: returns the norm (a double or float), not void
}
_BLAS = ("trsm", "gemm", "axpy", "copy", "scal")
# routines that return a value of the dtype (the others return nothing)
_VALUED = ("lange",)
_PREFIX = {"float64": "d", "float32": "s"}


class LinAlgError(ChainruleError, np.linalg.LinAlgError):
    """A factorization failed on the values given (a singular matrix, one not positive definite,
    an eigensolver that did not converge): NumPy's ``LinAlgError``, raised by native code."""


def routine(name: str, dtype: str) -> str:
    """The LAPACK name of ``name`` for ``dtype``: ``routine("potrf", "float32") == "spotrf"``;
    ``orgqr`` is LAPACK's ``dorgqr``/``sorgqr``."""
    return _PREFIX[dtype] + name


def symbol(name: str, dtype: str) -> str:
    """The name JIT code calls ``routine(name, dtype)`` by."""
    return f"chainrule_lapack_{routine(name, dtype)}"


def declaration(name: str, dtype: str) -> str:
    parameters = ", ".join(["ptr"] * ARITY[name])
    return f"declare {returns(name, dtype)} @{symbol(name, dtype)}({parameters}) nounwind"


def returns(name: str, dtype: str) -> str:
    """The LLVM type ``routine(name, dtype)`` returns: ``void``, or the dtype's for ``lange``."""
    if name not in _VALUED:
        return "void"
    return "double" if dtype == "float64" else "float"


@cache
def address(full_name: str) -> int:
    """The address of ``cython_lapack``'s (or, for the BLAS routines, ``cython_blas``'s) ``full_name``."""
    if full_name[1:] in _BLAS:
        from scipy.linalg import cython_blas as module
    else:
        from scipy.linalg import cython_lapack as module
    return exported_address(module, full_name)


def _binder(full_name: str) -> Callable[[], int]:
    return lambda: address(full_name)


# SciPy's OpenBLAS thread count, read and set from native code (``int get(void)``, ``void set(int)``),
# and the process-wide state of kernels that set it: [kernels running, the count they saved]
GET_THREADS, SET_THREADS = "chainrule_blas_get_threads", "chainrule_blas_set_threads"
THREAD_STATE = "chainrule_blas_thread_state"
_thread_state = (ctypes.c_int64 * 2)()


def can_set_threads() -> bool:
    """Does SciPy's BLAS export the thread-count functions native code would call?"""
    return blas.thread_function_address("get") is not None and blas.thread_function_address("set") is not None


def _thread_binder(verb: str) -> Callable[[], int]:
    def bind() -> int:
        found = blas.thread_function_address(verb)
        assert found is not None, "a kernel sets SciPy's BLAS threads, which has no function for it"
        return found

    return bind


# Name in JIT code -> function returning its address (the engine imports those a module mentions).
RUNTIME_SYMBOLS: dict[str, Callable[[], int]] = {
    **{symbol(name, dtype): _binder(routine(name, dtype)) for name in ARITY for dtype in _PREFIX},
    GET_THREADS: _thread_binder("get"),
    SET_THREADS: _thread_binder("set"),
    THREAD_STATE: lambda: ctypes.addressof(_thread_state),
}


# ---- workspace queries (lwork = -1), once per shape ------------------------------------------


def _call(full_name: str, arguments: list[Any]) -> None:
    prototype = ctypes.CFUNCTYPE(None, *([ctypes.c_void_p] * len(arguments)))
    prototype(address(full_name))(*[ctypes.addressof(a) for a in arguments])


def _int(value: int) -> ctypes.c_int:
    return ctypes.c_int(value)


def _floats(dtype: str, count: int) -> Any:
    return ((ctypes.c_double if dtype == "float64" else ctypes.c_float) * max(count, 1))()


def _size(value: float, dtype: str) -> int:
    """A workspace size LAPACK reported in a float: float32 rounds large sizes, so add a margin."""
    margin = 1 + (2.0**-20 if dtype == "float32" else 0.0)
    return max(1, math.ceil(value * margin))


@cache
def syevd_work(n: int, dtype: str, vectors: bool = True) -> tuple[int, int]:
    """``(lwork, liwork)`` of ``?syevd`` for order ``n``, with eigenvectors or without (jobz='N')."""
    work, iwork, info = _floats(dtype, 1), (ctypes.c_int * 1)(), _int(0)
    a, w = _floats(dtype, 1), _floats(dtype, 1)
    arguments = [ctypes.c_char(b"V" if vectors else b"N"), ctypes.c_char(b"L"), _int(n), a, _int(max(n, 1)), w]
    _call(routine("syevd", dtype), [*arguments, work, _int(-1), iwork, _int(-1), info])
    return _size(work[0], dtype), max(1, iwork[0])


@cache
def gesdd_work(m: int, n: int, dtype: str, vectors: bool = True) -> int:
    """``lwork`` of ``?gesdd`` computing the reduced factors of an m×n matrix (jobz='S'), or its
    singular values alone (jobz='N')."""
    k = min(m, n)
    work, info = _floats(dtype, 1), _int(0)
    a, s, u, vt = (_floats(dtype, 1) for _ in range(4))
    iwork = (ctypes.c_int * max(8 * k, 1))()
    jobz = ctypes.c_char(b"S" if vectors else b"N")
    _call(
        routine("gesdd", dtype),
        [jobz, _int(m), _int(n), a, _int(m), s, u, _int(m), vt, _int(k), work, _int(-1), iwork, info],
    )
    return _size(work[0], dtype)


@cache
def qr_work(m: int, n: int, dtype: str) -> int:
    """``lwork`` enough for both ``?geqrf`` of an m×n matrix and ``?orgqr`` of its reduced Q."""
    k = min(m, n)
    sizes = []
    for name, shape in (("geqrf", [m, n]), ("orgqr", [m, k, k])):
        work, info = _floats(dtype, 1), _int(0)
        a, tau = _floats(dtype, 1), _floats(dtype, 1)
        _call(routine(name, dtype), [*map(_int, shape), a, _int(m), tau, work, _int(-1), info])
        sizes.append(_size(work[0], dtype))
    return max(sizes)


def raise_failure(failures: list[tuple[str, object]], code: int) -> NoReturn:
    """Raise failure ``code`` (1-based) of a kernel's ``failures``: ``(message, user's Loc)``."""
    message, loc = failures[code - 1]
    raise LinAlgError(message, loc)  # type: ignore[arg-type]
