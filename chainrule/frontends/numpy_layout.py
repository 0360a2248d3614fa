"""What NumPy's layout functions do to traced values: padding, tiling, repeating, splitting,
flipping, rolling, rotating, triangles, stacking, blocks, insertion and deletion.

Each is written with the shape primitives (getitem with slices or a constant index array,
concatenate, reshape, transpose, broadcast_to, where), so its gradient, forward mode, batching
and both backends come from theirs: a gather's gradient is a scatter-add, so a padded edge or a
repeated element sends the sum of its cotangents back. Where an index map is what NumPy computes,
NumPy computes it, on an array of indices (``np.pad(np.arange(n), ...)``): the traced result is
then exactly NumPy's for every argument form NumPy accepts.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np

from chainrule.errors import ShapeError, TraceError, UnsupportedError
from chainrule.frontends.dispatch import here, implements
from chainrule.frontends.numpy_api import axes_of, ndim_of, shape_of
from chainrule.frontends.tracer import Tracer

_ALL = slice(None)


def along(ndim: int, axis: int, key) -> tuple:
    """The index taking ``key`` on ``axis`` and everything on the other axes."""
    return (_ALL,) * axis + (key,) + (_ALL,) * (ndim - axis - 1)


def take_along(x, axis: int, index: np.ndarray):
    """``x`` gathered on ``axis`` at a constant integer ``index`` (a view when it is a range)."""
    index = np.asarray(index, dtype=np.intp)
    if index.ndim == 1 and len(index) > 0 and np.all(np.diff(index) == 1):
        return x[along(ndim_of(x), axis, slice(int(index[0]), int(index[-1]) + 1))]
    return x[along(ndim_of(x), axis, index)]


def constant_argument(name: str, what: str, value):
    """``value``, which sets the result's shape, as a NumPy value; a traced one is an error."""
    if isinstance(value, Tracer) or (isinstance(value, (list, tuple)) and any(isinstance(v, Tracer) for v in value)):
        raise TraceError(f"{name}: {what} must be known while tracing (it sets the result's shape)", here())
    return value


def single_axis(name: str, axis, ndim: int) -> int:
    if not isinstance(axis, (int, np.integer)):
        raise UnsupportedError(f"{name} with axis={axis!r}: give one int axis", here())
    return axes_of(int(axis), ndim)[0]


# ---- padding -----------------------------------------------------------------------------

_GATHER_MODES = ("edge", "wrap", "reflect", "symmetric")
_LINEAR_MODES = ("mean", "linear_ramp", "reflect", "symmetric")


def as_pairs(value, ndim: int, name: str = "np.pad") -> list:
    """NumPy's ``pad_width`` forms (``n``, ``(n,)``, ``(before, after)``, one pair per axis, a dict
    of axis to width or pair) as one ``(before, after)`` pair per axis."""
    if isinstance(value, dict):
        pairs = [(0, 0)] * ndim
        for axis, width in value.items():
            pairs[axes_of(int(axis), ndim)[0]] = as_pairs(width, 1, name)[0]
        return pairs
    array = np.asarray(value)
    if array.size == 1:
        return [(array.item(), array.item())] * ndim
    if array.size == 2 and array.shape != (2, 1):
        return [tuple(array.ravel().tolist())] * ndim
    try:
        return [tuple(pair) for pair in np.broadcast_to(array, (ndim, 2)).tolist()]
    except ValueError:
        raise ShapeError(f"{name}: cannot read {value!r} as (before, after) pairs for {ndim} axes", here()) from None


