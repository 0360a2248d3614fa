"""``getitem`` at an index with integer arrays (a gather: ``logp[rows, labels]``, ``take``,
``take_along_axis``) as native code: one loop nest over the result, in a function of its own that the
entry function calls (``Codegen._outlined_node``).

NumPy's rules fix the result's layout: the index arrays (and the ints beside them) broadcast to one
shape B, whose dimensions replace the indexed ones where those are adjacent in the index, and go
first otherwise; slices keep their dimensions and ``None`` adds one. Rather than restate those rules,
the layout is read from NumPy itself (``index_layout``): the index is applied to zero-stride stand-ins
whose B dimensions have sizes no other dimension can have, and where those sizes land in the result
says where B goes.

Each element reads its index values (negative ones counted from the end, as in NumPy) and loads the
source at their offset. An index array in range by construction (``in_range``: a constant, an
``argsort``) is read as it is. In any other, an index out of range is clamped to 0 so that nothing
outside the operand is read, and flags the node: after the nest the kernel calls NumPy back for this
node, whose IndexError the kernel raises when the native call returns, as it does for any failing
NumPy node. That callback runs only then (``Fallback.on_error``): with indices in range the gather
runs no Python. A native loop's body has no callback, so it holds no such check
(``checks_at_run_time``): the loop is run from Python instead.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from chainrule.backends.llvm import scalar_ops
from chainrule.backends.llvm.strides import contiguous_strides
from chainrule.backends.llvm.views import View
from chainrule.ir import Graph
from chainrule.ir.npfuncs import fill_index

if TYPE_CHECKING:
    from chainrule.backends.llvm.codegen import Codegen, Offsets


@dataclass(frozen=True)
class Layout:
    """Where each result dimension comes from. ``source_strides``: per result dimension, the source's
    stride (elements) for a slice's dimension, 0 for B's and None's; ``start``: the source offset
    (elements) of the slices' starts and the ints; ``b_axes``: the result dimensions that are B's;
    ``indexed``: per index array, the source dimension it indexes."""

    source_strides: tuple[int, ...]
    start: int
    b_axes: tuple[int, ...]
    indexed: tuple[int, ...]

    def array_strides(self, arrays: list[View], shape: tuple[int, ...]) -> dict[Hashable, list[int]]:
        """Per index array (keyed by its number), its strides over the result's dimensions
        ``shape``: its own over B's (broadcast), 0 over the others."""
        b_shape = tuple(shape[d] for d in self.b_axes)
        strides: dict[Hashable, list[int]] = {}
        for k, array in enumerate(arrays):
            b_strides = iter(array.broadcast_to(b_shape).strides)
            strides[k] = [next(b_strides) if d in self.b_axes else 0 for d in range(len(shape))]
        return strides


def _b_position(source_shape: tuple[int, ...], index: tuple, b_ndim: int) -> int | None:
    """Where NumPy puts the broadcast index dimensions in the result (see the module docstring)."""
    sentinels = tuple(max(source_shape, default=0) + 2 + k for k in range(b_ndim))
    standin = np.lib.stride_tricks.as_strided(np.zeros(1), shape=source_shape, strides=(0,) * len(source_shape))
    zeros = np.lib.stride_tricks.as_strided(np.zeros(1, np.intp), shape=sentinels, strides=(0,) * b_ndim)
    arrays = [zeros] * (1 + max((item[1] for item in index if item[0] == "array"), default=0))
    shape = standin[fill_index(index, arrays)].shape
    found = [p for p in range(len(shape) - b_ndim + 1) if shape[p : p + b_ndim] == sentinels]
    return found[0] if len(found) == 1 else None


def index_layout(source: View, index: tuple, array_shapes: list[tuple[int, ...]], result_ndim: int) -> Layout | None:
    """The result's layout for ``source[index]``, or None where it cannot be read (see ``Layout``).
    A scatter at the same index writes where the gather reads (``native_scatter.py``)."""
    b_ndim = len(np.broadcast_shapes(*array_shapes))
    position = _b_position(source.shape, index, b_ndim)
    if position is None:
        return None
    strides: list[int] = []  # the non-B result dimensions, in order
    start, dim, indexed = 0, 0, {}
    for item in index:
        kind = item[0]
        if kind == "none":
            strides.append(0)
            continue
        size, stride = source.shape[dim], source.strides[dim]
        if kind == "slice":
            first, _, step = slice(*item[1:]).indices(size)
            start += first * stride
            strides.append(stride * step)
        elif kind == "int":
            start += (item[1] + size if item[1] < 0 else item[1]) * stride
        else:
            indexed[item[1]] = dim
        dim += 1
    strides += list(source.strides[dim:])
    if len(strides) + b_ndim != result_ndim or len(indexed) != len(array_shapes):
        return None
    all_strides = strides[:position] + [0] * b_ndim + strides[position:]
    b_axes = tuple(range(position, position + b_ndim))
    return Layout(tuple(all_strides), start, b_axes, tuple(indexed[k] for k in range(len(array_shapes))))


def is_native(graph: Graph, node_id: int) -> bool:
    """Is this a gather the native loop computes: a getitem with integer index arrays, dtypes with
    LLVM arithmetic, a nonempty result, a layout read from NumPy?"""
    node = graph[node_id]
    if node.op != "getitem" or len(node.args) < 2 or node.type.size == 0:
        return False
    source_type, array_types = graph.type(node.args[0]), [graph.type(a) for a in node.args[1:]]
    if source_type.dtype not in scalar_ops.TYPES or any(
        t.dtype not in scalar_ops.TYPES or t.dtype == "bool" or scalar_ops.is_float(t.dtype) for t in array_types
    ):
        return False
    source = View(0, 0, source_type.shape, contiguous_strides(source_type.shape), source_type.dtype)
    return index_layout(source, node.params["index"], [t.shape for t in array_types], node.type.ndim) is not None


