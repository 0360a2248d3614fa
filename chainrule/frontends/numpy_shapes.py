"""What NumPy's shape functions, selection functions and indexing do to traced values.

Each is written with the shape primitives (transpose, reshape, broadcast_to,
concatenate, getitem) or with other NumPy functions, and registered once with
``@implements`` into ``chainrule.frontends.dispatch``.
"""

from __future__ import annotations

import math
import operator

import numpy as np

from chainrule.errors import ShapeError, TraceError
from chainrule.frontends.aliasing import EXACT, take_view
from chainrule.frontends.creation import constant_array
from chainrule.frontends.dispatch import here, implements, unsupported
from chainrule.frontends.inplace import MaskedSelection, index_template, is_traced_mask
from chainrule.frontends.numpy_api import axes_of, ndim_of, shape_of
from chainrule.frontends.tracer import Tracer, operation

# ---- axes --------------------------------------------------------------------------------


@implements(np.transpose)
def _transpose(a, axes=None):
    ndim = ndim_of(a)
    axes = tuple(reversed(range(ndim))) if axes is None else tuple(int(i) % ndim if ndim else int(i) for i in axes)
    return operation("transpose", a, axes=axes)


@implements(np.swapaxes)
def _swapaxes(a, axis1, axis2):
    ndim = ndim_of(a)
    axes = list(range(ndim))
    i, j = axis1 % ndim, axis2 % ndim
    axes[i], axes[j] = axes[j], axes[i]
    return _transpose(a, axes)


@implements(np.moveaxis)
def _moveaxis(a, source, destination):
    # NumPy's own construction: the unmoved axes in order, each moved axis inserted at its destination
    ndim = ndim_of(a)
    source, destination = _axis_list(source, ndim), _axis_list(destination, ndim)
    if len(source) != len(destination):
        raise ShapeError("np.moveaxis: `source` and `destination` must have the same number of elements", here())
    order = [i for i in range(ndim) if i not in source]
    for dest, src in sorted(zip(destination, source)):
        order.insert(dest, src)
    return _transpose(a, order)


def _axis_list(axis, ndim) -> list:
    """``axis`` (an int or a sequence) as non-negative ints in the order given, bounds-checked."""
    axes = [axis] if isinstance(axis, (int, np.integer)) else list(axis)
    axes_of(axes, ndim)  # raises on an out-of-bounds or repeated axis
    return [int(i) % ndim for i in axes]


# ---- shapes ------------------------------------------------------------------------------


