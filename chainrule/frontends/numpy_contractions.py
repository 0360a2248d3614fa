"""What NumPy's contractions do to traced values: einsum, tensordot, inner, vdot, kron, trace,
diagonal, diag and cross.

None is a primitive. Every contraction of two operands is lowered by ``contract_pair`` to
transposes and reshapes around one ``matmul`` where it is one (so BLAS runs it), to a broadcast
multiply where nothing is summed (an outer product), and to a multiply and a sum where the
operands share every axis (a batched dot). A diagonal is a strided slice of the flattened axes
(``getitem``, whose gradient is a ``scatter_add`` of unique positions), and ``np.diag`` of a
vector is that ``scatter_add`` itself. ``np.einsum`` reads its subscripts with
``einsum_subscripts``, takes diagonals and sums what only one operand has first, then contracts
the operands pairwise in the order ``np.einsum_path`` chooses. ``np.matmul`` (``@``) and
``np.dot`` are the ``matmul`` primitive (``numpy_api``); ``np.outer`` is in ``numpy_api`` too.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from chainrule.errors import ShapeError, TraceError
from chainrule.frontends.dispatch import here, implements
from chainrule.frontends.einsum_subscripts import LETTERS, read_subscripts, split_operands
from chainrule.frontends.numpy_api import axes_of, ndim_of, no_extras, shape_of
from chainrule.frontends.tracer import Tracer, operation

# ---- contracting labelled operands ---------------------------------------------------------


def arranged(x, labels: list, order: list, shape: tuple):
    """``x`` (axes called ``labels``) with its axes in ``order``, then reshaped to ``shape``."""
    if order != labels:
        x = np.transpose(x, [labels.index(label) for label in order])
    return x if tuple(shape_of(x)) == tuple(shape) else np.reshape(x, shape)


def sum_labels(x, labels: list, summed: list):
    """``x`` summed over the axes called ``summed``, and the labels left."""
    if not summed:
        return x, labels
    kept = [label for label in labels if label not in summed]
    return np.sum(x, axis=tuple(labels.index(label) for label in summed)), kept


def contract_pair(a, a_labels: list, b, b_labels: list, keep: set, sizes: dict):
    """The product of ``a`` and ``b`` summed over the labels not in ``keep``: (value, its labels).

    The labels both operands have and ``keep`` keeps are batch axes; the result's axes are the
    batch axes, then ``a``'s other axes, then ``b``'s, each in their operand's order."""
    a, a_labels = sum_labels(a, a_labels, [label for label in a_labels if label not in b_labels and label not in keep])
    b, b_labels = sum_labels(b, b_labels, [label for label in b_labels if label not in a_labels and label not in keep])
    shared = [label for label in a_labels if label in b_labels]
    batch = [label for label in shared if label in keep]
    summed = [label for label in shared if label not in keep]
    a_free = [label for label in a_labels if label not in shared]
    b_free = [label for label in b_labels if label not in shared]
    batch_shape = tuple(sizes[label] for label in batch)
    a_free_shape, b_free_shape = tuple(sizes[label] for label in a_free), tuple(sizes[label] for label in b_free)
    result_labels = batch + a_free + b_free
    if not summed:  # an outer product (per batch element): broadcasting, no sum
        a = arranged(a, a_labels, batch + a_free, batch_shape + a_free_shape + (1,) * len(b_free))
        b = arranged(b, b_labels, batch + b_free, batch_shape + (1,) * len(a_free) + b_free_shape)
        return a * b, result_labels
    summed_size = math.prod(sizes[label] for label in summed)
    if not a_free and not b_free:  # a dot product (per batch element)
        if not batch:  # one BLAS dot
            flat = (summed_size,)
            return np.matmul(
                arranged(a, a_labels, a_labels, flat), arranged(b, b_labels, a_labels, flat)
            ), result_labels
        shape = batch_shape + tuple(sizes[label] for label in summed)
        product = arranged(a, a_labels, batch + summed, shape) * arranged(b, b_labels, batch + summed, shape)
        return np.sum(product, axis=tuple(range(len(batch), len(batch) + len(summed)))), result_labels
    a = arranged(a, a_labels, batch + a_free + summed, batch_shape + (math.prod(a_free_shape), summed_size))
    b = arranged(b, b_labels, batch + summed + b_free, batch_shape + (summed_size, math.prod(b_free_shape)))
    product = np.matmul(a, b)
    return arranged(product, result_labels, result_labels, batch_shape + a_free_shape + b_free_shape), result_labels