@implements(np.pad)
def _pad(array, pad_width, mode="constant", **kwargs):
    ndim = ndim_of(array)
    widths = as_pairs(constant_argument("np.pad", "pad_width", pad_width), ndim)
    if any(int(w) != w or w < 0 for pair in widths for w in pair):
        raise ShapeError(f"np.pad: pad widths must be non-negative integers, got {pad_width!r}", here())
    widths = [(int(b), int(a)) for b, a in widths]
    if isinstance(array, Tracer) and not any(b or a for b, a in widths):
        return array.copy()  # NumPy's pad always makes a new array: a write into it leaves array as it was
    if mode == "constant":
        return _pad_constant(array, widths, kwargs.pop("constant_values", 0), kwargs)
    if mode in ("maximum", "minimum") and set(kwargs) <= {"stat_length"}:
        return _pad_extremum(array, widths, mode, kwargs.get("stat_length"))
    odd = kwargs.get("reflect_type", "even") == "odd"
    if mode in _GATHER_MODES and not odd and set(kwargs) <= {"reflect_type"}:
        for axis, (before, after) in enumerate(widths):
            if before or after:
                index = _numpy_pad(np.arange(shape_of(array)[axis]), (before, after), mode)
                array = take_along(array, axis, index)
        return array
    if mode in _LINEAR_MODES and set(kwargs) <= {"reflect_type", "stat_length", "end_values"}:
        return _pad_linear(array, widths, mode, kwargs)
    raise UnsupportedError(
        f"np.pad with mode={mode!r}{''.join(f', {k}=' for k in kwargs)} is not supported on traced values "
        "(constant, edge, wrap, reflect, symmetric, mean, linear_ramp, maximum and minimum are)",
        here(),
    )


def _numpy_pad(values: np.ndarray, pair, mode: Any, **kwargs) -> np.ndarray:
    try:
        return np.pad(values, [(0, 0)] * (values.ndim - 1) + [pair], mode=mode, **kwargs)
    except ValueError as error:
        raise ShapeError(f"np.pad: {error}", here()) from None


def _pad_constant(array, widths, constant_values, unknown: dict):
    if unknown:
        raise UnsupportedError(f"np.pad(mode='constant') with {', '.join(unknown)}=", here())
    if isinstance(constant_values, Tracer) and constant_values.ndim != 0:
        raise UnsupportedError("np.pad with a traced constant_values that is not a scalar", here())
    traced_value = isinstance(constant_values, Tracer)
    values = [(constant_values,) * 2] * len(widths) if traced_value else as_pairs(constant_values, len(widths))
    dtype = array.dtype if hasattr(array, "dtype") else np.asarray(array).dtype
    for axis, ((before, after), fills) in enumerate(zip(widths, values)):
        if not (before or after):
            continue
        parts = []
        for width, fill in ((before, fills[0]), (after, fills[1])):
            shape = list(shape_of(array))
            shape[axis] = width
            parts.append(np.full_like(array, fill, dtype=dtype, shape=tuple(shape)))
        # each axis pads across the earlier axes' padding, so a corner holds the later axis' value
        array = np.concatenate([parts[0], array, parts[1]], axis=axis)
    return array


def _pad_linear(array, widths, mode, kwargs):
    """Modes whose padding is a linear map of the axis' values (plus constants): the map is
    NumPy's padding of the identity matrix's rows, the constants NumPy's padding of zeros."""
    if array.dtype.kind != "f":
        raise UnsupportedError(f"np.pad(mode={mode!r}) of a traced {array.dtype} array (NumPy rounds it)", here())
    for axis, (before, after) in enumerate(widths):
        if not (before or after):
            continue
        options = {
            k: v if k == "reflect_type" or v is None else as_pairs(v, len(widths))[axis] for k, v in kwargs.items()
        }
        size = shape_of(array)[axis]
        linear = {**options, "end_values": 0} if mode == "linear_ramp" else options
        matrix = _numpy_pad(np.eye(size, dtype=array.dtype), (before, after), mode, **linear)
        padded = np.moveaxis(array, axis, -1) @ matrix
        if mode == "linear_ramp":
            padded = padded + _numpy_pad(np.zeros(size, array.dtype), (before, after), mode, **options)
        array = np.moveaxis(padded, -1, axis)
    return array


