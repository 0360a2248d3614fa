"""Products of SciPy sparse matrices with traced arrays: ``A @ x``, ``A.dot(x)``, ``x @ A``, and
``A * x`` / ``x * A`` for the ``spmatrix`` classes (whose ``*`` is the matrix product).

The sparse matrix is a constant (SciPy's constructors call ``np.asarray``, so its values are never
traced): a graph Laplacian, a finite-difference or mass matrix, an adjacency. ``A @ x`` gathers x's
rows at A's column indices, scales them by A's values and scatter-adds them into A's rows, so the
work is O(nnz), as SciPy's, and so is the gradient (a gather of the cotangent at the row indices,
scattered to the columns: ``Aᵀ`` applied the same way). ``x @ A`` is ``(Aᵀ @ xᵀ)ᵀ``.

SciPy's operators convert a foreign operand with ``np.asarray``; the ones above are replaced on
SciPy's base classes (``numpy_special.traceable``) by ones that dispatch when the other operand is
traced, and a traced left operand returns ``NotImplemented`` for a sparse right one
(``dispatch.defer_operators_to``), so Python asks the sparse matrix's reflected operator.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse
from scipy.sparse._base import _spbase
from scipy.sparse._coo import _coo_base
from scipy.sparse._matrix import spmatrix

from chainrule.errors import ShapeError
from chainrule.frontends.dispatch import defer_operators_to, here, implements
from chainrule.frontends.numpy_api import ndim_of, shape_of
from chainrule.frontends.numpy_special import traceable
from chainrule.frontends.tracer import operation

_ALL = ("slice", None, None, None)


def sparse_times(matrix, x):
    """``matrix @ x`` for a constant sparse (M, N) matrix and a traced (N,) or (N, k) array."""
    rows, columns = matrix.shape
    if ndim_of(x) not in (1, 2) or shape_of(x)[0] != columns:
        raise ShapeError(
            f"matmul: a sparse matrix of shape {list(matrix.shape)} times an array of shape {list(shape_of(x))}",
            here(),
        )
    entries = scipy.sparse.coo_array(matrix)  # a copy: summing duplicates leaves the user's matrix as it was
    entries.sum_duplicates()
    dtype = np.result_type(entries.data.dtype, x.dtype)
    values = entries.data.astype(dtype).reshape((-1,) + (1,) * (ndim_of(x) - 1))
    products = x[entries.coords[1]] * values
    index = (("array", 0),) + (_ALL,) * (ndim_of(x) - 1)
    target = (rows, *shape_of(x)[1:])
    return operation(
        "scatter_add",
        products,
        entries.coords[0].astype(np.intp),
        index=index,
        shape=target,
        dtype=dtype.name,
        unique=False,  # many entries per row
    )


def _times(matrix, other):
    return sparse_times(matrix, other)


def _times_from_the_left(matrix, other):
    """``other @ matrix``: the transposed product, ``(matrixᵀ @ otherᵀ)ᵀ``."""
    if ndim_of(other) == 1:
        return sparse_times(matrix.T, other)
    return sparse_times(matrix.T, other.T).T


for _owner, _attribute, _handler in [
    (_spbase, "__matmul__", _times),
    (_spbase, "dot", _times),
    (_coo_base, "dot", _times),  # COO's own dot (it takes N-d arrays): the same product here
    (_spbase, "__rmatmul__", _times_from_the_left),
    (spmatrix, "__mul__", _times),
    (spmatrix, "__rmul__", _times_from_the_left),
]:
    implements(traceable(_owner, _attribute, f"scipy.sparse.{_owner.__name__.strip('_')}.{_attribute}"))(_handler)

defer_operators_to(_spbase)