def diagonal_of(x, axes: list, offset: int = 0):
    """The diagonal over ``axes`` (``x[..., i, i + offset]`` for two, ``x[..., i, i, i]`` for
    three), as the last axis after the other axes in order: a strided slice of the flattened axes."""
    shape = shape_of(x)
    rest = [a for a in range(len(shape)) if a not in axes]
    sizes = [shape[a] for a in axes]
    strides = [math.prod(sizes[k + 1 :]) for k in range(len(sizes))]
    flat = arranged(x, list(range(len(shape))), rest + axes, tuple(shape[a] for a in rest) + (math.prod(sizes),))
    start = offset * strides[-1] if offset >= 0 else -offset * strides[0]
    count = max(0, min(sizes[0] - max(-offset, 0), sizes[-1] - max(offset, 0), *sizes[1:-1]))
    step = sum(strides)
    return flat[..., start : start + (count - 1) * step + 1 if count else start : step]


# ---- einsum --------------------------------------------------------------------------------


@implements(np.einsum)
def _einsum(*operands, out=None, optimize=False, dtype=None, order="K", casting="safe"):
    """``np.einsum``: any subscripts NumPy reads, contracted pairwise in ``np.einsum_path``'s order.

    ``order`` is a memory layout, which a traced value does not have; ``optimize`` picks the path
    (``False`` and ``True`` both take the greedy one: a pairwise order is never worse than none)."""
    no_extras("np.einsum", out, {})
    try:
        values, terms, output = split_operands(operands)
        if dtype is not None:
            values = [_cast(x, np.dtype(dtype), casting) for x in values]
        subscripts = read_subscripts(terms, output, [shape_of(x) for x in values])
        return _contract(values, subscripts, optimize)
    except ShapeError as error:
        raise error.at(here()) from None


def _cast(x, dtype: np.dtype, casting):
    if not np.can_cast(x.dtype if isinstance(x, Tracer) else np.asarray(x).dtype, dtype, casting):
        raise TraceError(f"np.einsum cannot cast operands of {x.dtype} to {dtype} with casting={casting!r}", here())
    return x.astype(dtype) if isinstance(x, Tracer) else np.asarray(x, dtype)


def _contract(values: list, subscripts, optimize):
    sizes, output = subscripts.sizes, subscripts.output
    prepared = [_prepared(x, list(labels), sizes) for x, labels in zip(values, subscripts.inputs)]
    values, labels = [x for x, _ in prepared], [label for _, label in prepared]
    for k, own in enumerate(labels):  # what no other operand and no output has is summed first
        elsewhere = set(output).union(*(label for j, label in enumerate(labels) if j != k))
        values[k], labels[k] = sum_labels(values[k], own, [label for label in own if label not in elsewhere])
    for step in contraction_path(labels, output, sizes, optimize):
        group = [(values[k], labels[k]) for k in step]
        for k in sorted(step, reverse=True):
            del values[k], labels[k]
        if not values:  # the last step: the operand with the output's leading axes goes left (no transpose)
            group.sort(key=lambda item: _first_output_axis(item[1], output))
        value, value_labels = group[0]
        for k, (other, other_labels) in enumerate(group[1:], 2):
            keep = set(output).union(*labels, *(label for _, label in group[k:]))
            value, value_labels = contract_pair(value, value_labels, other, other_labels, keep, sizes)
        values.append(value)
        labels.append(value_labels)
    if len(values) != 1:
        raise ShapeError(f"np.einsum: the contraction path leaves {len(values)} operands, not one")
    value, value_labels = sum_labels(values[0], labels[0], [label for label in labels[0] if label not in output])
    return arranged(value, value_labels, list(output), tuple(sizes[label] for label in output))


