"""Writes into traced arrays, traced functionally: ``a[i] = v``, ``a[i] += v``, ``a *= b``, ``np.add.at``.

A write records ``index_update`` (``chainrule.ir.update``): a new value, ``a`` with ``v`` written,
which the Tracer ``a`` takes as its own, so every Python name bound to ``a`` sees the write, as in
NumPy. A write into a view (``a[0][1] = v``, ``row = a[0]; row[:] = v``, ``a.T[0] = v``) is written
back through the view's steps into its base, and the other views of the base show it when next
used (``chainrule.frontends.tracer``'s buffers). Indices are NumPy's: ints, slices, None, Ellipsis,
integer arrays (traced or not) and boolean masks.

Repeated integer indices follow NumPy: ``a[[0, 0]] = [1, 2]`` leaves 2 (the last write wins), and
``a[[0, 0]] += 1`` adds 1 once, since it is ``a[[0, 0]] = a[[0, 0]] + 1``. ``np.add.at(a, [0, 0], 1)``
accumulates: it adds 2.
"""

from __future__ import annotations

import operator

import numpy as np

from chainrule.errors import ShapeError, TraceError, UnsupportedError
from chainrule.frontends.aliasing import AMBIGUOUS, READ_ONLY, replay, view_step
from chainrule.frontends.dispatch import here, implements
from chainrule.frontends.tracer import Tracer, operation
from chainrule.ir.builder import Value
from chainrule.ir.structural import index_result_shape

# ---- index keys --------------------------------------------------------------------------


def index_template(shape: tuple, key) -> tuple[tuple, list, bool]:
    """``key`` as an index template, its index arrays, and whether it contained an Ellipsis.

    A constant boolean mask is its ``np.nonzero`` arrays, NumPy's own reading of it.
    """
    key = key if isinstance(key, tuple) else (key,)
    if sum(1 for k in key if k is Ellipsis) > 1:
        raise ShapeError("an index can only have a single ellipsis ('...')", here())
    flat: list = []
    for k in key:
        if _is_mask(k):
            flat.extend(np.nonzero(np.asarray(k)))
        else:
            flat.append(k)
    consumed = sum(1 for k in flat if k is not None and k is not Ellipsis)
    items: list[tuple] = []
    arrays: list = []
    for k in flat:
        if k is Ellipsis:
            items.extend([("slice", None, None, None)] * (len(shape) - consumed))
        elif k is None:
            items.append(("none",))
        elif isinstance(k, slice):
            items.append(("slice",) + tuple(_slice_bound(v) for v in (k.start, k.stop, k.step)))
        elif isinstance(k, (int, np.integer)) and not isinstance(k, (bool, np.bool_)):
            items.append(("int", int(k)))
        elif isinstance(k, (Tracer, list, np.ndarray)):
            items.append(("array", len(arrays)))
            arrays.append(_index_array(k))
        else:
            raise TraceError(f"cannot index a traced array with a {type(k).__name__}", here())
    return tuple(items), arrays, any(k is Ellipsis for k in key)


def _is_mask(k) -> bool:
    return isinstance(k, (list, np.ndarray)) and np.asarray(k).dtype.kind == "b"


def is_traced_mask(key) -> bool:
    """A key that is one traced boolean array: which elements it picks is not known while tracing."""
    return isinstance(key, Tracer) and key.dtype.kind == "b"


def _index_array(k):
    kind = k.dtype.kind if isinstance(k, (Tracer, np.ndarray)) else np.asarray(k).dtype.kind
    if kind == "b":
        raise UnsupportedError(
            "boolean-mask indexing with a traced mask is not supported: the result's shape depends "
            "on the data. Use np.where(mask, x, 0) instead",
            here(),
        )
    if kind not in "iu":
        got = k.dtype if hasattr(k, "dtype") else "a list of floats"
        raise TraceError(f"array indices must be integers, got {got}", here())
    return k if isinstance(k, Tracer) else np.asarray(k)


def _slice_bound(value):
    if value is None:
        return None
    if isinstance(value, Tracer):
        raise TraceError(
            "slice bounds must be Python ints, not traced values: the result's shape would depend on data", here()
        )
    return operator.index(value)


# ---- the values written ------------------------------------------------------------------


def _values_for(target: Tracer, written_shape: tuple, value):
    """``value`` as NumPy assigns it: cast to the target's dtype, leading length-1 axes dropped."""
    if not isinstance(value, Tracer):
        array = np.asarray(value)
        if array.dtype.kind not in "biuf":
            raise TraceError(f"cannot write a {type(value).__name__} into a traced array", here())
        value = array.astype(target.dtype)
    elif value.dtype != target.dtype:
        value = operation("cast", value, dtype=target.dtype.name)
    shape = tuple(np.shape(value))
    extra = len(shape) - len(written_shape)
    if extra > 0 and all(d == 1 for d in shape[:extra]):
        value = np.reshape(value, shape[extra:])
        shape = shape[extra:]
    try:
        fits = tuple(np.broadcast_shapes(shape, written_shape)) == tuple(written_shape)
    except ValueError:
        fits = False
    if not fits:
        raise ShapeError(
            f"could not broadcast input array from shape {list(shape)} into shape {list(written_shape)}", here()
        )
    return value


