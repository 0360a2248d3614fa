"""Matrix products through the BLAS SciPy ships: addresses for JIT code, and its thread count.

JIT code calls ``@chainrule_dgemm`` / ``@chainrule_sgemm``, declared by
``DECLARATIONS``: the Fortran ``dgemm``/``sgemm`` interface, every argument a
pointer, column-major. The engine binds those names to the functions in
``scipy.linalg.cython_blas`` when it links a module, so cached object code
holds no address. A row-major product C = A @ B (A m×k, B k×n) is the
column-major product Cᵀ = Bᵀ Aᵀ: pass B before A and n before m:

    dgemm("N", "N", n, m, k, 1.0, B, ldb=n, A, lda=k, 0.0, C, ldc=n)

``set_blas_threads(1)`` keeps BLAS on one core (e.g. while chainrule's own
threads use the others).
"""

from __future__ import annotations

import ctypes
import glob
import os
from collections.abc import Callable, Iterator
from functools import cache
from typing import Any

from chainrule.backends.llvm.capsules import exported_address
from chainrule.errors import UnsupportedError

# transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc
DECLARATIONS = (
    "\n".join(
        f"declare void @chainrule_{name}(ptr, ptr, ptr, ptr, ptr, ptr, ptr, ptr, ptr, ptr, ptr, ptr, ptr) nounwind"
        for name in ("dgemm", "sgemm")
    )
    + "\n"
)


# Thread-count setters OpenBLAS builds export: SciPy's wheels prefix their symbols with
# scipy_, 64-bit-integer builds suffix them with 64_.
_THREAD_FUNCTIONS = [
    "scipy_openblas_{}_num_threads",
    "scipy_openblas_{}_num_threads64_",
    "openblas_{}_num_threads",
    "openblas_{}_num_threads64_",
]


@cache
def address(function: str) -> int:
    """The address of ``scipy.linalg.cython_blas``'s ``function`` (``"dgemm"``, ``"sgemm"``, ...)."""
    from scipy.linalg import cython_blas

    return exported_address(cython_blas, function)


def set_blas_threads(count: int) -> None:
    """Let SciPy's BLAS (the one JIT code calls) use ``count`` threads.

    >>> set_blas_threads(1)
    >>> get_blas_threads()
    1
    """
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"set_blas_threads needs a positive int, got {count!r}")
    _thread_function("set", None, (ctypes.c_int,))(count)


def get_blas_threads() -> int:
    """The number of threads SciPy's BLAS uses."""
    return _thread_function("get", ctypes.c_int, ())()


def thread_function_address(verb: str) -> int | None:
    """The address of SciPy's OpenBLAS ``get``/``set`` thread-count function (``int (void)`` /
    ``void (int)``), for native code; None when SciPy's BLAS is no OpenBLAS chainrule can find."""
    try:
        function = _thread_function(
            verb, ctypes.c_int if verb == "get" else None, () if verb == "get" else (ctypes.c_int,)
        )
    except UnsupportedError:
        return None
    return ctypes.cast(function, ctypes.c_void_p).value  # type: ignore[arg-type]


@cache
def _thread_function(
    verb: str, restype: type[ctypes.c_int] | None, argtypes: tuple[type[ctypes.c_int], ...]
) -> Callable[..., Any]:
    for library in _openblas_libraries():
        for pattern in _THREAD_FUNCTIONS:
            function = getattr(library, pattern.format(verb), None)
            if function is not None:
                function.restype, function.argtypes = restype, argtypes
                return function
    raise UnsupportedError(
        "SciPy's BLAS is not an OpenBLAS chainrule can find, so its thread count "
        "cannot be set without threadpoolctl; set OPENBLAS_NUM_THREADS before "
        "starting Python instead"
    )


def _openblas_libraries() -> Iterator[ctypes.CDLL]:
    import scipy
    from scipy.linalg import cython_blas  # noqa: F401  (loads SciPy's BLAS into the process)

    package = os.path.dirname(scipy.__file__)
    # Wheels vendor OpenBLAS next to the package (scipy.libs on Linux, .dylibs on macOS);
    # distribution builds link the system's.
    paths = glob.glob(os.path.join(package + ".libs", "*openblas*")) + glob.glob(
        os.path.join(package, ".dylibs", "*openblas*")
    )
    for path in paths + ["libopenblas.so.0", "libopenblas.so"]:
        try:
            yield ctypes.CDLL(path)
        except OSError:
            continue