def _first_output_axis(labels: list, output: tuple) -> int:
    return min((output.index(label) for label in labels if label in output), default=len(output))


def _prepared(x, labels: list, sizes: dict):
    """``x`` with unique labels: an axis of size 1 broadcast against a larger one is dropped (``x``
    is constant along it), and an axis label repeated within ``x`` becomes its diagonal."""
    shape = shape_of(x)
    broadcast = [axis for axis, label in enumerate(labels) if shape[axis] == 1 and sizes[label] != 1]
    if broadcast:
        x = np.reshape(x, tuple(d for axis, d in enumerate(shape) if axis not in broadcast))
        labels = [label for axis, label in enumerate(labels) if axis not in broadcast]
    repeated = [label for label in dict.fromkeys(labels) if labels.count(label) > 1]
    for label in repeated:
        x = diagonal_of(x, [axis for axis, other in enumerate(labels) if other == label])
        labels = [other for other in labels if other != label] + [label]
    return x, labels


def contraction_path(labels: list, output: tuple, sizes: dict, optimize) -> list[tuple[int, ...]]:
    """The order of pairwise contractions: ``np.einsum_path``'s, each step a tuple of positions in
    the list of operands left (the step's result goes to its end)."""
    if isinstance(optimize, (list, tuple)) and optimize and optimize[0] == "einsum_path":
        return _checked_path([tuple(step) for step in optimize[1:]], len(labels))
    if len(labels) < 2:
        return []
    strategy, memory_limit = _strategy(optimize)
    used = sorted(set(output).union(*labels))
    if len(used) > len(LETTERS):  # np.einsum_path reads letters only: contract left to right
        return [(0, 1)] * (len(labels) - 1)
    letter = {label: LETTERS[k] for k, label in enumerate(used)}
    text = (
        ",".join("".join(letter[label] for label in own) for own in labels)
        + "->"
        + "".join(letter[label] for label in output)
    )
    shape_only = [_shape_only(tuple(sizes[label] for label in own), np.float64) for own in labels]
    # no memory limit by default: a pairwise lowering holds every intermediate anyway, and
    # einsum_path answers a limit with one step of all operands, left for us to order blindly
    limit = memory_limit if memory_limit is not None else 1 << 62
    path, _ = np.einsum_path(text, *shape_only, optimize=(strategy, limit))
    return [tuple(step) for step in path[1:]]


def _strategy(optimize) -> tuple:
    """``optimize`` as (np.einsum_path's strategy, memory limit or None)."""
    if optimize in (False, True, None):
        return "greedy", None
    if isinstance(optimize, str):
        optimize = (optimize, None)
    if (
        isinstance(optimize, tuple)
        and len(optimize) == 2
        and optimize[0] in ("greedy", "optimal")
        and isinstance(optimize[1], (int, float, type(None)))
    ):
        return optimize
    raise ShapeError(f"np.einsum: cannot read optimize={optimize!r}")


def _shape_only(shape: tuple, dtype) -> np.ndarray:
    """An array of ``shape`` that allocates nothing: what np.einsum_path reads is the shape."""
    return np.broadcast_to(np.zeros((), dtype), shape)


def _checked_path(path: list, count: int) -> list:
    for step in path:
        if len(set(step)) != len(step) or not all(isinstance(k, (int, np.integer)) and 0 <= k < count for k in step):
            raise ShapeError(f"np.einsum: path step {step} does not pick distinct operands of the {count} left")
        count += 1 - len(step)
    return path


