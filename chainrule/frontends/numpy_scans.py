"""What NumPy's scans, products, sorting and selection functions do to traced values.

Written with the primitives of ``chainrule.ir.scans`` (cumsum, cumprod, prod, sort, argsort,
argmax, argmin, searchsorted) and indexing: ``np.sort`` is the ``sort`` primitive, NumPy's
own sort, whose gradient flows back through the permutation; ``np.partition`` is a sort;
``np.diff`` subtracts slices;
``np.take`` and ``np.take_along_axis`` are integer-array indexing. Order statistics
(median, quantiles) and the NaN-ignoring reductions are in ``numpy_statistics``.
"""

from __future__ import annotations

import numpy as np

from chainrule.errors import ShapeError, UnsupportedError
from chainrule.frontends.dispatch import here, implements, unsupported
from chainrule.frontends.numpy_api import axes_of, is_bool, ndim_of, no_extras, shape_of
from chainrule.frontends.tracer import Tracer, operation


def along_axis(a, axis):
    """``a`` and the one axis a scan or sort runs along: with ``axis=None``, ``a`` flattened and 0."""
    if axis is None:
        return np.ravel(a), 0
    return a, axes_of(axis, ndim_of(a))[0]


def accumulated(op_name, a, dtype, **attrs):
    """``op_name`` (cumsum, cumprod, prod) of ``a`` in NumPy's dtype: ``dtype`` if given, else
    booleans and narrower integers widen to 64 bits, floats stay. The op runs in floats or 64-bit
    integers; a narrower integer ``dtype`` is the 64-bit result cast down (sums and products
    wrap around modulo 2**bits either way)."""
    kind = a.dtype.kind if dtype is None else np.dtype(dtype).kind
    wide = np.dtype(np.uint64 if kind == "u" else np.int64)
    target = np.dtype(dtype) if dtype is not None else (wide if kind in "biu" else a.dtype)
    working = wide if target.kind in "biu" else target
    result = operation(op_name, a.astype(working), **attrs)
    return result.astype(target)


def _scan(op_name, a, axis, dtype, out):
    no_extras(f"np.{op_name}", out, {})
    a, axis = along_axis(a, axis)
    return accumulated(op_name, a, dtype, axis=axis)


@implements(np.cumsum)
def _cumsum(a, axis=None, dtype=None, out=None):
    return _scan("cumsum", a, axis, dtype, out)


@implements(np.cumprod)
def _cumprod(a, axis=None, dtype=None, out=None):
    return _scan("cumprod", a, axis, dtype, out)


@implements(np.prod)
def _prod(a, axis=None, dtype=None, out=None, keepdims=False, **unsupported_keywords):
    where = unsupported_keywords.pop("where", np._NoValue)
    no_extras("np.prod", out, unsupported_keywords)
    a = a if where is np._NoValue or where is True else np.where(where, a, 1)
    return accumulated("prod", a, dtype, axis=axes_of(axis, ndim_of(a)), keepdims=bool(keepdims))


@implements(np.diff)
def _diff(a, n=1, axis=-1, prepend=np._NoValue, append=np._NoValue):
    ndim = ndim_of(a)
    if ndim == 0:
        raise ShapeError("np.diff requires an input of at least one dimension", here())
    if n < 0:
        raise ShapeError(f"np.diff: order must be non-negative, got n={n}", here())
    axis = axes_of(axis, ndim)[0]
    parts = [_edge(prepend, a, axis), a, _edge(append, a, axis)]
    parts = [p for p in parts if p is not None]
    if len(parts) > 1:
        a = np.concatenate(parts, axis=axis)
    for _ in range(n):
        later, earlier = _slice_along(a, axis, 1, None), _slice_along(a, axis, None, -1)
        a = (later != earlier) if is_bool(a) else later - earlier
    return a


def _edge(value, a, axis):
    """``prepend``/``append`` as an array of ``a``'s shape but for its length along ``axis``."""
    if value is np._NoValue:
        return None
    if ndim_of(value) == 0:
        shape = list(shape_of(a))
        shape[axis] = 1
        return np.broadcast_to(value, tuple(shape))
    return value


def _slice_along(a, axis, start, stop):
    return a[(slice(None),) * axis + (slice(start, stop),)]


# ---- sorting -----------------------------------------------------------------------------------


@implements(np.argsort)
def _argsort(a, axis=-1, kind=None, order=None, *, stable=None):
    if order is not None:
        unsupported("np.argsort with order= (structured arrays)")
    a, axis = along_axis(a, axis)
    return operation("argsort", a, axis=axis)


@implements(np.sort)
def _sort(a, axis=-1, kind=None, order=None, *, stable=None):
    if order is not None:
        unsupported("np.sort with order= (structured arrays)")
    # kind= and stable= change nothing in the values but the order of 0.0 and -0.0 (equal values)
    a, axis = along_axis(a, axis)
    return operation("sort", a, axis=axis)


@implements(np.partition)
def _partition(a, kth, axis=-1, kind="introselect", order=None):
    # The sorted array is a partition for every kth: each kth element is where sorting puts it,
    # smaller ones before, larger after (NumPy leaves the order within each side unspecified).
    a, axis = along_axis(a, axis)
    _check_kth(kth, shape_of(a)[axis])
    return _sort(a, axis, order=order)