def _pad_extremum(array, widths, mode, stat_length):
    reduce = np.max if mode == "maximum" else np.min
    lengths = as_pairs(stat_length, len(widths)) if stat_length is not None else None
    for axis, (before, after) in enumerate(widths):
        size = shape_of(array)[axis]
        if not (before or after):
            continue
        if size == 0:
            raise ShapeError(f"np.pad: cannot pad the empty axis {axis} with mode={mode!r}", here())
        counts = [
            size if lengths is None or lengths[axis][i] is None else min(int(lengths[axis][i]), size) for i in (0, 1)
        ]
        parts = []
        for width, region in ((before, slice(0, counts[0])), (after, slice(size - counts[1], size))):
            stat = reduce(array[along(ndim_of(array), axis, region)], axis=axis, keepdims=True)
            shape = list(shape_of(array))
            shape[axis] = width
            parts.append(np.broadcast_to(stat, tuple(shape)))
        array = np.concatenate([parts[0], array, parts[1]], axis=axis)
    return array


# ---- tiling and repeating ----------------------------------------------------------------


@implements(np.tile)
def _tile(A, reps):
    reps = constant_argument("np.tile", "reps", reps)
    reps = (int(reps),) if np.ndim(reps) == 0 else tuple(int(r) for r in reps)
    shape = shape_of(A)
    rank = max(len(reps), len(shape))
    shape = (1,) * (rank - len(shape)) + tuple(shape)
    reps = (1,) * (rank - len(reps)) + reps
    interleaved = tuple(d for pair in zip((1,) * rank, shape) for d in pair)
    broadcast = tuple(d for pair in zip(reps, shape) for d in pair)
    tiled = np.broadcast_to(np.reshape(A, interleaved), broadcast)
    return np.reshape(tiled, tuple(r * d for r, d in zip(reps, shape)))


@implements(np.repeat)
def _repeat(a, repeats, axis=None):
    repeats = np.asarray(constant_argument("np.repeat", "repeats", repeats))
    if axis is None:
        a, axis = np.ravel(a), 0
    axis = single_axis("np.repeat", axis, ndim_of(a))
    shape = shape_of(a)
    if repeats.size == 1:  # each element r times: a new axis of length r after `axis`, then merged
        count = int(repeats.item())
        if count < 0:
            raise ShapeError(f"np.repeat: repeats may not be negative, got {count}", here())
        inserted = shape[: axis + 1] + (1,) + shape[axis + 1 :]
        spread = np.broadcast_to(np.reshape(a, inserted), shape[: axis + 1] + (count,) + shape[axis + 1 :])
        return np.reshape(spread, shape[:axis] + (shape[axis] * count,) + shape[axis + 1 :])
    try:
        index = np.repeat(np.arange(shape[axis]), repeats)
    except ValueError as error:
        raise ShapeError(f"np.repeat: {error}", here()) from None
    return take_along(a, axis, index)


# ---- splitting ---------------------------------------------------------------------------


@implements(np.array_split)
def _array_split(ary, indices_or_sections, axis=0):
    indices_or_sections = constant_argument("np.array_split", "indices_or_sections", indices_or_sections)
    axis = single_axis("np.array_split", axis, ndim_of(ary))
    length = shape_of(ary)[axis]
    if np.ndim(indices_or_sections) == 0:
        sections = int(indices_or_sections)
        if sections <= 0:
            raise ShapeError("number sections must be larger than 0", here())
        each, extras = divmod(length, sections)
        sizes = [0] + extras * [each + 1] + (sections - extras) * [each]
        bounds = np.cumsum(sizes).tolist()
    else:
        bounds = [0] + [int(i) for i in indices_or_sections] + [length]
    return [ary[along(ndim_of(ary), axis, slice(start, stop))] for start, stop in itertools.pairwise(bounds)]


@implements(np.split)
def _split(ary, indices_or_sections, axis=0):
    if np.ndim(constant_argument("np.split", "indices_or_sections", indices_or_sections)) == 0:
        length = shape_of(ary)[single_axis("np.split", axis, ndim_of(ary))]
        if int(indices_or_sections) <= 0 or length % int(indices_or_sections):
            raise ShapeError(
                f"np.split: an axis of length {length} does not split into {indices_or_sections} equal parts", here()
            )
    return _array_split(ary, indices_or_sections, axis)