def in_range(graph: Graph, index_id: int, length: int) -> bool:
    """Are the values of index array ``index_id`` in [-length, length) whatever the inputs?"""
    source = graph[index_id]
    constant = graph.const_value(index_id)
    if constant is not None:
        return constant.size == 0 or (int(constant.min()) >= -length and int(constant.max()) < length)
    if source.op == "argsort":
        return graph.type(source.args[0]).shape[source.params["axis"]] <= length
    return False


def checks_at_run_time(graph: Graph, node_id: int) -> bool:
    """Does this gather, scatter_add or index_update check an index array at run time (one not
    ``in_range`` by construction)? Its check calls NumPy back to raise, so a native loop's body,
    which has no callback, cannot hold it (``loops.plan_native``)."""
    node = graph[node_id]
    if node.op not in ("getitem", "scatter_add", "index_update"):
        return False
    shape = graph.type(node.args[0]).shape if node.op == "getitem" else node.type.shape
    first = {"getitem": 1, "scatter_add": 1, "index_update": 2}[node.op]
    items = [item for item in node.params["index"] if item[0] != "none"]
    sizes = {item[1]: shape[dim] for dim, item in enumerate(items) if item[0] == "array"}
    return any(not in_range(graph, a, sizes[k]) for k, a in enumerate(node.args[first:]))


def emit_gather(gen: Codegen, node_id: int) -> None:
    """The gather as a loop nest in ``gen.entry`` (its own function); NumPy is called back for an index out of range."""
    node, entry = gen.graph[node_id], gen.entry
    source, result = gen.plan.views[node.args[0]], gen.plan.views[node_id]
    arrays = [gen.plan.views[a] for a in node.args[1:]]
    layout = index_layout(source, node.params["index"], [a.shape for a in arrays], node.type.ndim)
    assert layout is not None, "a getitem planned as a native gather has a layout NumPy does not give"
    shape = node.type.shape
    strides: dict[Hashable, list[int]] = {"s": list(layout.source_strides), "t": list(result.strides)}
    strides.update(layout.array_strides(arrays, shape))
    cache: dict[object, str] = {}
    origin = View(source.slot, source.offset + layout.start * source.itemsize, (), (), source.dtype)
    pointers: dict[Hashable, str] = {"s": gen.base(entry, origin, cache), "t": gen.base(entry, result, cache)}
    pointers.update({k: gen.base(entry, array, cache) for k, array in enumerate(arrays)})
    unchecked = [in_range(gen.graph, a, source.shape[dim]) for a, dim in zip(node.args[1:], layout.indexed)]
    out_of_range = None if all(unchecked) else entry.alloca("i1", "out.of.range")
    if out_of_range is not None:
        entry.do(f"store i1 false, ptr {out_of_range}")
    entry.note(gen.describe(node_id) + "  (native gather)")

    def payload(offsets: Offsets) -> None:
        offset = offsets["s"]
        for k, array in enumerate(arrays):
            dim = layout.indexed[k]
            flag = None if unchecked[k] else out_of_range
            position = checked_position(gen, pointers[k], offsets[k], array.dtype, source.shape[dim], flag)
            step = entry.emit(f"mul nsw i64 {position}, {source.strides[dim]}", "step")
            offset = entry.emit(f"add nsw i64 {offset}, {step}", "offset")
        value = gen.load(entry, pointers["s"], offset, source.dtype, "x")
        gen.store(entry, value, pointers["t"], offsets["t"], result.dtype)

    gen.nest(entry, list(shape), strides, payload)
    if out_of_range is not None:
        numpy_raises_if(gen, node_id, out_of_range)


def checked_position(gen: Codegen, pointer: str, offset: str, dtype: str, size: int, out_of_range: str | None) -> str:
    """The index value at ``pointer[offset]`` as a position in [0, size): negative ones counted from
    the end; one out of range sets ``out_of_range`` and reads position 0 (None: in range for sure)."""
    emit = gen.entry.emit
    value = scalar_ops.convert(gen.entry, gen.load(gen.entry, pointer, offset, dtype, "i"), dtype, "int64")
    negative = emit(f"icmp slt i64 {value}, 0", "negative")
    position = emit(f"select i1 {negative}, i64 {emit(f'add i64 {value}, {size}')}, i64 {value}", "position")
    if out_of_range is None:
        return position
    inside = emit(f"icmp ult i64 {position}, {size}", "inside")
    outside = emit(f"xor i1 {inside}, true", "outside")
    flagged = emit(f"or i1 {emit(f'load i1, ptr {out_of_range}', 'flagged')}, {outside}", "flagged")
    gen.entry.do(f"store i1 {flagged}, ptr {out_of_range}")
    return emit(f"select i1 {inside}, i64 {position}, i64 0", "position")


def numpy_raises_if(gen: Codegen, node_id: int, out_of_range: str) -> None:
    """Call NumPy back for ``node_id`` when an index was out of range: its IndexError is the error.
    The callback is ``on_error`` (``plan.Fallback``): with valid indices no Python runs."""
    entry = gen.entry
    index = len(gen.plan.fallbacks)
    gen.plan.add_fallback(node_id, on_error=True)
    failed, done = entry.label("index.failed"), entry.label("index.done")
    entry.do(f"br i1 {entry.emit(f'load i1, ptr {out_of_range}', 'failed')}, label %{failed}, label %{done}")
    entry.place(failed)
    callback = entry.emit(f"load ptr, ptr {entry.emit('getelementptr ptr, ptr %table, i64 1', 'callback.p')}")
    entry.do(f"call void {callback}(i64 {index})")
    entry.do(f"br label %{done}")
    entry.place(done)
