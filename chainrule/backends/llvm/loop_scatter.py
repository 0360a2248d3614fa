"""``scatter_add`` at a basic index (slices, ints, None) as native code: the result zeroed, then
the values written through the strided view the index selects (a basic index selects each element
at most once, so writing is adding to zero).

Every gradient of a loop has these: the cotangent of one leaf of the loop's packed result (what
``unpack``'s ``getitem`` took out) is a ``scatter_add`` into zeros of the packed size, and inside a
loop body that differentiates an inner loop they would otherwise call NumPy back once a step and
keep the outer loop from being native. Integer-array indices (gathers' cotangents) still run
through NumPy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from chainrule.backends.llvm import scalar_ops
from chainrule.backends.llvm.strides import coalesce, contiguous_strides
from chainrule.backends.llvm.views import View, index_view
from chainrule.ir import Node
from chainrule.ir.structural import index_result_shape
from chainrule.ir.types import TensorType

if TYPE_CHECKING:
    from chainrule.backends.llvm.codegen import Codegen, Offsets
    from chainrule.backends.llvm.lower import Lowering

_MEMSET = "declare void @llvm.memset.p0.i64(ptr, i8, i64, i1 immarg)"


def _selection(node: Node, result: View) -> View | None:
    """The view of ``result`` that the node's index selects, or None for an index that gathers."""
    index = node.params["index"]
    if len(node.args) != 1 or any(item[0] not in ("slice", "int", "none") for item in index):
        return None
    shape = index_result_shape(tuple(node.params["shape"]), index, [])
    picked = Node("getitem", (node.args[0],), (("index", index),), TensorType(shape, result.dtype))
    return index_view(result, picked)


def is_native(lowering: Lowering, node_id: int) -> bool:
    """Can this scatter_add be native code (a basic index, dtypes with LLVM arithmetic)?"""
    node = lowering.graph[node_id]
    if node.op != "scatter_add" or not node.params["unique"]:
        return False
    dtypes = (node.type.dtype, lowering.graph.type(node.args[0]).dtype)
    if any(d not in scalar_ops.TYPES for d in dtypes):
        return False
    shape = node.type.shape
    return _selection(node, View(0, 0, shape, contiguous_strides(shape), node.type.dtype)) is not None


def emit_scatter(gen: Codegen, node_id: int) -> None:
    """The scatter_add as an outlined function of the kernel: a memset, then a strided copy."""
    node = gen.graph[node_id]
    result = gen.plan.views[node_id]
    selected = _selection(node, result)
    assert selected is not None, "a scatter_add planned as native code has an index that gathers"
    values = gen.plan.views[node.args[0]].broadcast_to(selected.shape)
    gen.loops += 1
    comment = f"{gen.describe(node_id)}\n(zeros, then the values written where the index selects)"
    fn = gen.module.function(
        f"internal void @{gen.prefix}_loop{gen.loops}(ptr noalias %table, i64 %start, i64 %end, ptr %partials)",
        comment,
    )
    cache: dict[object, str] = {}
    target = gen.base(fn, result, cache)
    nbytes = int(np.prod(result.shape)) * result.itemsize
    if nbytes:
        fn.declare(_MEMSET)
        fn.do(f"call void @llvm.memset.p0.i64(ptr {target}, i8 0, i64 {nbytes}, i1 false)")
    if 0 not in selected.shape:
        source, place = gen.base(fn, values, cache), gen.base(fn, selected, cache)
        extents, strides = coalesce(selected.shape, [values.strides, selected.strides])

        def payload(offsets: Offsets) -> None:
            value = gen.load(fn, source, offsets["v"], values.dtype, "value")
            value = scalar_ops.convert(fn, value, values.dtype, result.dtype)
            gen.store(fn, value, place, offsets["r"], result.dtype)

        gen.nest(fn, extents, {"v": strides[0], "r": strides[1]}, payload)
    fn.do("ret void")
    gen.entry.note(comment)
    gen.entry.do(f"call void @{gen.prefix}_loop{gen.loops}(ptr %table, i64 0, i64 1, ptr {gen.partials})")
