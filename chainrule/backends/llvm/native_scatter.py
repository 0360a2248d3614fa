"""``scatter_add`` and ``index_update`` at an integer-array index as a native loop: zeros (or a
copy of the array written into), then each value added (``mode="add"``, scatter_add) or written
(``mode="set"``) where the index puts it, in order: repeated indices accumulate as ``np.add.at``
does (the same additions in the same order: NumPy's values to the bit), and the last write wins as
in NumPy's ``out[idx] = v``.

A scatter writes where the gather at the same index reads (``gather.index_layout``: any mix of
index arrays, slices, ints and None, the arrays broadcast together): ``np.add.at(out, idx, x)``,
``out[rows, labels] += v``, and the gradient of every gather ``x[idx]`` (a cross-entropy's pick of
each label's log-probability, ``np.sort``'s, ``np.take``'s, an embedding lookup's). The loop runs
over the gather's result, the values broadcast to it, in row-major order.

An index array in range by construction (a constant, checked here, or an ``argsort`` along an axis
no longer than the one it indexes) is used as it is. Any other is checked element by element, as
the gather checks it: one out of range writes to position 0 of its axis (inside the result) and
flags the node, and NumPy is called back for it after the loop (``gather.numpy_raises_if``), which
raises NumPy's IndexError; with indices in range no Python runs.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import TYPE_CHECKING

import numpy as np

from chainrule.backends.llvm import scalar_ops
from chainrule.backends.llvm.gather import checked_position, in_range, index_layout, numpy_raises_if
from chainrule.backends.llvm.strides import contiguous_strides
from chainrule.backends.llvm.views import View
from chainrule.ir import Graph
from chainrule.ir.structural import index_result_shape

if TYPE_CHECKING:
    from chainrule.backends.llvm.codegen import Codegen, Offsets


def _operands(graph: Graph, node_id: int) -> tuple[int | None, int, list[int]]:
    """(the array written into or None for zeros, the values, the index arrays)."""
    node = graph[node_id]
    if node.op == "scatter_add":
        return None, node.args[0], list(node.args[1:])
    return node.args[0], node.args[1], list(node.args[2:])


def ready(graph: Graph, node_id: int) -> bool:
    """Is this scatter_add or index_update at integer index arrays, into a nonempty result, on
    dtypes with LLVM arithmetic, at an index whose layout ``gather.index_layout`` reads?"""
    node = graph[node_id]
    shape = node.type.shape
    base, values, arrays = _operands(graph, node_id)
    if not arrays or node.type.size == 0 or (base is not None and graph.type(base).shape != shape):
        return False
    dtypes = [node.type.dtype] + [graph.type(a).dtype for a in (base, values) if a is not None]
    if any(d not in scalar_ops.TYPES or d == "bool" for d in dtypes):
        return False
    index_types = [graph.type(a) for a in arrays]
    if any(t.dtype not in scalar_ops.TYPES or np.dtype(t.dtype).kind not in "iu" for t in index_types):
        return False
    array_shapes = [t.shape for t in index_types]
    gathered = index_result_shape(shape, node.params["index"], array_shapes)
    target = View(0, 0, shape, contiguous_strides(shape), node.type.dtype)
    return index_layout(target, node.params["index"], array_shapes, len(gathered)) is not None


def emit(gen: Codegen, node_id: int) -> None:
    """The start (zeros, or the array written into) in the result, then for each element of the
    gather at the index, in order, ``result[where it reads] (+)= values[element]``."""
    entry = gen.entry
    base_id = _operands(gen.graph, node_id)[0]
    result = gen.plan.views[node_id]
    cache: dict[object, str] = {}
    target = gen.base(entry, result, cache)
    dtype = result.dtype
    if base_id is None:
        zero = scalar_ops.literal(0, dtype)
        start = lambda offsets: gen.store(entry, zero, target, offsets["r"], dtype)
        gen.nest(entry, list(result.shape), {"r": list(result.strides)}, start)
    elif gen.plan.views[base_id] != result:  # the array written into, copied (unless it is the result's buffer)
        base = gen.plan.views[base_id]
        source = gen.base(entry, base, cache)

        def copy(offsets: dict[Hashable, str]) -> None:
            value = scalar_ops.convert(entry, gen.load(entry, source, offsets["b"], base.dtype, "b"), base.dtype, dtype)
            gen.store(entry, value, target, offsets["r"], dtype)

        gen.nest(entry, list(result.shape), {"b": list(base.strides), "r": list(result.strides)}, copy)
    _write(gen, node_id, cache)


def _write(gen: Codegen, node_id: int, cache: dict[object, str]) -> None:
    """The loop over the gather's elements writing (or adding) each value where it goes."""
    node, entry, emit_ = gen.graph[node_id], gen.entry, gen.entry.emit
    _, values_id, array_ids = _operands(gen.graph, node_id)
    result, arrays = gen.plan.views[node_id], [gen.plan.views[a] for a in array_ids]
    gathered = index_result_shape(result.shape, node.params["index"], [a.shape for a in arrays])
    if 0 in gathered:
        return
    layout = index_layout(result, node.params["index"], [a.shape for a in arrays], len(gathered))
    assert layout is not None, "a scatter planned as native code has a layout NumPy does not give"
    values = gen.plan.views[values_id].broadcast_to(gathered)
    strides: dict[Hashable, list[int]] = {"r": list(layout.source_strides), "v": list(values.strides)}
    strides.update(layout.array_strides(arrays, gathered))
    origin = View(result.slot, result.offset + layout.start * result.itemsize, (), (), result.dtype)
    pointers: dict[Hashable, str] = {"r": gen.base(entry, origin, cache), "v": gen.base(entry, values, cache)}
    pointers.update({k: gen.base(entry, array, cache) for k, array in enumerate(arrays)})
    lengths = [result.shape[dim] for dim in layout.indexed]
    unchecked = [in_range(gen.graph, a, length) for a, length in zip(array_ids, lengths)]
    out_of_range = None if all(unchecked) else entry.alloca("i1", "out.of.range")
    if out_of_range is not None:
        entry.do(f"store i1 false, ptr {out_of_range}")
    adding = node.params.get("mode", "add") == "add"
    dtype, t = result.dtype, scalar_ops.register_type(result.dtype)

    def payload(offsets: Offsets) -> None:
        at = offsets["r"]
        for k, array in enumerate(arrays):
            flag = None if unchecked[k] else out_of_range
            position = checked_position(gen, pointers[k], offsets[k], array.dtype, lengths[k], flag)
            step = emit_(f"mul nsw i64 {position}, {result.strides[layout.indexed[k]]}", "step")
            at = emit_(f"add nsw i64 {at}, {step}", "at")
        value = gen.load(entry, pointers["v"], offsets["v"], values.dtype, "v")
        value = scalar_ops.convert(entry, value, values.dtype, dtype)
        if adding:
            so_far = gen.load(entry, pointers["r"], at, dtype, "so.far")
            value = emit_(f"{'fadd' if scalar_ops.is_float(dtype) else 'add'} {t} {so_far}, {value}", "total")
        gen.store(entry, value, pointers["r"], at, dtype)

    gen.nest(entry, list(gathered), strides, payload)
    if out_of_range is not None:
        numpy_raises_if(gen, node_id, out_of_range)
