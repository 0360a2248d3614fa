"""``scipy.linalg`` on traced values: solve_triangular, cho_factor, cho_solve, expm, the
functions it shares with ``np.linalg`` (solve, inv, det, cholesky, eigh, eigvalsh, svd, qr), and
the structured matrices toeplitz, circulant, hankel and block_diag (gathers of their defining vectors at a
constant index matrix, so the gradient is the scatter-add of the cotangent's diagonals).

SciPy has no dispatch protocol (its functions call ``np.asarray`` on their arguments, which a
traced value cannot answer), so each function traced here is replaced in the ``scipy.linalg``
namespace by one that calls the traced version when an argument is traced and SciPy's own
function otherwise. The table ``chainrule.frontends.dispatch.HANDLERS`` is keyed by SciPy's
own function, as for NumPy's. A name bound before chainrule was imported
(``from scipy.linalg import expm`` ahead of ``import chainrule``) keeps SciPy's function.
"""

from __future__ import annotations

import functools

import numpy as np
import scipy.linalg

from chainrule.errors import ShapeError
from chainrule.frontends import numpy_linalg as la
from chainrule.frontends.dispatch import HANDLERS, here, implements
from chainrule.frontends.numpy_api import ndim_of, shape_of
from chainrule.frontends.rebinding import record_replacement
from chainrule.frontends.tracer import Tracer, operation


def _traced(value) -> bool:
    return isinstance(value, Tracer) or (isinstance(value, tuple) and any(isinstance(v, Tracer) for v in value))


def scipy_function(name: str):
    """Decorator: the function computes ``scipy.linalg.<name>`` on traced values."""
    original = getattr(scipy.linalg, name)
    original = getattr(original, "__chainrule_original__", original)

    def register(handler):
        implements(original)(handler)

        @functools.wraps(original)
        def dispatching(*args, **kwargs):
            if any(_traced(v) for v in args) or any(_traced(v) for v in kwargs.values()):
                return HANDLERS[original](*args, **kwargs)
            return original(*args, **kwargs)

        dispatching.__chainrule_original__ = original
        setattr(scipy.linalg, name, dispatching)
        record_replacement(original, dispatching)
        return handler

    return register


def _column_solve(solver, a, b):
    """``solver(a, b)`` with a 1-D b solved as one column."""
    if ndim_of(b) == 1:
        return np.reshape(solver(a, np.reshape(b, (-1, 1))), shape_of(b))
    return solver(a, b)


def _triangular(a, b, lower: bool):
    """``a⁻¹ b`` reading one triangle of a, for a (..., n, n) and b (..., n, k)."""
    la.square_order(a, "scipy.linalg.solve_triangular")
    a, b = la.batch_together(la.as_float(a), la.as_float(b))
    return operation("triangular_solve", a, b, lower=bool(lower))


def _with_unit_diagonal(a):
    n = shape_of(a)[-1]
    return a * (1.0 - np.eye(n)) + np.eye(n)


@scipy_function("solve_triangular")
def _solve_triangular(a, b, trans=0, lower=False, unit_diagonal=False, overwrite_b=False, check_finite=True):
    if trans not in (0, 1, 2, "N", "T", "C"):
        raise ValueError("Incorrect trans value")
    if unit_diagonal:  # the diagonal is not read: it is 1
        a = _with_unit_diagonal(a)
    if trans in (1, 2, "T", "C"):  # real matrices: the conjugate transpose is the transpose
        a, lower = np.swapaxes(a, -1, -2), not lower
    return _column_solve(lambda a, b: _triangular(a, b, lower), a, b)


@scipy_function("cho_factor")
def _cho_factor(a, lower=False, overwrite_a=False, check_finite=True):
    # SciPy leaves whatever a held in the triangle it does not use; here it is zero
    factor = np.linalg.cholesky(a)
    return (factor if lower else np.swapaxes(factor, -1, -2)), bool(lower)


@scipy_function("cho_solve")
def _cho_solve(c_and_lower, b, overwrite_b=False, check_finite=True):
    c, lower = c_and_lower
    factor = c if lower else np.swapaxes(c, -1, -2)  # L, read from the triangle cho_factor wrote

    def solve(a, b):
        return _triangular(np.swapaxes(a, -1, -2), _triangular(a, b, True), False)

    return _column_solve(solve, factor, b)


@scipy_function("cholesky")
def _cholesky(a, lower=False, overwrite_a=False, check_finite=True):
    factor = np.linalg.cholesky(a)
    return factor if lower else np.swapaxes(factor, -1, -2)


@scipy_function("expm")
def _expm(A):
    la.square_order(A, "scipy.linalg.expm")
    return operation("expm", la.as_float(A))


@scipy_function("solve")
def _solve(a, b, lower=False, overwrite_a=False, overwrite_b=False, check_finite=True, assume_a=None, transposed=False):
    # every assume_a reads the whole of a real a for "general"; symmetric kinds give the same x
    if transposed:
        a = np.swapaxes(a, -1, -2)
    la.square_order(a, "scipy.linalg.solve")
    return _column_solve(la.solve_matrices, a, b)


