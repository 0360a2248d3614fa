"""Scans, products and orderings: cumsum, cumprod, prod, sort, argsort, argmax, argmin, searchsorted,
order_statistics, rank_positions.

The few primitives NumPy's scan, sort and selection functions are written with
(``chainrule.frontends.numpy_scans`` composes the rest: partition is a sort, median and
quantiles index a sorted array, diff subtracts slices).

- ``cumsum`` is linear: its VJP is the cumulative sum taken from the end (a flip, a
  cumsum, a flip back).
- ``prod``'s rule is the product of the others, (product of those before) * (product of those
  after), which holds at zeros where the textbook ``y / x`` divides by one; it is made of
  cumprods, so second derivatives (Hessians) hold at zeros too.
- ``cumprod``'s rule uses ``y / x`` only where no zero comes before; the first zero of a
  line gets the products that leave it out (a cumprod with that zero replaced by 1), and
  every element after it gets nothing (its products of the others still hold that zero).
  First derivatives hold at zeros; higher ones only away from them.
- ``sort`` is NumPy's own sort of the values (a forward that needs only them sorts once, as
  ``np.sort`` by hand does); its derivatives go through the permutation, the stable ``argsort``:
  the VJP writes the cotangent back where each value came from (``x̄[order] = ȳ``, one plain
  write: no accumulation, a permutation repeats no position), the JVP gathers the tangent. Where
  a graph needs both the values and that permutation (a value and its gradient), the
  ``shared_sort`` pass takes the values through the permutation instead of sorting twice.
- ``order_statistics`` is what a sort puts at a few ranks of the last axis, found by NumPy's
  partition in linear time (median and quantiles of long lines); its derivatives go to
  ``rank_positions``, the stable sort's positions of those ranks (an integer op, given the
  values, linear time per rank).
- ``argsort``, ``argmax``, ``argmin`` and ``searchsorted`` return integers: piecewise
  constant, so no gradient flows through them (a rule of None for each operand, as for a
  comparison); their results index other arrays, and a gather's gradient flows through them.

Kinds: ``scan`` (an element depends on those before it along an axis), ``reduction``
(prod, computed natively like sum) and ``order`` (sort's values, and integer positions).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from chainrule.errors import ShapeError
from chainrule.ir.builder import F, Value, apply, expand_to
from chainrule.ir.ops import LINEAR, Attrs, Op, normalize_axis, reduced_shape, register, size_of
from chainrule.ir.types import TensorType

# ---- scans along one axis ------------------------------------------------------------------


def _accumulating(x: TensorType) -> TensorType:
    """``x``, whose dtype NumPy's cumsum, cumprod and prod keep: floats and 64-bit integers (they
    widen booleans and narrower integers; the frontend casts those first)."""
    dtype = np.dtype(x.dtype)
    if dtype.kind not in "fiu" or (dtype.kind in "iu" and dtype.itemsize < np.dtype(np.intp).itemsize):
        raise ShapeError(f"accumulations need floats or 64-bit integers, got {x.dtype}")
    return x


def _infer_scan(types: list[TensorType], attrs: Attrs) -> TensorType:
    x = _accumulating(types[0])
    if not 0 <= attrs["axis"] < x.ndim:
        raise ShapeError(f"scan axis {attrs['axis']} does not fit shape {list(x.shape)}")
    return TensorType(x.shape, x.dtype)


_ALL = ("slice", None, None, None)


def _flip(value: Value, axis: int) -> Value:
    """``value`` reversed along ``axis`` (a strided view)."""
    index = tuple(("slice", None, None, -1 if i == axis else None) for i in range(value.ndim))
    return F.getitem(value, index=index)


def reverse_cumsum(value: Value, axis: int) -> Value:
    """The sums from each element to the end along ``axis``: the transpose of cumsum."""
    return _flip(F.cumsum(_flip(value, axis), axis=axis), axis)


def _scan_flops(ins: list[TensorType], out: TensorType, attrs: Attrs) -> int:
    # one addition (multiplication) per element but the first of each line along the axis
    return max(out.size - out.size // max(out.shape[attrs["axis"]], 1), 0) if out.size else 0


# Op.batch's signature: (operands, batched, logical types, out type, attrs, size) -> Value
BatchRule = Callable[[list[Value], list[bool], list[TensorType], TensorType, Attrs, int], Value]


def batch_along_next_axis(op_name: str) -> BatchRule:
    """The batching rule of a one-operand op along one axis (a scan, a Fourier transform): the same
    op, one axis further in (the batch axis comes first)."""

    def batch(
        operands: list[Value],
        batched: list[bool],
        logical: list[TensorType],
        out_type: TensorType,
        attrs: Attrs,
        size: int,
    ) -> Value:
        return apply(op_name, operands[0], **{**attrs, "axis": attrs["axis"] + 1})

    return batch


register(
    Op(
        "cumsum",
        "scan",
        1,
        _infer_scan,
        "np.cumsum({0}, axis={axis})",
        vjp=(lambda g, y, x, axis: reverse_cumsum(g, axis),),
        jvp=LINEAR,
        flops=_scan_flops,
        batch=batch_along_next_axis("cumsum"),
    )
)


class _ZeroFacts:
    """Where the zeros of ``x`` are along ``axis``, which the zero-safe rules of cumprod need."""

    def __init__(self, x: Value, axis: int):
        self.zero = F.eq(x, 0)
        zeros_so_far = F.cumsum(F.cast(self.zero, dtype="int64"), axis=axis)
        self.before = F.eq(zeros_so_far, 0)  # no zero at or before this element
        self.first = F.logical_and(self.zero, F.eq(zeros_so_far, 1))  # the first zero of its line
        self.safe_x = F.where(self.zero, 1, x)  # x where dividing by it is meant, 1 at zeros
        # the cumprod with the first zero replaced by 1: the products that leave that zero out
        self.without_first = F.cumprod(F.where(self.first, 1, x), axis=axis)


def _cumprod_rule(g: Value, y: Value, x: Value, axis: int) -> Value:
    # dy_j/dx_i = prod_{k <= j, k != i} x_k for j >= i
    facts = _ZeroFacts(x, axis)
    before_zero = reverse_cumsum(g * y, axis) / facts.safe_x
    at_first_zero = reverse_cumsum(g * facts.without_first, axis)
    return F.where(facts.before, before_zero, F.where(facts.first, at_first_zero, 0))


def _cumprod_jvp(tangents: list, y: Value, x: Value, axis: int) -> Value:
    # before any zero: y_j * sum_{i <= j} t_i / x_i; from the first zero z on: t_z * prod_{k <= j, k != z} x_k
    (tangent,) = tangents
    facts = _ZeroFacts(x, axis)
    before_zero = y * F.cumsum(tangent / facts.safe_x, axis=axis)
    tangent_at_zero = F.broadcast_to(
        F.sum(F.where(facts.first, tangent, 0), axis=(axis,), keepdims=True), shape=x.shape
    )
    return F.where(facts.before, before_zero, tangent_at_zero * facts.without_first)


register(
    Op(
        "cumprod",
        "scan",
        1,
        _infer_scan,
        "np.cumprod({0}, axis={axis})",
        vjp=(_cumprod_rule,),
        jvp=_cumprod_jvp,
        flops=_scan_flops,
        batch=batch_along_next_axis("cumprod"),
    )
)

# ---- prod: a reduction -----------------------------------------------------------------------


def _infer_prod(types: list[TensorType], attrs: Attrs) -> TensorType:
    x = _accumulating(types[0])
    axis = normalize_axis(attrs["axis"], x.ndim)
    if axis != tuple(attrs["axis"]):
        raise ShapeError(f"reduction axis must be normalized, got {attrs['axis']}")
    return TensorType(reduced_shape(x.shape, axis, attrs["keepdims"]), x.dtype)


def _prod_weights(x: Value, axis: tuple) -> Value:
    """d prod / d x_i: the product of the others, as (product of those before i) * (product of
    those after i) along the reduced elements laid out in one line. Unlike y / x_i it holds at
    zeros, and it is a product of cumprods, so its own derivative (the Hessian) does too."""
    rest = [i for i in range(x.ndim) if i not in axis]
    order = rest + list(axis)
    moved = F.transpose(x, axes=tuple(order)) if order != list(range(x.ndim)) else x
    length = size_of(tuple(x.shape[i] for i in axis))
    if length == 0:
        return x  # no element to weigh
    lines = F.reshape(moved, shape=tuple(x.shape[i] for i in rest) + (length,))
    last = lines.ndim - 1
    others = _exclusive_cumprod(lines) * _flip(_exclusive_cumprod(_flip(lines, last)), last)
    others = F.reshape(others, shape=moved.shape)
    if moved is x:
        return others
    return F.transpose(others, axes=tuple(int(i) for i in np.argsort(order)))


def _exclusive_cumprod(lines: Value) -> Value:
    """The products of the elements before each one along the last axis (1 for the first)."""
    one = Value(lines.graph, lines.graph.const(np.ones((1,) * lines.ndim, dtype=lines.dtype)))
    ones = F.broadcast_to(one, shape=lines.shape[:-1] + (1,))
    before_last = F.getitem(lines, index=((_ALL,) * (lines.ndim - 1)) + (("slice", None, -1, None),))
    return F.cumprod(F.concatenate(ones, before_last, axis=lines.ndim - 1), axis=lines.ndim - 1)


def _prod_rule(g: Value, y: Value, x: Value, axis: tuple, keepdims: bool) -> Value:
    return _prod_weights(x, axis) * expand_to(g, reduced_shape(x.shape, axis, True), x.shape)


def _prod_jvp(tangents: list, y: Value, x: Value, axis: tuple, keepdims: bool) -> Value:
    (tangent,) = tangents
    return F.sum(_prod_weights(x, axis) * tangent, axis=axis, keepdims=keepdims)


register(
    Op(
        "prod",
        "reduction",
        1,
        _infer_prod,
        "{0}.prod(axis={axis}, keepdims={keepdims})",
        vjp=(_prod_rule,),
        jvp=_prod_jvp,
        flops=lambda ins, out, attrs: max(ins[0].size - out.size, 0),
        batch=lambda operands, batched, logical, out_type, attrs, size: F.prod(
            operands[0], axis=tuple(a + 1 for a in attrs["axis"]), keepdims=attrs["keepdims"]
        ),
    )
)

# ---- orderings: integer results, no gradient -------------------------------------------------

_INDEX_DTYPE = np.dtype(np.intp).name


def _infer_argsort(types: list[TensorType], attrs: Attrs) -> TensorType:
    (x,) = types
    if not 0 <= attrs["axis"] < x.ndim:
        raise ShapeError(f"argsort axis {attrs['axis']} does not fit shape {list(x.shape)}")
    return TensorType(x.shape, _INDEX_DTYPE)


register(
    Op(
        "argsort",
        "order",
        1,
        _infer_argsort,
        # stable: equal elements keep their order, so the permutation (and the gradient a gather
        # through it sends back) is one function of the data, whatever NumPy's default sort does
        # (computed by the default sort where that gives the same: npfuncs.stable_argsort)
        "stable_argsort({0}, {axis})",
        vjp=(None,),
        # comparisons: about log2(n) per element of a line of n
        flops=lambda ins, out, attrs: out.size * max(out.shape[attrs["axis"]] - 1, 0).bit_length(),
        batch=lambda operands, batched, logical, out_type, attrs, size: F.argsort(operands[0], axis=attrs["axis"] + 1),
    )
)


# ---- sort: the values in order, whose gradient goes back through the permutation -------------


def _infer_sort(types: list[TensorType], attrs: Attrs) -> TensorType:
    (x,) = types
    if not 0 <= attrs["axis"] < x.ndim:
        raise ShapeError(f"sort axis {attrs['axis']} does not fit shape {list(x.shape)}")
    return TensorType(x.shape, x.dtype)


def along_permutation(order: Value, axis: int) -> tuple[tuple, list[Value | np.ndarray]]:
    """The index (template and arrays) that takes ``order``'s positions along ``axis`` of an array
    of its shape, as ``np.take_along_axis(a, order, axis)`` does: ``order`` on that axis, each
    other axis its own ``arange`` (none for a 1-D array: ``a[order]``)."""
    ndim = order.ndim
    arrays: list[Value | np.ndarray] = []
    for d, length in enumerate(order.shape):
        if d == axis:
            arrays.append(order)
        else:
            arrays.append(np.arange(length).reshape((1,) * d + (length,) + (1,) * (ndim - d - 1)))
    return tuple(("array", k) for k in range(ndim)), arrays


def _unsort(g: Value, y: Value, x: Value, axis: int) -> Value:
    # y = x[order] along the axis: x̄[order] = ȳ, a plain write (a permutation repeats no position)
    index, arrays = along_permutation(F.argsort(x, axis=axis), axis)
    return apply("scatter_add", g, *arrays, index=index, shape=x.shape, dtype=x.dtype, unique=True)


def _sort_jvp(tangents: list, y: Value, x: Value, axis: int) -> Value:
    index, arrays = along_permutation(F.argsort(x, axis=axis), axis)
    return apply("getitem", tangents[0], *arrays, index=index)


register(
    Op(
        "sort",
        "order",
        1,
        _infer_sort,
        # NumPy's default sort (introsort, SIMD where the CPU has it), what np.sort(x) by hand runs.
        # Equal values are equal, so the kind changes nothing but the order of 0.0 and -0.0; the
        # derivative rules use the stable argsort, whose order at ties is one function of the data
        "np.sort({0}, axis={axis})",
        vjp=(_unsort,),
        jvp=_sort_jvp,
        flops=lambda ins, out, attrs: out.size * max(out.shape[attrs["axis"]] - 1, 0).bit_length(),
        batch=lambda operands, batched, logical, out_type, attrs, size: F.sort(operands[0], axis=attrs["axis"] + 1),
    )
)


# ---- order statistics: the values a sort puts at given ranks, found without sorting -----------


def _infer_ranked(types: list[TensorType], attrs: Attrs) -> TensorType:
    x = types[0]
    ranks = attrs["ranks"]
    length = x.shape[-1] if x.ndim else 0
    if not ranks or not all(0 <= r < length for r in ranks):
        raise ShapeError(f"ranks {list(ranks)} do not fit the last axis of shape {list(x.shape)}")
    return TensorType(x.shape[:-1] + (len(ranks),), x.dtype)


def _infer_positions(types: list[TensorType], attrs: Attrs) -> TensorType:
    values = _infer_ranked(types[:1], attrs)
    if (types[1].shape, types[1].dtype) != (values.shape, values.dtype):
        raise ShapeError(f"rank_positions needs the order statistics of its array, got {types[1]}")
    return TensorType(values.shape, _INDEX_DTYPE)


def _ranked_rule(g: Value, y: Value, x: Value, ranks: tuple) -> Value:
    # y[..., j] = x[..., p_j] for the stable positions p: x̄ there gets ȳ (distinct ranks, distinct p)
    index, arrays = along_permutation(F.rank_positions(x, y, ranks=ranks), x.ndim - 1)
    return apply("scatter_add", g, *arrays, index=index, shape=x.shape, dtype=x.dtype, unique=True)


def _ranked_jvp(tangents: list, y: Value, x: Value, ranks: tuple) -> Value:
    index, arrays = along_permutation(F.rank_positions(x, y, ranks=ranks), x.ndim - 1)
    return apply("getitem", tangents[0], *arrays, index=index)


def _batch_ranked(op_name: str) -> BatchRule:
    def batch(
        operands: list[Value],
        batched: list[bool],
        logical: list[TensorType],
        out_type: TensorType,
        attrs: Attrs,
        size: int,
    ) -> Value:
        # the last axis stays the last; an operand the same for every example is broadcast
        lined = [o if b else F.broadcast_to(o, shape=(size,) + t.shape) for o, b, t in zip(operands, batched, logical)]
        return apply(op_name, *lined, ranks=attrs["ranks"])

    return batch


register(
    Op(
        "order_statistics",
        "order",
        1,
        _infer_ranked,
        # np.sort(x)[..., ranks] by NumPy's partition (npfuncs.order_statistics): what np.median
        # and np.quantile compute by hand; the derivatives go to the stable sort's positions
        "order_statistics({0}, {ranks})",
        vjp=(_ranked_rule,),
        jvp=_ranked_jvp,
        flops=lambda ins, out, attrs: ins[0].size,
        batch=_batch_ranked("order_statistics"),
    )
)
register(
    Op(
        "rank_positions",
        "order",
        2,
        _infer_positions,
        # np.argsort(x, kind="stable")[..., ranks] in linear time per rank, given the values there
        # (the order statistics the forward computed: no second selection; npfuncs.rank_positions)
        "rank_positions({0}, {1}, {ranks})",
        vjp=(None, None),
        flops=lambda ins, out, attrs: ins[0].size * len(attrs["ranks"]),
        batch=_batch_ranked("rank_positions"),
    )
)


def _infer_argextremum(types: list[TensorType], attrs: Attrs) -> TensorType:
    (x,) = types
    axis = attrs["axis"]
    if axis is None:
        shape = (1,) * x.ndim if attrs["keepdims"] else ()
    elif 0 <= axis < x.ndim:
        shape = reduced_shape(x.shape, (axis,), attrs["keepdims"])
    else:
        raise ShapeError(f"axis {axis} does not fit shape {list(x.shape)}")
    if x.size == 0 and (axis is None or x.shape[axis] == 0):
        raise ShapeError(f"attempt to get the position of an extremum of an empty sequence (shape {list(x.shape)})")
    return TensorType(shape, _INDEX_DTYPE)


def _batch_argextremum(op_name: str) -> BatchRule:
    def batch(
        operands: list[Value],
        batched: list[bool],
        logical: list[TensorType],
        out_type: TensorType,
        attrs: Attrs,
        size: int,
    ) -> Value:
        x, axis = operands[0], attrs["axis"]
        if axis is None:  # over every logical axis: one line per batch element
            flat = F.argmax if op_name == "argmax" else F.argmin
            found = flat(F.reshape(x, shape=(size, logical[0].size)), axis=1, keepdims=False)
            return F.reshape(found, shape=(size,) + out_type.shape)
        return apply(op_name, x, axis=axis + 1, keepdims=attrs["keepdims"])

    return batch


for _name in ("argmax", "argmin"):
    register(
        Op(
            _name,
            "order",
            1,
            _infer_argextremum,
            f"np.{_name}({{0}}, axis={{axis}}, keepdims={{keepdims}})",
            vjp=(None,),
            flops=lambda ins, out, attrs: max(ins[0].size - out.size, 0),
            batch=_batch_argextremum(_name),
        )
    )


def _infer_searchsorted(types: list[TensorType], attrs: Attrs) -> TensorType:
    a, v = types
    if a.ndim != 1:
        raise ShapeError(f"searchsorted needs a 1-D sorted array, got shape {list(a.shape)}")
    if attrs["side"] not in ("left", "right"):
        raise ShapeError(f"searchsorted side must be 'left' or 'right', got {attrs['side']!r}")
    return TensorType(v.shape, _INDEX_DTYPE)


def _batch_searchsorted(
    operands: list[Value], batched: list[bool], logical: list[TensorType], out_type: TensorType, attrs: Attrs, size: int
) -> Value:
    if not batched[0]:
        values = operands[1] if batched[1] else F.broadcast_to(operands[1], shape=(size,) + logical[1].shape)
        return F.searchsorted(operands[0], values, side=attrs["side"])
    # a sorted array per example: the position is the count of elements before v, in NumPy's
    # order (NaN last), compared all at once
    v_rank = logical[1].ndim
    sorted_rows = F.reshape(operands[0], shape=(size,) + (1,) * v_rank + logical[0].shape)
    values = operands[1] if batched[1] else F.broadcast_to(operands[1], shape=(size,) + logical[1].shape)
    values = F.reshape(values, shape=values.shape + (1,))
    value_is_nan = F.ne(values, values)
    if attrs["side"] == "left":
        before = F.logical_or(F.lt(sorted_rows, values), F.logical_and(value_is_nan, F.eq(sorted_rows, sorted_rows)))
    else:
        before = F.logical_or(F.le(sorted_rows, values), value_is_nan)
    counts = F.sum(F.cast(before, dtype=_INDEX_DTYPE), axis=(v_rank + 1,), keepdims=False)
    return counts if counts.dtype == _INDEX_DTYPE else F.cast(counts, dtype=_INDEX_DTYPE)


register(
    Op(
        "searchsorted",
        "order",
        2,
        _infer_searchsorted,
        "np.searchsorted({0}, {1}, side={side})",
        vjp=(None, None),
        flops=lambda ins, out, attrs: 0,
        batch=_batch_searchsorted,
    )
)
