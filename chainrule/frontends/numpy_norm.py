"""``np.linalg.norm`` on traced values: every ``ord`` NumPy accepts, over any axis or axis pair.

Vector norms are sums and extrema of |x|; matrix norms are those over one axis then the other
(1, -1, inf, -inf), the Frobenius sum, or the singular values (2, -2, 'nuc').
"""

from __future__ import annotations

import numpy as np

from chainrule.errors import ShapeError
from chainrule.frontends.dispatch import here, implements
from chainrule.frontends.numpy_api import axes_of, ndim_of, shape_of
from chainrule.frontends.numpy_linalg import as_float, svd_factors


@implements(np.linalg.norm)
def _norm(x, ord=None, axis=None, keepdims=False):
    x = as_float(x)
    ndim = ndim_of(x)
    if axis is None:
        if ord is None:  # the 2-norm of every element, whatever the shape
            result = np.sqrt(np.sum(x * x))
            return np.reshape(result, (1,) * ndim) if keepdims else result
        if ndim not in (1, 2):
            raise ShapeError("np.linalg.norm: improper number of dimensions to norm", here())
        axis = tuple(range(ndim))
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    if len(axes) == 1:
        return vector_norm(x, ord, axes_of(axes[0], ndim)[0], keepdims)
    if len(axes) == 2:
        row_axis, col_axis = (int(a) % ndim if -ndim <= a < ndim else a for a in axes)
        axes_of((row_axis, col_axis), ndim)  # out of bounds or repeated: an error at the user's line
        return matrix_norm(x, ord, row_axis, col_axis, keepdims)
    raise ShapeError("np.linalg.norm: improper number of dimensions to norm", here())


def vector_norm(x, ord, axis: int, keepdims: bool):
    if isinstance(ord, str):
        raise ValueError(f"Invalid norm order '{ord}' for vectors")
    magnitude = np.abs(x)
    if ord is None or ord == 2:
        return np.sqrt(np.sum(x * x, axis=axis, keepdims=keepdims))
    if ord == np.inf:
        return np.max(magnitude, axis=axis, keepdims=keepdims)
    if ord == -np.inf:
        return np.min(magnitude, axis=axis, keepdims=keepdims)
    if ord == 0:  # the count of nonzero elements: piecewise constant, no gradient
        return np.sum((x != 0).astype(x.dtype), axis=axis, keepdims=keepdims)
    if ord == 1:
        return np.sum(magnitude, axis=axis, keepdims=keepdims)
    return np.sum(magnitude**ord, axis=axis, keepdims=keepdims) ** (1.0 / ord)


def matrix_norm(x, ord, row_axis: int, col_axis: int, keepdims: bool):
    if ord in (None, "fro"):
        result = np.sqrt(np.sum(x * x, axis=(row_axis, col_axis)))
    elif ord in (2, -2, "nuc"):
        singular = svd_factors(np.moveaxis(x, (row_axis, col_axis), (-2, -1)), "np.linalg.norm")[1]
        if ord == "nuc":
            result = np.sum(singular, axis=-1)
        else:
            result = np.max(singular, axis=-1) if ord == 2 else np.min(singular, axis=-1)
    elif ord in (1, -1):  # the largest (smallest) column sum
        extremum = np.max if ord == 1 else np.min
        result = extremum(np.sum(np.abs(x), axis=row_axis), axis=col_axis - (col_axis > row_axis))
    elif ord in (np.inf, -np.inf):  # the largest (smallest) row sum
        extremum = np.max if ord == np.inf else np.min
        result = extremum(np.sum(np.abs(x), axis=col_axis), axis=row_axis - (row_axis > col_axis))
    else:
        raise ValueError("Invalid norm order for matrices.")
    if keepdims:
        kept = list(shape_of(x))
        kept[row_axis] = kept[col_axis] = 1
        result = np.reshape(result, tuple(kept))
    return result