def _split_from(name: str, min_ndim: int, axis_of):
    def split(ary, indices_or_sections):
        if ndim_of(ary) < min_ndim:
            raise ShapeError(f"np.{name} only works on arrays of {min_ndim} or more dimensions", here())
        return _split(ary, indices_or_sections, axis_of(ndim_of(ary)))

    return split


implements(np.hsplit)(_split_from("hsplit", 1, lambda ndim: 1 if ndim > 1 else 0))
implements(np.vsplit)(_split_from("vsplit", 2, lambda ndim: 0))
implements(np.dsplit)(_split_from("dsplit", 3, lambda ndim: 2))


# ---- flipping, rolling, rotating, triangles ----------------------------------------------


@implements(np.flip)
def _flip(m, axis=None):
    ndim = ndim_of(m)
    axes = axes_of(axis, ndim)
    if not axes:  # a 0-d array, or no axis named: nothing to reverse
        return m
    return m[tuple(slice(None, None, -1) if i in axes else _ALL for i in range(ndim))]


@implements(np.fliplr)
def _fliplr(m):
    if ndim_of(m) < 2:
        raise ShapeError("np.fliplr: the input must be at least 2-d", here())
    return _flip(m, 1)


@implements(np.flipud)
def _flipud(m):
    if ndim_of(m) < 1:
        raise ShapeError("np.flipud: the input must be at least 1-d", here())
    return _flip(m, 0)


@implements(np.roll)
def _roll(a, shift, axis=None):
    shift = constant_argument("np.roll", "shift", shift)
    if axis is None:
        return np.reshape(_roll(np.ravel(a), shift, 0), shape_of(a))
    ndim = ndim_of(a)
    shifts = dict.fromkeys(range(ndim), 0)
    try:
        pairs = np.broadcast(np.asarray(shift), np.asarray(axis))
    except ValueError:
        raise ShapeError(
            "np.roll: 'shift' and 'axis' should be scalars or 1D sequences of one length", here()
        ) from None
    for step, ax in pairs:
        shifts[axes_of(int(ax), ndim)[0]] += int(step)
    for ax, step in shifts.items():
        length = shape_of(a)[ax]
        cut = length - step % length if length else 0
        if 0 < cut < length:
            a = np.concatenate([a[along(ndim, ax, slice(cut, None))], a[along(ndim, ax, slice(None, cut))]], axis=ax)
    return a.copy() if isinstance(a, Tracer) else a  # a new array, as NumPy's roll makes


@implements(np.rot90)
def _rot90(m, k=1, axes=(0, 1)):
    ndim = ndim_of(m)
    if len(axes) != 2 or ndim < 2:
        raise ShapeError("np.rot90: len(axes) must be 2 and the array at least 2-d", here())
    first, second = axes_of(axes[0], ndim)[0], axes_of(axes[1], ndim)[0]
    if first == second:
        raise ShapeError("np.rot90: the axes must be different", here())
    k %= 4
    if k == 0:
        return m
    if k == 2:
        return _flip(_flip(m, first), second)
    order = list(range(ndim))
    order[first], order[second] = order[second], order[first]
    return np.transpose(_flip(m, second), order) if k == 1 else _flip(np.transpose(m, order), second)


@implements(np.triu)
def _triu(m, k=0):
    below = np.tri(*shape_of(m)[-2:], k=k - 1, dtype=bool)
    return np.where(below, np.zeros((), m.dtype), m)


@implements(np.tril)
def _tril(m, k=0):
    on_or_below = np.tri(*shape_of(m)[-2:], k=k, dtype=bool)
    return np.where(on_or_below, m, np.zeros((), m.dtype))


# ---- stacking ----------------------------------------------------------------------------


@implements(np.column_stack)
def _column_stack(tup):
    columns = [a if ndim_of(a) >= 2 else np.reshape(a, (-1, 1)) for a in tup]
    return np.concatenate(columns, axis=1)


@implements(np.atleast_3d)
def _atleast_3d(a):
    shape = shape_of(a)
    if len(shape) >= 3:
        return a
    return np.reshape(a, {0: (1, 1, 1), 1: (1,) + tuple(shape) + (1,), 2: tuple(shape) + (1,)}[len(shape)])