@implements(np.einsum_path)
def _einsum_path(*operands, optimize="greedy", einsum_call=False):
    """``np.einsum_path`` needs only the operands' shapes, which traced values have."""
    shape_only = [_shape_only(x.shape, x.dtype) if isinstance(x, Tracer) else x for x in operands]
    return np.einsum_path(*shape_only, optimize=optimize, einsum_call=einsum_call)


# ---- tensordot, inner, vdot, kron ----------------------------------------------------------


@implements(np.tensordot)
def _tensordot(a, b, axes=2):
    """``np.tensordot``: ``axes`` an int N (``a``'s last N with ``b``'s first N) or two axis lists."""
    a_ndim, b_ndim = ndim_of(a), ndim_of(b)
    if isinstance(axes, (int, np.integer)):
        if not 0 <= axes <= min(a_ndim, b_ndim):
            raise ShapeError(f"np.tensordot: axes={axes} for operands of {a_ndim} and {b_ndim} axes", here())
        a_axes, b_axes = list(range(a_ndim - axes, a_ndim)), list(range(axes))
    else:
        a_axes, b_axes = (_axes_in_order(side, ndim) for side, ndim in zip(axes, (a_ndim, b_ndim)))
    a_shape, b_shape = shape_of(a), shape_of(b)
    if [a_shape[i] for i in a_axes] != [b_shape[j] for j in b_axes]:
        raise ShapeError(
            f"np.tensordot of shapes {list(a_shape)} and {list(b_shape)}: the summed axes {a_axes} and "
            f"{b_axes} differ in number or size",
            here(),
        )
    b_labels = [a_axes[b_axes.index(j)] if j in b_axes else a_ndim + j for j in range(b_ndim)]
    sizes = dict(enumerate(a_shape)) | {a_ndim + j: d for j, d in enumerate(b_shape)}
    a_labels = list(range(a_ndim))
    keep = {label for label in a_labels + b_labels if label not in a_axes}
    return contract_pair(a, a_labels, b, b_labels, keep, sizes)[0]


def _axes_in_order(axes, ndim: int) -> list:
    """An int or a sequence of axes, non-negative and bounds-checked, in the order given."""
    axes = [axes] if isinstance(axes, (int, np.integer)) else list(axes)
    axes_of(axes, ndim)  # raises on an out-of-bounds or repeated axis
    return [int(i) % ndim for i in axes]


@implements(np.inner)
def _inner(a, b):
    """``np.inner``: the sum over the last axes; a scalar operand multiplies."""
    if ndim_of(a) == 0 or ndim_of(b) == 0:
        return np.multiply(a, b)
    return _tensordot(a, b, ([-1], [-1]))


@implements(np.vdot)
def _vdot(a, b):
    """``np.vdot``: the dot product of the flattened operands (real arrays: no conjugate)."""
    a, b = np.ravel(a), np.ravel(b)
    if shape_of(a) != shape_of(b):
        raise ShapeError(f"np.vdot of {shape_of(a)[0]} and {shape_of(b)[0]} elements: they must be as many", here())
    return np.matmul(a, b)


@implements(np.kron)
def _kron(a, b):
    """``np.kron``: ``a``'s axis k and ``b``'s axis k interleaved, multiplied, and merged."""
    ndim = max(ndim_of(a), ndim_of(b))
    a_shape = (1,) * (ndim - ndim_of(a)) + tuple(shape_of(a))
    b_shape = (1,) * (ndim - ndim_of(b)) + tuple(shape_of(b))
    a_spread = np.reshape(a, tuple(d for size in a_shape for d in (size, 1)))
    b_spread = np.reshape(b, tuple(d for size in b_shape for d in (1, size)))
    return np.reshape(a_spread * b_spread, tuple(m * n for m, n in zip(a_shape, b_shape)))


# ---- diagonals -----------------------------------------------------------------------------