@implements(np.argpartition)
def _argpartition(a, kth, axis=-1, kind="introselect", order=None):
    a, axis = along_axis(a, axis)
    _check_kth(kth, shape_of(a)[axis])
    return _argsort(a, axis, order=order)


def _check_kth(kth, length):
    for k in np.ravel(kth):
        if isinstance(k, Tracer) or not -length <= int(k) < length:
            raise ShapeError(f"kth(={k}) out of bounds ({length})", here())


def _argextremum(op_name, a, axis, out, keepdims):
    no_extras(f"np.{op_name}", out, {})
    axis = None if axis is None else axes_of(axis, ndim_of(a))[0]
    return operation(op_name, a, axis=axis, keepdims=bool(keepdims))


@implements(np.argmax)
def _argmax(a, axis=None, out=None, *, keepdims=False):
    return _argextremum("argmax", a, axis, out, keepdims)


@implements(np.argmin)
def _argmin(a, axis=None, out=None, *, keepdims=False):
    return _argextremum("argmin", a, axis, out, keepdims)


@implements(np.searchsorted)
def _searchsorted(a, v, side="left", sorter=None):
    if sorter is not None:
        a = _take(a, sorter)
    if side not in ("left", "right"):
        raise ShapeError(f"np.searchsorted: side must be 'left' or 'right', got {side!r}", here())
    return operation("searchsorted", a, v, side=side)


@implements(np.digitize)
def _digitize(x, bins, right=False):
    # NumPy's: searchsorted from the other side; decreasing bins are searched reversed and counted back
    if isinstance(bins, Tracer):
        raise UnsupportedError(
            "np.digitize with traced bins: whether they increase or decrease decides the result; "
            "np.searchsorted(bins, x) takes traced increasing bins",
            here(),
        )
    bins = np.asarray(bins)
    steps = np.diff(bins)
    side = "left" if right else "right"
    if bins.size < 2 or np.all(steps >= 0):
        return np.searchsorted(bins, x, side=side)
    if np.all(steps <= 0):
        return bins.size - np.searchsorted(bins[::-1], x, side=side)
    raise ShapeError("np.digitize: bins must be monotonically increasing or decreasing", here())


@implements(np.unique)
def _unique(ar, return_index=False, return_inverse=False, return_counts=False, axis=None, **keywords):
    raise UnsupportedError(
        "np.unique is not supported on traced values: how many distinct values there are depends on "
        "the data, and a traced array's shape cannot. np.sort(x) keeps every element in order",
        here(),
    )


# ---- selection by integer arrays ---------------------------------------------------------------


@implements(np.take_along_axis)
def _take_along_axis(arr, indices, axis=-1):
    if axis is None:
        if ndim_of(indices) != 1:
            raise ShapeError("np.take_along_axis with axis=None needs 1-D indices", here())
        arr, axis = np.ravel(arr), 0
    ndim = ndim_of(arr)
    if ndim_of(indices) != ndim:
        raise ShapeError(f"np.take_along_axis: indices of {ndim_of(indices)} dimensions for an array of {ndim}", here())
    axis = axes_of(axis, ndim)[0]
    positions = []
    for d, length in enumerate(shape_of(arr)):
        if d == axis:
            positions.append(_integer_indices(indices, "np.take_along_axis"))
        else:
            positions.append(np.arange(length).reshape((1,) * d + (length,) + (1,) * (ndim - d - 1)))
    return _gather(arr, positions)


def _gather(arr, positions: list):
    """``arr[positions[0], positions[1], ...]`` (integer arrays; ``arr`` may be a constant)."""
    index = tuple(("array", k) for k in range(len(positions)))
    return operation("getitem", arr, *positions, index=index)


def _integer_indices(indices, name):
    if isinstance(indices, Tracer):
        if indices.dtype.kind not in "iu":
            raise ShapeError(f"{name}: indices must be integers, got {indices.dtype}", here())
        return indices
    array = np.asarray(indices)
    if array.dtype.kind not in "iu" and array.size:
        raise ShapeError(f"{name}: indices must be integers, got {array.dtype}", here())
    return array.astype(np.intp)


@implements(np.take)
def _take(a, indices, axis=None, out=None, mode="raise"):
    no_extras("np.take", out, {})
    a, axis = along_axis(a, axis)
    length = shape_of(a)[axis]
    indices = _wrapped(_integer_indices(indices, "np.take"), length, mode)
    index = (("slice", None, None, None),) * axis + (("array", 0),)
    return operation("getitem", a, indices, index=index)


def _wrapped(indices, length, mode):
    """``indices`` brought into range as ``mode`` says (out of range with "raise": an error)."""
    if mode not in ("raise", "wrap", "clip"):
        raise ShapeError(f"np.take: mode must be 'raise', 'wrap' or 'clip', got {mode!r}", here())
    if isinstance(indices, Tracer):
        if mode == "clip":
            return np.clip(indices, 0, max(length - 1, 0))
        if mode == "wrap":
            unsupported("np.take(mode='wrap') with traced indices (integer remainder)")
        return indices
    if mode == "clip":
        return np.clip(indices, 0, max(length - 1, 0))
    if mode == "wrap":
        return np.mod(indices, length) if length else indices
    if indices.size and not (-length <= indices.min() and indices.max() < length):
        raise ShapeError(f"np.take: an index is out of bounds for an axis of size {length}", here())
    return indices
