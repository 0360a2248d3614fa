"""``np.linalg`` and ``scipy.linalg`` on traced values.

The primitives (``chainrule.ir.linalg``, ``chainrule.ir.linalg_spectral``) are solve,
triangular_solve, cholesky, slogdet, expm, eigh, svd and qr; everything else here is written
with them and NumPy: inv is a solve against the identity, det comes from slogdet, pinv and
lstsq from the SVD, matrix_power is repeated matmul, norm is sums, extrema and singular values.
``np.linalg.norm`` is in ``numpy_norm``, ``scipy.linalg`` in ``scipy_linalg``.
"""

from __future__ import annotations

import math

import numpy as np

from chainrule.errors import ShapeError, UnsupportedError
from chainrule.frontends.dispatch import here, implements
from chainrule.frontends.numpy_api import ndim_of, shape_of
from chainrule.frontends.tracer import Tracer, operation


def fail(message: str):
    raise UnsupportedError(message, here())


def square_order(a, name: str) -> int:
    shape = shape_of(a)
    if len(shape) < 2 or shape[-1] != shape[-2]:
        raise ShapeError(f"{name} needs square matrices (..., n, n), got shape {list(shape)}", here())
    return shape[-1]


def as_float(a):
    """Integer arrays become float64, as NumPy's linear algebra makes them."""
    if not isinstance(a, Tracer):
        a = np.asarray(a)
    if np.issubdtype(a.dtype, np.inexact):
        return a
    return a.astype(np.float64)


def batch_together(a, b):
    """``a`` (..., n, n) and ``b`` (..., n, k) broadcast to one batch shape."""
    batch = tuple(np.broadcast_shapes(shape_of(a)[:-2], shape_of(b)[:-2]))
    a = np.broadcast_to(a, batch + shape_of(a)[-2:])
    b = np.broadcast_to(b, batch + shape_of(b)[-2:])
    return a, b


def unpack_factors(packed, shapes):
    """The factors of a packed factorization result (see ``chainrule.ir.linalg_kernels``)."""
    batch = shape_of(packed)[:-1]
    parts, start = [], 0
    for shape in shapes:
        stop = start + math.prod(shape)
        parts.append(np.reshape(packed[..., start:stop], batch + tuple(shape)))
        start = stop
    return parts


def eye_like(n: int, like):
    return np.broadcast_to(np.eye(n, dtype=like.dtype), shape_of(like)[:-2] + (n, n))


# ---- solves and inverses -------------------------------------------------------------------


def solve_matrices(a, b):
    """``a⁻¹ b`` for stacked a (..., n, n) and b (..., n, k), batch axes broadcast."""
    a, b = batch_together(as_float(a), as_float(b))
    return operation("solve", a, b)


@implements(np.linalg.solve)
def _solve(a, b):
    square_order(a, "np.linalg.solve")
    if ndim_of(b) == 1:  # NumPy 2: only a 1-D b is a vector
        return np.reshape(solve_matrices(a, np.reshape(b, (-1, 1))), shape_of(a)[:-2] + (shape_of(b)[0],))
    return solve_matrices(a, b)


@implements(np.linalg.inv)
def _inv(a):
    n = square_order(a, "np.linalg.inv")
    a = as_float(a)
    return operation("solve", a, eye_like(n, a))


def slogdet_pair(a, name: str):
    square_order(a, name)
    packed = operation("slogdet", as_float(a))
    return packed[..., 0], packed[..., 1]


@implements(np.linalg.slogdet)
def _slogdet(a):
    return slogdet_pair(a, "np.linalg.slogdet")


@implements(np.linalg.det)
def _det(a):
    sign, logabsdet = slogdet_pair(a, "np.linalg.det")
    return sign * np.exp(logabsdet)


@implements(np.linalg.matrix_power)
def _matrix_power(a, n):
    order = square_order(a, "np.linalg.matrix_power")
    if not isinstance(n, (int, np.integer)):
        raise TypeError("exponent must be an integer")
    if n == 0:
        return np.broadcast_to(np.eye(order, dtype=a.dtype), shape_of(a))
    base = _inv(a) if n < 0 else a
    result, power, n = None, base, abs(int(n))
    while True:  # binary powering: ⌊log2 n⌋ squarings
        if n & 1:
            result = power if result is None else result @ power
        n >>= 1
        if not n:
            return result
        power = power @ power


# ---- factorizations --------------------------------------------------------------------------


@implements(np.linalg.cholesky)
def _cholesky(a, /, *, upper=False):
    square_order(a, "np.linalg.cholesky")
    factor = operation("cholesky", as_float(a))
    return np.swapaxes(factor, -1, -2) if upper else factor