def _two_axes(name: str, ndim: int, axis1, axis2) -> list:
    if ndim < 2:
        raise ShapeError(f"{name} needs an array of at least 2 axes, got {ndim}", here())
    first, second = axes_of(axis1, ndim)[0], axes_of(axis2, ndim)[0]
    if first == second:
        raise ShapeError(f"{name}: axis1 and axis2 are both axis {first}", here())
    return [first, second]


@implements(np.diagonal)
def _diagonal(a, offset=0, axis1=0, axis2=1):
    return diagonal_of(a, _two_axes("np.diagonal", ndim_of(a), axis1, axis2), int(offset))


@implements(np.trace)
def _trace(a, offset=0, axis1=0, axis2=1, dtype=None, out=None):
    no_extras("np.trace", out, {})
    diagonal = diagonal_of(a, _two_axes("np.trace", ndim_of(a), axis1, axis2), int(offset))
    return np.sum(diagonal, axis=-1, dtype=dtype)


@implements(np.diag)
def _diag(v, k=0):
    """``np.diag``: a matrix's k-th diagonal, or a matrix with a vector on its k-th diagonal."""
    if ndim_of(v) == 2:
        return diagonal_of(v, [0, 1], int(k))
    if ndim_of(v) != 1:
        raise ShapeError(f"np.diag needs a 1-D or 2-D array, got shape {list(shape_of(v))}", here())
    count, k = shape_of(v)[0], int(k)
    side = count + abs(k)
    start = k if k >= 0 else -k * side  # the flat position of the diagonal's first element
    stop = start + (count - 1) * (side + 1) + 1 if count else start
    index = (("slice", start, stop, side + 1),)
    flat = operation("scatter_add", v, index=index, shape=(side * side,), dtype=v.dtype.name, unique=True)
    return np.reshape(flat, (side, side))


# ---- cross ---------------------------------------------------------------------------------


@implements(np.cross)
def _cross(a, b, axisa=-1, axisb=-1, axisc=-1, axis=None):
    """``np.cross`` of 3-vectors (a 2-vector has z = 0), or the z component of two 2-vectors."""
    if axis is not None:
        axisa = axisb = axisc = axis
    a = np.moveaxis(a, axes_of(axisa, ndim_of(a))[0], -1)
    b = np.moveaxis(b, axes_of(axisb, ndim_of(b))[0], -1)
    if shape_of(a)[-1] not in (2, 3) or shape_of(b)[-1] not in (2, 3):
        raise ShapeError(
            f"np.cross of vectors of {shape_of(a)[-1]} and {shape_of(b)[-1]} components: each must have 2 or 3",
            here(),
        )
    a0, a1, b0, b1 = a[..., 0], a[..., 1], b[..., 0], b[..., 1]
    z = a0 * b1 - a1 * b0
    if 2 in (shape_of(a)[-1], shape_of(b)[-1]):  # as NumPy 2 warns, on the user's line
        warnings.warn(
            "Arrays of 2-dimensional vectors are deprecated. Use arrays of 3-dimensional vectors instead. "
            "(deprecated in NumPy 2.0)",
            DeprecationWarning,
            stacklevel=4,
        )
    if shape_of(a)[-1] == shape_of(b)[-1] == 2:
        return z
    a2 = a[..., 2] if shape_of(a)[-1] == 3 else None
    b2 = b[..., 2] if shape_of(b)[-1] == 3 else None
    x = _difference(a1, b2, a2, b1)
    y = _difference(a2, b0, a0, b2)
    c = np.stack([x, y, z], axis=-1)
    return np.moveaxis(c, -1, axes_of(axisc, ndim_of(c))[0])


def _difference(p, q, r, s):
    """``p * q - r * s``, where a None factor (a missing z component) is 0."""
    if q is None or p is None:
        return -(r * s)
    if r is None or s is None:
        return p * q
    return p * q - r * s