@scipy_function("inv")
def _inv(a, overwrite_a=False, check_finite=True):
    return np.linalg.inv(a)


@scipy_function("det")
def _det(a, overwrite_a=False, check_finite=True):
    return np.linalg.det(a)


@scipy_function("eigh")
def _eigh(a, b=None, *, lower=True, eigvals_only=False, **unsupported_keywords):
    if b is not None or any(v not in (None, False, True) for v in unsupported_keywords.values()):
        la.fail(
            "scipy.linalg.eigh of a generalized problem or a subset of eigenvalues is not supported on traced values"
        )
    w, v = la.eigh_pair(a, bool(lower), "scipy.linalg.eigh")
    return w if eigvals_only else (w, v)


@scipy_function("eigvalsh")
def _eigvalsh(a, b=None, *, lower=True, **unsupported_keywords):
    return _eigh(a, b, lower=lower, eigvals_only=True, **unsupported_keywords)


@scipy_function("svd")
def _svd(a, full_matrices=True, compute_uv=True, overwrite_a=False, check_finite=True, lapack_driver="gesdd"):
    return np.linalg.svd(a, full_matrices=full_matrices, compute_uv=compute_uv)


@scipy_function("svdvals")
def _svdvals(a, overwrite_a=False, check_finite=True):
    return la.svd_factors(a, "scipy.linalg.svdvals")[1]


@scipy_function("qr")
def _qr(a, overwrite_a=False, lwork=None, mode="full", pivoting=False, check_finite=True):
    if pivoting or mode not in ("full", "economic", "r"):
        la.fail(f"scipy.linalg.qr with mode={mode!r}, pivoting={pivoting} is not supported on traced values")
    if mode == "r":
        return (np.linalg.qr(a, mode="r"),)  # SciPy returns a tuple of one
    return np.linalg.qr(a, mode="complete" if mode == "full" else "reduced")


def _structured(vals, index: np.ndarray):
    """``vals[..., index]``: the matrix whose element (i, j) is ``vals[index[i, j]]``, per batch."""
    return vals[..., index]


@scipy_function("toeplitz")
def _toeplitz(c, r=None):
    # element (i, j) is c[i - j] below the diagonal and r[j - i] above: vals = (c reversed, r[1:])
    c = np.atleast_1d(c)
    r = c if r is None else np.atleast_1d(r)  # real values: SciPy's r = c.conjugate() is c
    if shape_of(c)[:-1] != shape_of(r)[:-1]:
        la.fail("scipy.linalg.toeplitz of c and r with different batch shapes is not supported on traced values")
    vals = np.concatenate([np.flip(c, axis=-1), r[..., 1:]], axis=-1)
    rows, columns = shape_of(c)[-1], shape_of(r)[-1]
    return _structured(vals, rows - 1 - np.arange(rows)[:, None] + np.arange(columns)[None, :])


@scipy_function("circulant")
def _circulant(c):
    c = np.atleast_1d(c)
    n = shape_of(c)[-1]
    return _structured(c, (np.arange(n)[:, None] - np.arange(n)[None, :]) % n)


@scipy_function("hankel")
def _hankel(c, r=None):
    # element (i, j) is c[i + j] while i + j < len(c), then r[i + j - len(c) + 1]; r defaults to zeros
    if ndim_of(c) > 1 or (r is not None and ndim_of(r) > 1):
        la.fail("scipy.linalg.hankel of arrays of more than one dimension is not supported on traced values")
    c = np.atleast_1d(c)
    r = np.zeros(shape_of(c)) if r is None else np.atleast_1d(r)
    vals = np.concatenate([c, r[1:]])
    return _structured(vals, np.arange(shape_of(c)[0])[:, None] + np.arange(shape_of(r)[0])[None, :])


@scipy_function("block_diag")
def _block_diag(*arrs):
    # each block a 2-D array (a vector is a row, a number a 1x1 block), placed down the diagonal
    blocks = [np.atleast_2d(a) if ndim_of(a) < 2 else a for a in arrs]
    if any(ndim_of(b) != 2 for b in blocks):
        raise ShapeError(
            "scipy.linalg.block_diag: arguments in the following positions have dimension greater than 2: "
            f"{[i for i, b in enumerate(blocks) if ndim_of(b) > 2]}",
            here(),
        )
    if not blocks:
        return np.empty((1, 0))
    widths = [shape_of(b)[1] for b in blocks]
    dtype = np.result_type(*(b.dtype if _traced(b) else np.asarray(b).dtype for b in blocks))
    rows = []
    for position, block in enumerate(blocks):
        height = shape_of(block)[0]
        left, right = sum(widths[:position]), sum(widths[position + 1 :])
        rows.append(np.concatenate([np.zeros((height, left), dtype), block, np.zeros((height, right), dtype)], axis=1))
    return np.concatenate(rows, axis=0)
