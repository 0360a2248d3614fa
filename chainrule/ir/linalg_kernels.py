"""NumPy/SciPy computations of the linear-algebra primitives whose results are several arrays.

The IR has one result per node, so a factorization with several factors (eigh's eigenvalues
and eigenvectors, svd's U, s and Vh, qr's Q and R, slogdet's sign and log|det|) is one node
whose result *packs* them: each factor flattened over its matrix axes and concatenated along
one last axis, the batch axes leading. ``chainrule.ir.linalg.unpack`` takes them apart again.
The lowering templates of ``ir/linalg.py`` and ``ir/linalg_spectral.py`` call these functions
as ``la.<name>`` (the name is in ``chainrule.ir.npfuncs.NAMESPACE``).
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
import scipy.linalg.blas


def packed(*factors: np.ndarray, batch_ndim: int) -> np.ndarray:
    """The factors, each flattened past its ``batch_ndim`` leading axes, side by side."""
    flat = [f.reshape(f.shape[:batch_ndim] + (-1,)) for f in factors]
    return np.concatenate(flat, axis=-1)


def slogdet(a: np.ndarray) -> np.ndarray:
    """``[sign, log|det a|]`` along a last axis of length 2."""
    sign, logabsdet = np.linalg.slogdet(a)
    return np.stack([sign, logabsdet], axis=-1)


def eigh(a: np.ndarray, lower: bool) -> np.ndarray:
    """``[w, V]`` packed: eigenvalues ascending, then the eigenvectors' matrix (columns)."""
    w, v = np.linalg.eigh(a, UPLO="L" if lower else "U")
    return packed(w, v, batch_ndim=a.ndim - 2)


def eigvalsh(a: np.ndarray, lower: bool) -> np.ndarray:
    """The eigenvalues alone, ascending (LAPACK ``?syevd`` with jobz='N')."""
    return np.linalg.eigvalsh(a, UPLO="L" if lower else "U")


def svdvals(a: np.ndarray) -> np.ndarray:
    """The singular values alone, descending (LAPACK ``?gesdd`` with jobz='N')."""
    return np.linalg.svd(a, compute_uv=False)


def svd(a: np.ndarray) -> np.ndarray:
    """``[s, U, Vh]`` packed, the reduced factorization (``full_matrices=False``)."""
    u, s, vh = np.linalg.svd(a, full_matrices=False)
    return packed(s, u, vh, batch_ndim=a.ndim - 2)


def qr(a: np.ndarray) -> np.ndarray:
    """``[Q, R]`` packed, the reduced factorization."""
    q, r = np.linalg.qr(a)
    return packed(q, r, batch_ndim=a.ndim - 2)


def triangular_solve(a: np.ndarray, b: np.ndarray, lower: bool) -> np.ndarray:
    """``a⁻¹ b`` reading only the lower (or upper) triangle of ``a``; stacked matrices one by one.

    BLAS trsm, not ``scipy.linalg.solve_triangular`` (LAPACK trtrs): the same substitution,
    but trtrs in SciPy's threaded OpenBLAS took 20-50 ms at n = 200 where trsm takes 0.3 ms.
    trsm does not check the diagonal: a zero on it gives inf/NaN rather than LinAlgError.
    """
    dtype = np.result_type(a, b, np.float32)
    if a.ndim == 2:
        return _trsm(a.astype(dtype, copy=False), b.astype(dtype, copy=False), lower)
    out = np.empty(np.broadcast_shapes(a.shape[:-2], b.shape[:-2]) + b.shape[-2:], dtype)
    for index in np.ndindex(out.shape[:-2]):
        out[index] = _trsm(a[index].astype(dtype, copy=False), b[index].astype(dtype, copy=False), lower)
    return out


def _trsm(a: np.ndarray, b: np.ndarray, lower: bool) -> np.ndarray:
    (trsm,) = scipy.linalg.blas.get_blas_funcs(("trsm",), (a, b))
    if a.flags.c_contiguous and not a.flags.f_contiguous:  # aᵀ is Fortran-ordered: solve with it
        return trsm(1.0, a.T, b, lower=int(not lower), trans_a=1)
    return trsm(1.0, a, b, lower=int(lower))


def expm(a: np.ndarray) -> np.ndarray:
    """The matrix exponential (SciPy's scaling and squaring), of each matrix of a stack."""
    return scipy.linalg.expm(a)


def expm_frechet(a: np.ndarray, e: np.ndarray) -> np.ndarray:
    """The Fréchet derivative of expm at ``a`` in direction ``e`` (SciPy's Al-Mohy–Higham
    algorithm), of each pair of matrices of two stacks of one shape."""
    out = np.empty(a.shape, np.result_type(a, e))  # SciPy computes float32 in float64
    for index in np.ndindex(a.shape[:-2]):
        out[index] = scipy.linalg.expm_frechet(a[index], e[index], compute_expm=False)
    return out