@implements(np.dstack)
def _dstack(tup):
    return np.concatenate([_atleast_3d(a) for a in tup], axis=2)


@implements(np.append)
def _append(arr, values, axis=None):
    if axis is None:
        return np.concatenate([np.ravel(arr), np.ravel(values)], axis=0)
    return np.concatenate([arr, values], axis=axis)


@implements(np.block)
def _block(arrays):
    depth, rank = _block_depth(arrays)
    rank = max(rank, depth)

    def assemble(item, level):  # recursion over the nesting of the literal lists, not the graph
        if level == depth:
            return np.reshape(item, (1,) * (rank - ndim_of(item)) + tuple(shape_of(item)))
        return np.concatenate([assemble(part, level + 1) for part in item], axis=level - depth)

    return assemble(arrays, 0)


def _block_depth(arrays) -> tuple:
    """The nesting depth of ``arrays`` (the same for every leaf) and the largest leaf rank."""
    depths, rank, pending = set(), 0, [(arrays, 0)]
    while pending:
        item, level = pending.pop()
        if isinstance(item, tuple):
            raise TypeError("np.block: arrays is a tuple; only lists can be used to arrange blocks")
        if isinstance(item, list):
            if not item:
                raise ShapeError("np.block: lists cannot be empty", here())
            pending.extend((part, level + 1) for part in item)
        else:
            depths.add(level)
            rank = max(rank, ndim_of(item))
    if len(depths) != 1:
        raise ShapeError("np.block: list depths are mismatched", here())
    return depths.pop(), rank


# ---- inserting and deleting --------------------------------------------------------------


@implements(np.delete)
def _delete(arr, obj, axis=None):
    obj = constant_argument("np.delete", "obj", obj)
    if axis is None:
        arr, axis = np.ravel(arr), 0
    axis = single_axis("np.delete", axis, ndim_of(arr))
    try:
        kept = np.delete(np.arange(shape_of(arr)[axis]), obj)
    except (IndexError, ValueError) as error:
        raise ShapeError(f"np.delete: {error}", here()) from None
    return take_along(arr, axis, kept)


@implements(np.insert)
def _insert(arr, obj, values, axis=None):
    # NumPy's insert run on element numbers: arr's are 0..n-1, the values' n.., so the result's
    # numbers say where each element comes from, with NumPy's broadcasting of values and obj
    obj = constant_argument("np.insert", "obj", obj)
    dtype = arr.dtype if hasattr(arr, "dtype") else np.asarray(arr).dtype
    values = values if isinstance(values, Tracer) else np.asarray(values, dtype=dtype)
    size = math.prod(shape_of(arr))
    arr_numbers = np.arange(size).reshape(shape_of(arr))
    value_numbers = size + np.arange(math.prod(shape_of(values))).reshape(shape_of(values))
    try:
        numbers = np.insert(arr_numbers, obj, value_numbers, axis=axis)
    except (IndexError, ValueError) as error:
        raise ShapeError(f"np.insert: {error}", here()) from None
    flat = np.concatenate([np.ravel(arr), np.ravel(values).astype(dtype)])
    return flat[numbers]


# ---- grids -------------------------------------------------------------------------------


@implements(np.meshgrid)
def _meshgrid(*xi, copy=True, sparse=False, indexing="xy"):
    if indexing not in ("xy", "ij"):
        raise ShapeError("np.meshgrid: indexing must be 'xy' or 'ij'", here())
    ndim = len(xi)
    shapes = [[1] * ndim for _ in xi]
    for i, shape in enumerate(shapes):
        shape[i] = -1
    if indexing == "xy" and ndim > 1:
        shapes[0][:2], shapes[1][:2] = [1, -1], [-1, 1]
    grids = [np.reshape(x, tuple(shape)) for x, shape in zip(xi, shapes)]
    if not sparse:
        full = tuple(np.broadcast_shapes(*(shape_of(g) for g in grids)))
        grids = [np.broadcast_to(g, full) for g in grids]
    return tuple(grids)