# ---- writes --------------------------------------------------------------------------------


@implements(operator.setitem)
def setitem(target: Tracer, key, value) -> None:
    """``target[key] = value``: ``target`` takes the new value (NumPy's assignment)."""
    if _is_unchanged_view(target, key, value):
        return  # a[i] += v: the view a[i] was written in place already
    if is_traced_mask(key):
        _write_through_mask(target, key, value)
        return
    items, arrays, _ = index_template(target.shape, key)
    try:
        written = index_result_shape(target.shape, items, [np.shape(a) for a in arrays])
    except ShapeError as error:
        raise error.at(here()) from None
    values = _values_for(target, written, value)
    updated = operation("index_update", target, values, *arrays, index=items, mode="set")
    write_whole(target, updated)


def _is_unchanged_view(target: Tracer, key, value) -> bool:
    """``value`` is the view ``target[key]`` and shows its memory as it is now: a no-op write."""
    if not isinstance(value, Tracer) or value._alias is None or target._alias is None or is_traced_mask(key):
        return False
    alias, mine = value._alias, target._alias
    if alias.buffer is not mine.buffer or len(alias.path) != len(mine.path) + 1 or alias.path[:-1] != mine.path:
        return False
    if alias.seen != alias.buffer.version:
        return False
    items, arrays, _ = index_template(target.shape, key)
    if arrays:
        return False  # a copy, not a view
    return view_step("getitem", {"index": items}, (), value.ndim) == alias.path[-1]


def _write_through_mask(target: Tracer, mask: Tracer, value) -> None:
    rest = target.shape[mask.ndim :]
    if isinstance(value, MaskedSelection):  # a[mask] *= 2, a[mask] = np.sqrt(b[mask])
        if value.mask._value.id != mask._value.id:
            raise UnsupportedError(
                "writing the elements one traced mask selects into the positions another selects: "
                "how many each has is not known while tracing; use np.where",
                here(),
            )
        value = value.whole
    if tuple(mask.shape) != tuple(target.shape[: mask.ndim]):
        raise ShapeError(
            f"boolean index of shape {list(mask.shape)} does not match the indexed array's shape {list(target.shape)}",
            here(),
        )
    shape = tuple(np.shape(value))
    if len(shape) > len(rest) and not (isinstance(value, Tracer) and shape == tuple(target.shape)):
        if shape[0] != 1:
            raise UnsupportedError(
                "writing an array of values through a traced boolean mask needs one value per True "
                "element, and how many there are is not known while tracing; write one value (or one "
                "per trailing axis), or use np.where(mask, new, a)",
                here(),
            )
    values = _values_for(
        target, tuple(target.shape) if np.shape(value) == tuple(target.shape) else (1,) + tuple(rest), value
    )
    spread = np.reshape(mask, tuple(mask.shape) + (1,) * len(rest))
    write_whole(target, np.where(spread, values, target))


def write_whole(target: Tracer, new) -> None:
    """``target[...] = new`` for ``new`` of ``target``'s type: written back into the base of a view."""
    alias = target._alias
    if alias is None:
        target._current = new._value
        return
    target._value  # noqa: B018  (refreshed: the path's values below are the current ones)
    buffer, path = alias.buffer, alias.path
    kinds = {step[3] for step in path}
    if READ_ONLY in kinds:
        raise TraceError("assignment destination is read-only (a view made by np.broadcast_to)", here())
    if AMBIGUOUS in kinds:
        # NumPy's reshape shares memory or copies depending on layout: the other arrays of this
        # memory may or may not see the write, so they cannot be used any more.
        buffer.broken = (
            "this array's memory was written through a reshaped view of it; whether NumPy's "
            "reshape shares memory depends on the array's layout, so its value cannot be traced "
            "faithfully. Copy the reshaped array (.copy()) before writing into it."
        )
        buffer.version += 1
        target._alias = None
        target._current = new._value
        return
    loc = here()
    values = [buffer.value]
    for step in path[:-1]:
        values.append(replay(values[-1], step, loc))
    written = new._value
    for base, step in zip(reversed(values), reversed(path)):
        written = _write_back(base, step, written, loc)
    buffer.value = written
    buffer.version += 1
    target._current = new._value
    alias.seen = buffer.version


