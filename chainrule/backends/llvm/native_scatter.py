"""``scatter_add`` and ``index_update`` at an integer-array index as a native loop: zeros (or a
copy of the array written into), then each value added (``mode="add"``, scatter_add) or written
(``mode="set"``) at the row its index names, in order: repeated indices accumulate as
``np.add.at`` does (the same additions in the same order: NumPy's values to the bit), and the
last write wins as in NumPy's ``out[idx] = v``.

The index is one integer array on the first axis, any trailing axes whole (``out[idx] += v`` with
``v`` broadcast to ``idx.shape + out.shape[1:]``): ``np.add.at(out, idx, x)``, and the gradient of
a gather ``x[idx]`` (``np.sort``'s, ``np.take``'s, an embedding lookup's). Native code cannot raise
NumPy's ``IndexError``, so the index must be in range by construction: a constant (checked here,
negative entries counting from the end) or an ``argsort`` along an axis no longer than the first
axis. Other index arrays, computed at run time, keep the NumPy callback, which checks them.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import TYPE_CHECKING

import numpy as np

from chainrule.backends.llvm import scalar_ops
from chainrule.backends.llvm.views import View
from chainrule.ir import Graph

if TYPE_CHECKING:
    from chainrule.backends.llvm.codegen import Codegen

_WHOLE = ("slice", None, None, None)


def _operands(graph: Graph, node_id: int) -> tuple[int | None, int, list[int]]:
    """(the array written into or None for zeros, the values, the index arrays)."""
    node = graph[node_id]
    if node.op == "scatter_add":
        return None, node.args[0], list(node.args[1:])
    return node.args[0], node.args[1], list(node.args[2:])


def ready(graph: Graph, node_id: int) -> bool:
    """Is this scatter_add or index_update one index array on the first axis, in range by
    construction, on dtypes with LLVM arithmetic?"""
    node = graph[node_id]
    index, shape = node.params["index"], node.type.shape
    base, values, arrays = _operands(graph, node_id)
    if len(arrays) != 1 or not index or index[0] != ("array", 0) or any(i != _WHOLE for i in index[1:]):
        return False
    if len(index) > len(shape) or shape[0] == 0:
        return False
    if base is not None and graph.type(base).shape != shape:
        return False
    dtypes = [node.type.dtype] + [graph.type(a).dtype for a in (base, values) if a is not None]
    if any(d not in scalar_ops.TYPES or d == "bool" for d in dtypes):
        return False
    return _in_range(graph, arrays[0], shape[0])


def _in_range(graph: Graph, index_id: int, length: int) -> bool:
    source = graph[index_id]
    if np.dtype(source.type.dtype).kind not in "iu" or source.type.dtype not in scalar_ops.TYPES:
        return False
    constant = graph.const_value(index_id)
    if constant is not None:
        return constant.size == 0 or (int(constant.min()) >= -length and int(constant.max()) < length)
    if source.op == "argsort":
        return graph.type(source.args[0]).shape[source.params["axis"]] <= length
    return False


def emit(gen: Codegen, node_id: int) -> None:
    """The start (zeros, or the array written into) in the result, then
    ``result[index[i], ...] (+)= values[i, ...]`` for each i in order."""
    node = gen.graph[node_id]
    entry = gen.entry
    base_id, values_id, (index_id,) = _operands(gen.graph, node_id)
    result, index = gen.plan.views[node_id], gen.plan.views[index_id]
    values = gen.plan.views[values_id].broadcast_to(index.shape + result.shape[1:])
    cache: dict[object, str] = {}
    pointers = {key: gen.base(entry, view, cache) for key, view in (("r", result), ("i", index), ("v", values))}
    dtype = result.dtype
    if base_id is None:
        zero = scalar_ops.literal(0, dtype)
        start = lambda offsets: gen.store(entry, zero, pointers["r"], offsets["r"], dtype)
        gen.nest(entry, list(result.shape), {"r": list(result.strides)}, start)
    elif gen.plan.views[base_id] != result:  # the array written into, copied (unless it is the result's buffer)
        base = gen.plan.views[base_id]
        source = gen.base(entry, base, cache)

        def copy(offsets: dict[Hashable, str]) -> None:
            value = scalar_ops.convert(entry, gen.load(entry, source, offsets["b"], base.dtype, "b"), base.dtype, dtype)
            gen.store(entry, value, pointers["r"], offsets["r"], dtype)

        gen.nest(entry, list(result.shape), {"b": list(base.strides), "r": list(result.strides)}, copy)
    if 0 not in values.shape:
        _write(gen, node.params.get("mode", "add") == "add", result, index, values, pointers)


def _write(gen: Codegen, adding: bool, result: View, index: View, values: View, pointers: dict[str, str]) -> None:
    entry, emit_ = gen.entry, gen.entry.emit
    dtype, t = result.dtype, scalar_ops.register_type(result.dtype)
    rest = result.shape[1:]
    length, row_stride = result.shape[0], result.strides[0]
    lead = len(index.shape)

    def payload(offsets: dict[Hashable, str]) -> None:
        position = gen.load(entry, pointers["i"], offsets["i"], index.dtype, "index")
        if index.dtype != "int64":
            position = emit_(
                f"{'zext' if index.dtype.startswith('u') else 'sext'} {_int(index.dtype)} {position} to i64"
            )
        negative = emit_(f"icmp slt i64 {position}, 0", "negative")
        position = emit_(f"select i1 {negative}, i64 {emit_(f'add i64 {position}, {length}')}, i64 {position}", "row")
        target = emit_(f"add i64 {emit_(f'mul i64 {position}, {row_stride}')}, {offsets['r']}", "at")
        value = scalar_ops.convert(
            entry, gen.load(entry, pointers["v"], offsets["v"], values.dtype, "v"), values.dtype, dtype
        )
        if adding:
            so_far = gen.load(entry, pointers["r"], target, dtype, "so.far")
            value = emit_(f"{'fadd' if scalar_ops.is_float(dtype) else 'add'} {t} {so_far}, {value}", "total")
        gen.store(entry, value, pointers["r"], target, dtype)

    strides: dict[Hashable, list[int]] = {
        "i": list(index.strides) + [0] * len(rest),
        "v": list(values.strides),
        "r": [0] * lead + list(result.strides[1:]),
    }
    gen.nest(entry, list(values.shape), strides, payload)


def _int(dtype: str) -> str:
    return f"i{np.dtype(dtype).itemsize * 8}"