def eigh_pair(a, lower: bool, name: str):
    n = square_order(a, name)
    w, v = unpack_factors(operation("eigh", as_float(a), lower=lower), [(n,), (n, n)])
    return w, v


@implements(np.linalg.eigh)
def _eigh(a, UPLO="L"):
    return eigh_pair(a, _uplo(UPLO), "np.linalg.eigh")


@implements(np.linalg.eigvalsh)
def _eigvalsh(a, UPLO="L"):
    return eigh_pair(a, _uplo(UPLO), "np.linalg.eigvalsh")[0]


def _uplo(uplo) -> bool:
    if uplo not in ("L", "U"):
        raise ValueError("UPLO argument must be 'L' or 'U'")
    return uplo == "L"


def svd_factors(a, name: str):
    """(U, s, Vh) of the reduced SVD of stacked matrices."""
    shape = shape_of(a)
    if len(shape) < 2:
        raise ShapeError(f"{name} needs matrices (..., m, n), got shape {list(shape)}", here())
    m, n = shape[-2:]
    k = min(m, n)
    s, u, vh = unpack_factors(operation("svd", as_float(a)), [(k,), (m, k), (k, n)])
    return u, s, vh


@implements(np.linalg.svd)
def _svd(a, full_matrices=True, compute_uv=True, hermitian=False):
    if hermitian:
        fail("np.linalg.svd with hermitian=True is not supported on traced values (use np.linalg.eigh)")
    u, s, vh = svd_factors(a, "np.linalg.svd")
    if not compute_uv:
        return s
    m, n = shape_of(a)[-2:]
    if full_matrices and m != n:
        fail(
            "np.linalg.svd with full_matrices=True of a non-square matrix is not supported on traced "
            "values: the extra singular vectors are not unique (pass full_matrices=False)"
        )
    return u, s, vh


@implements(np.linalg.svdvals)
def _svdvals(x, /):
    return svd_factors(x, "np.linalg.svdvals")[1]


@implements(np.linalg.qr)
def _qr(a, mode="reduced"):
    shape = shape_of(a)
    if len(shape) < 2:
        raise ShapeError(f"np.linalg.qr needs matrices (..., m, n), got shape {list(shape)}", here())
    m, n = shape[-2:]
    if mode not in ("reduced", "complete", "r") or (mode == "complete" and m > n):
        fail(
            f"np.linalg.qr with mode={mode!r} is not supported on traced values (reduced, r, and complete of m <= n are)"
        )
    k = min(m, n)
    q, r = unpack_factors(operation("qr", as_float(a)), [(m, k), (k, n)])
    return r if mode == "r" else (q, r)


# ---- built from the SVD: pinv, lstsq ----------------------------------------------------------


def pinv_of(a, rcond):
    """The pseudo-inverse V diag(1/s) Uᵀ, singular values at or below rcond · max(s) dropped."""
    u, s, vh = svd_factors(a, "np.linalg.pinv")
    cutoff = rcond * np.max(s, axis=-1, keepdims=True)
    large = s > cutoff
    s_inverse = np.where(large, 1.0 / np.where(large, s, 1.0), 0.0)
    return np.swapaxes(vh, -1, -2) @ (s_inverse[..., None] * np.swapaxes(u, -1, -2)), s, cutoff


@implements(np.linalg.pinv)
def _pinv(a, rcond=None, hermitian=False, *, rtol=np._NoValue):
    if hermitian:
        fail("np.linalg.pinv with hermitian=True is not supported on traced values")
    if rcond is None:  # NumPy 2's defaults
        rcond = (
            1e-15 if rtol is np._NoValue else (max(shape_of(a)[-2:]) * np.finfo(a.dtype).eps if rtol is None else rtol)
        )
    return pinv_of(as_float(a), rcond)[0]


@implements(np.linalg.lstsq)
def _lstsq(a, b, rcond=None):
    if ndim_of(a) != 2 or ndim_of(b) not in (1, 2):
        raise ShapeError("np.linalg.lstsq needs a 2-D a and a 1-D or 2-D b", here())
    m, n = shape_of(a)
    a = as_float(a)
    rcond = np.finfo(a.dtype).eps * max(m, n) if rcond is None else rcond
    pseudo_inverse, s, cutoff = pinv_of(a, rcond)
    x = pseudo_inverse @ b
    rank = np.sum((s > cutoff).astype(np.int64), axis=-1)
    if m > n:  # NumPy leaves them empty for a rank-deficient a, which tracing cannot know
        residual = a @ x - b
        residuals = np.sum(residual * residual, axis=0)
        residuals = np.reshape(residuals, (1,)) if ndim_of(b) == 1 else residuals
    else:
        residuals = np.zeros((0,), dtype=a.dtype)
    return x, residuals, rank, s