def _write_back(base: Value, step: tuple, view: Value, loc) -> Value:
    """``base`` with its view ``step(base)`` replaced by ``view``."""
    op_name, attrs, array_ids, _ = step
    graph = base.graph
    if op_name == "transpose":
        axes = dict(attrs)["axes"]
        return Value(
            graph, graph.add("transpose", [view.id], {"axes": tuple(int(i) for i in np.argsort(axes))}, loc=loc)
        )
    if view.dtype != base.dtype:  # pragma: no cover - views keep their base's dtype
        raise AssertionError(op_name)
    params = {"index": dict(attrs)["index"], "mode": "set"}
    return Value(graph, graph.add("index_update", [base.id, view.id, *array_ids], params, loc=loc))


def _in_place(ufunc, name: str):
    def update(target: Tracer, other):
        result = ufunc(target, other)
        if np.shape(result) != target.shape:
            raise ShapeError(
                f"non-broadcastable output operand with shape {list(target.shape)} doesn't match the "
                f"broadcast shape {list(np.shape(result))} ({name})",
                here(),
            )
        if not np.can_cast(result.dtype, target.dtype, casting="same_kind"):
            raise TraceError(
                f"Cannot cast ufunc {ufunc.__name__!r} output from {result.dtype} to {target.dtype} "
                f"with casting rule 'same_kind' ({name})",
                here(),
            )
        if result.dtype != target.dtype:
            result = operation("cast", result, dtype=target.dtype.name)
        write_whole(target, result)
        return target

    return update


for _operator, _ufunc, _name in [
    (operator.iadd, np.add, "+="),
    (operator.isub, np.subtract, "-="),
    (operator.imul, np.multiply, "*="),
    (operator.itruediv, np.divide, "/="),
    (operator.ipow, np.power, "**="),
]:
    implements(_operator)(_in_place(_ufunc, _name))


@implements(np.add.at)
def add_at(target, indices, values=None) -> None:
    """``np.add.at(a, indices, b)``: ``b`` added at ``indices``, repeated indices accumulating."""
    if not isinstance(target, Tracer):
        raise TraceError(
            "np.add.at into a NumPy array cannot hold a traced value; create the array inside the "
            "traced function from a traced one (np.zeros_like(x)) or add to a traced array",
            here(),
        )
    if is_traced_mask(indices):
        raise UnsupportedError("np.add.at with a traced boolean mask; use np.where(mask, a + b, a)", here())
    items, arrays, _ = index_template(target.shape, indices)
    written = index_result_shape(target.shape, items, [np.shape(a) for a in arrays])
    values = _values_for(target, written, 1 if values is None else values)
    write_whole(target, operation("index_update", target, values, *arrays, index=items, mode="add"))


# ---- a traced mask's selection -------------------------------------------------------------

_MASK_MESSAGE = (
    "boolean-mask indexing with a traced mask is not supported: the result's shape depends on the "
    "data. Use np.where(mask, x, 0) instead; writing through the mask (a[mask] = v, a[mask] *= 2, "
    "a[mask] = np.sqrt(a[mask])) works"
)


class MaskedSelection(np.lib.mixins.NDArrayOperatorsMixin):
    """``a[mask]`` for a traced boolean ``mask``: which elements it holds, so its shape, is not
    known while tracing. It can only be computed with elementwise NumPy (``a[mask] * 2``,
    ``np.sqrt(a[mask])``, with values for its trailing axes) and written back through the same
    mask; it is computed over the whole array and written with ``np.where``. As with np.where,
    a derivative that is not finite at the unselected elements (sqrt of a negative) poisons the
    gradient with NaN: keep the computation defined everywhere."""

    __slots__ = ("mask", "whole")
    __array_priority__ = 2000

    def __init__(self, mask: Tracer, whole: Tracer):
        self.mask, self.whole = mask, whole

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if method != "__call__" or kwargs:
            raise UnsupportedError(_MASK_MESSAGE, here())
        rest = self.whole.shape[self.mask.ndim :]
        operands = []
        for operand in inputs:
            if isinstance(operand, MaskedSelection):
                if operand.mask._value.id != self.mask._value.id:
                    raise UnsupportedError(_MASK_MESSAGE, here())
                operands.append(operand.whole)
            elif len(np.shape(operand)) > len(rest):
                raise UnsupportedError(_MASK_MESSAGE, here())
            else:
                operands.append(operand)  # one value, or one per trailing axis: it broadcasts
        return MaskedSelection(self.mask, ufunc(*operands))

    def _unsupported(self, *args, **kwargs):
        raise UnsupportedError(_MASK_MESSAGE, here())

    __array_function__ = __array__ = __getitem__ = __len__ = __iter__ = __bool__ = __float__ = _unsupported

    # NumPy's operators, through __array_ufunc__; a[mask] += v rebinds (the mixin's in-place forms
    # write into out=, which a selection is not)
    _ops = np.lib.mixins.NDArrayOperatorsMixin
    __iadd__, __isub__, __imul__, __itruediv__, __ipow__ = (
        _ops.__add__,
        _ops.__sub__,
        _ops.__mul__,
        _ops.__truediv__,
        _ops.__pow__,
    )
    del _ops