@implements(np.reshape)
def _reshape(a, shape=None, order="C", *, newshape=None, copy=None):
    """``order='F'`` reads and writes the elements first index fastest: the C reshape of the
    transposes. A traced value has no memory layout, so ``'A'`` (and ``'K'`` for ravel) read it as
    C-contiguous, as NumPy does for a C-contiguous array."""
    if order not in ("C", "F", "A"):
        raise ValueError(f"order must be one of 'C', 'F', or 'A' (got {order!r})")
    shape = newshape if shape is None else shape
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(int(d) for d in shape)
    size = math.prod(shape_of(a))
    if shape.count(-1) == 1:
        known = math.prod(d for d in shape if d != -1)
        if known == 0 or size % known:
            raise ShapeError(f"cannot reshape an array of shape {list(shape_of(a))} into shape {list(shape)}", here())
        shape = tuple(size // known if d == -1 else d for d in shape)
    if order == "F":
        reversed_a = np.transpose(a) if ndim_of(a) > 1 else a
        result = operation("reshape", reversed_a, shape=shape[::-1])
        return np.transpose(result) if len(shape) > 1 else result
    return operation("reshape", a, shape=shape)


@implements(np.ravel)
def _ravel(a, order="C"):
    return _reshape(a, (-1,), "C" if order == "K" else order)


@implements(np.squeeze)
def _squeeze(a, axis=None):
    shape = shape_of(a)
    axes = tuple(i for i, d in enumerate(shape) if d == 1) if axis is None else axes_of(axis, len(shape))
    for i in axes:
        if shape[i] != 1:
            raise ShapeError(f"cannot squeeze axis {i} of size {shape[i]} (shape {list(shape)})", here())
    return _reshape(a, tuple(d for i, d in enumerate(shape) if i not in axes))


@implements(np.expand_dims)
def _expand_dims(a, axis):
    shape = list(shape_of(a))
    axes = axes_of(axis, len(shape) + (len(axis) if isinstance(axis, (tuple, list)) else 1))
    for i in axes:
        shape.insert(i, 1)
    return _reshape(a, tuple(shape))


@implements(np.broadcast_to)
def _broadcast_to(array, shape, subok=False):
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    if not isinstance(array, Tracer):
        return np.broadcast_to(array, shape)
    return operation("broadcast_to", array, shape=shape)


@implements(np.broadcast_arrays)
def _broadcast_arrays(*args, subok=False):
    # NumPy's tuple of views, each array of the common shape as it is
    shape = tuple(np.broadcast_shapes(*(shape_of(a) for a in args)))
    return tuple(a if shape_of(a) == shape else _broadcast_to(a, shape) for a in args)


@implements(np.atleast_1d)
def _atleast_1d(a):
    return _reshape(a, (1,)) if ndim_of(a) == 0 else a


@implements(np.atleast_2d)
def _atleast_2d(a):
    return _reshape(a, (1,) * (2 - ndim_of(a)) + tuple(shape_of(a))) if ndim_of(a) < 2 else a


@implements(np.shape)
def _shape(a):
    return shape_of(a)


@implements(np.ndim)
def _ndim(a):
    return ndim_of(a)


@implements(np.size)
def _size(a, axis=None):
    return math.prod(shape_of(a)) if axis is None else shape_of(a)[axis]


# ---- joining -----------------------------------------------------------------------------


@implements(np.concatenate)
def _concatenate(arrays, axis=0, out=None, dtype=None, casting=None):
    arrays = list(arrays)
    if axis is None:
        arrays, axis = [np.ravel(a) for a in arrays], 0
    ndim = ndim_of(arrays[0])
    if ndim == 0:
        raise ShapeError("zero-dimensional arrays cannot be concatenated", here())
    return operation("concatenate", *arrays, axis=axes_of(axis, ndim)[0])


@implements(np.stack)
def _stack(arrays, axis=0, out=None, dtype=None, casting=None):
    arrays = list(arrays)
    shapes = {shape_of(a) for a in arrays}
    if len(shapes) != 1:
        raise ShapeError(f"all input arrays must have the same shape to stack, got {[list(s) for s in shapes]}", here())
    return _concatenate([np.expand_dims(a, axis) for a in arrays], axis=axis)


@implements(np.hstack)
def _hstack(tup, dtype=None, casting=None):
    arrays = [_atleast_1d(a) for a in tup]
    return _concatenate(arrays, axis=0 if ndim_of(arrays[0]) == 1 else 1)


@implements(np.vstack)
def _vstack(tup, dtype=None, casting=None):
    return _concatenate([_atleast_2d(a) for a in tup], axis=0)


# ---- selection and filling ---------------------------------------------------------------


@implements(np.where)
def _where(condition, x=None, y=None):
    if x is None or y is None:
        unsupported("np.where(condition) with one argument (its shape depends on the data)")
    return operation("where", condition, x, y)


@implements(np.clip)
def _clip(a, a_min=None, a_max=None, out=None, *, min=None, max=None, **kwargs):
    lo = a_min if a_min is not None else min
    hi = a_max if a_max is not None else max
    if out is not None:
        raise TraceError("np.clip(..., out=...) cannot write a traced value into a NumPy array", here())
    if lo is None and hi is None:
        raise ShapeError("np.clip needs a_min or a_max", here())
    if lo is None:
        return np.minimum(a, hi)
    if hi is None:
        return np.maximum(a, lo)
    return operation("clip", a, lo, hi)


@implements(np.copy)
def _copy(a, order="K", subok=False):
    return a.copy() if isinstance(a, Tracer) else np.copy(a)  # a new array: writes into it stay there


@implements(np.full_like)
def _full_like(a, fill_value, dtype=None, order="K", subok=True, shape=None):
    # a new traced array (not a NumPy one), so traced values can be written into it
    context = (a if isinstance(a, Tracer) else fill_value)._context
    return constant_array(context, shape_of(a) if shape is None else shape, dtype or a.dtype, fill_value)


@implements(np.zeros_like, np.empty_like)
def _zeros_like(a, dtype=None, order="K", subok=True, shape=None):
    return _full_like(a, 0, dtype, shape=shape)


@implements(np.ones_like)
def _ones_like(a, dtype=None, order="K", subok=True, shape=None):
    return _full_like(a, 1, dtype, shape=shape)


# ---- indexing ----------------------------------------------------------------------------


@implements(operator.getitem)
def getitem(x: Tracer, key):
    """``x[key]`` for basic slices, ints, None, Ellipsis, integer arrays and constant boolean masks
    (NumPy semantics, views included: see ``chainrule.frontends.inplace``)."""
    if is_traced_mask(key):  # its shape would depend on the data: only good for writing back
        if tuple(key.shape) != tuple(x.shape[: key.ndim]):
            raise ShapeError(f"boolean index of shape {list(key.shape)} does not match shape {list(x.shape)}", here())
        return MaskedSelection(key, x.copy())
    items, arrays, had_ellipsis = index_template(x.shape, key)
    result = operation("getitem", x, *arrays, index=items)
    if had_ellipsis and result.ndim == 0 and not arrays:  # a[0, ...]: a 0-d view, not a scalar
        take_view(x, result, ("getitem", (("index", items),), (), EXACT))
    return result
