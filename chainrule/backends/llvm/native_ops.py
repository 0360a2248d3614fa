"""Native loops for ops that are neither elementwise nor reductions: the scans cumsum and cumprod,
argmax and argmin, searchsorted, and concatenate. Each is a loop nest (in a function of its own that the
entry function calls: ``Codegen._outlined_node``) over the operand's
shape with the op's axis innermost (``Codegen.nest``), reading and writing through the views, so
transposed, sliced and broadcast operands need no copy.

- cumsum/cumprod: a running total per line along the axis, added in order (no reassociation), as
  NumPy's loops do, so the results are NumPy's to the bit;
- argmax/argmin: the first extreme along the axis (or over everything, ``axis=None``, counting in
  C order), a NaN winning at its first position, as in NumPy;
- searchsorted: a binary search of the sorted array for each value, in NumPy's order (NaN after
  every number: a NaN value goes after the numbers, on the right side after the NaNs too), the
  comparison NumPy's own binary search makes;
- concatenate: each operand copied into its slab of the result, converting the dtype;
- scatter_add and index_update at an integer-array index: ``native_scatter.py``;
- the convolutions (im2col/col2im loops and BLAS gemm): ``conv.py``; max pooling: ``maxpool.py``;
- sort and argsort: NumPy's own sort functions, called from the native code (``numpy_sort.py``):
  a sort is a real algorithm (NumPy's SIMD introsort, timsort, radix sort), and writing one here
  would be a hand-written copy of a library's;
- the Fourier transforms dft, rdft and irdft: NumPy's pocketfft loops, called from the native code
  (``pocketfft.py``), for the same reason.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING

import numpy as np

from chainrule.backends.llvm import conv, maxpool, native_scatter, numpy_sort, pocketfft, scalar_ops
from chainrule.backends.llvm.views import View
from chainrule.ir import Graph

if TYPE_CHECKING:
    from chainrule.backends.llvm.codegen import Codegen
    from chainrule.backends.llvm.lower import Lowering

OPS = ("cumsum", "cumprod", "argmax", "argmin", "searchsorted", "concatenate", "scatter_add", "index_update")


def ready(graph: Graph, node_id: int) -> bool:
    """Can a native loop compute this node? LLVM arithmetic on every dtype, a nonempty result
    (searchsorted: the sorted array and the values of one dtype, which NumPy compares them in)."""
    node = graph[node_id]
    if node.op in conv.OPS:
        return conv.ready(graph, node_id)
    if node.op in maxpool.OPS:
        return maxpool.ready(graph, node_id)
    if node.op in numpy_sort.OPS:
        return numpy_sort.ready(graph, node_id)
    if node.op in pocketfft.OPS:
        return pocketfft.ready(graph, node_id)
    dtypes = [node.type.dtype] + [graph.type(a).dtype for a in node.args]
    if node.op == "searchsorted" and len(set(dtypes[1:])) != 1:
        return False
    if node.op in ("scatter_add", "index_update"):
        return native_scatter.ready(graph, node_id)
    return node.op in OPS and node.type.size > 0 and all(d in scalar_ops.TYPES and d != "bool" for d in dtypes)


def scratch_bytes(plan: Lowering, node_id: int) -> int:
    """Bytes of the kernel's scratch block the node needs while it runs (the convolutions' columns,
    max pooling's argmax), 0 for the others."""
    op = plan.graph[node_id].op
    if op in conv.OPS:
        return conv.workspace_bytes(plan, node_id)
    if op in numpy_sort.OPS:
        return numpy_sort.scratch_bytes(plan.graph, node_id)
    if op in pocketfft.OPS:
        return pocketfft.scratch_bytes(plan.graph, node_id)
    return maxpool.workspace_bytes(plan.graph, node_id) if op in maxpool.OPS else 0


def emit_native(gen: Codegen, node_id: int) -> None:
    """``node_id`` as a loop nest in ``gen.entry`` (see the module docstring)."""
    node = gen.graph[node_id]
    gen.entry.note(gen.describe(node_id) + "  (native loop)")
    _EMITTERS[node.op](gen, node_id)


def _axis_last(shape: tuple[int, ...], axes: list[int], views: dict[Hashable, View]) -> tuple[list[int], dict]:
    """Extents and per-view strides with ``axes`` moved innermost (in order)."""
    order = [d for d in range(len(shape)) if d not in axes] + list(axes)
    strides = {key: [view.strides[d] for d in order] for key, view in views.items()}
    return [shape[d] for d in order], strides


def _scan(gen: Codegen, node_id: int) -> None:
    node = gen.graph[node_id]
    entry, dtype = gen.entry, node.type.dtype
    source, target = gen.plan.views[node.args[0]], gen.plan.views[node_id]
    cache: dict[object, str] = {}
    pointers = {"s": gen.base(entry, source, cache), "t": gen.base(entry, target, cache)}
    extents, strides = _axis_last(node.type.shape, [node.params["axis"]], {"s": source, "t": target})
    t = scalar_ops.register_type(dtype)
    running = entry.alloca(t, "running")
    float_op, int_op, start = ("fadd", "add", 0) if node.op == "cumsum" else ("fmul", "mul", 1)
    opcode = float_op if scalar_ops.is_float(dtype) else int_op
    innermost = len(extents) - 1

    def before(d: int, offsets: dict[Hashable, str]) -> None:
        if d == innermost:
            entry.do(f"store {t} {scalar_ops.literal(start, dtype)}, ptr {running}")

    def payload(offsets: dict[Hashable, str]) -> None:
        x = gen.load(entry, pointers["s"], offsets["s"], source.dtype, "x")
        x = scalar_ops.convert(entry, x, source.dtype, dtype)
        total = entry.emit(f"{opcode} {t} {entry.emit(f'load {t}, ptr {running}', 'running')}, {x}", "running")
        entry.do(f"store {t} {total}, ptr {running}")
        gen.store(entry, total, pointers["t"], offsets["t"], dtype)

    gen.nest(entry, extents, strides, payload, before=before)


def _argextremum(gen: Codegen, node_id: int) -> None:
    node = gen.graph[node_id]
    entry = gen.entry
    source, result = gen.plan.views[node.args[0]], gen.plan.views[node_id]
    shape, axis = source.shape, node.params["axis"]
    axes = list(range(len(shape))) if axis is None else [axis]
    # the result's strides per operand axis (0 on the reduced ones; keepdims' axes of 1 dropped)
    kept = [d for d in range(len(shape)) if d not in axes]
    result_strides = result.strides if not node.params["keepdims"] else [result.strides[d] for d in kept]
    strides_by_axis = dict(zip(kept, result_strides))
    target = View(
        result.slot, result.offset, shape, tuple(strides_by_axis.get(d, 0) for d in range(len(shape))), "int64"
    )
    cache: dict[object, str] = {}
    pointers = {"s": gen.base(entry, source, cache), "t": gen.base(entry, target, cache)}
    extents, strides = _axis_last(shape, axes, {"s": source, "t": target})
    dtype, t = source.dtype, scalar_ops.register_type(source.dtype)
    largest = node.op == "argmax"
    best, best_at, count = entry.alloca(t, "best"), entry.alloca("i64", "best.at"), entry.alloca("i64", "count")
    first_reduced = len(kept)
    if scalar_ops.is_float(dtype):
        start = scalar_ops.float_literal(-np.inf if largest else np.inf, dtype)
    else:
        start = str(np.iinfo(dtype).min if largest else np.iinfo(dtype).max)

    def before(d: int, offsets: dict[Hashable, str]) -> None:
        if d == first_reduced:
            entry.do(f"store {t} {start}, ptr {best}")
            entry.do(f"store i64 0, ptr {best_at}")
            entry.do(f"store i64 0, ptr {count}")

    def payload(offsets: dict[Hashable, str]) -> None:
        emit = entry.emit
        x = gen.load(entry, pointers["s"], offsets["s"], dtype, "x")
        so_far, position = emit(f"load {t}, ptr {best}", "best"), emit(f"load i64, ptr {count}", "count")
        if scalar_ops.is_float(dtype):  # beyond the best, or the first NaN (a NaN best stays)
            beyond = emit(f"fcmp {'ogt' if largest else 'olt'} {t} {x}, {so_far}", "beyond")
            first_nan = emit(f"and i1 {emit(f'fcmp uno {t} {x}, {x}')}, {emit(f'fcmp ord {t} {so_far}, {so_far}')}")
            better = emit(f"or i1 {beyond}, {first_nan}", "better")
        else:
            better = emit(f"icmp {'sgt' if largest else 'slt'} {t} {x}, {so_far}", "better")
        entry.do(f"store {t} {emit(f'select i1 {better}, {t} {x}, {t} {so_far}')}, ptr {best}")
        index = emit(f"select i1 {better}, i64 {position}, i64 {emit(f'load i64, ptr {best_at}')}", "best.at")
        entry.do(f"store i64 {index}, ptr {best_at}")
        entry.do(f"store i64 {emit(f'add i64 {position}, 1')}, ptr {count}")

    def after(d: int, offsets: dict[Hashable, str]) -> None:
        if d == first_reduced:
            gen.store(entry, entry.emit(f"load i64, ptr {best_at}", "found"), pointers["t"], offsets["t"], "int64")

    gen.nest(entry, extents, strides, payload, before=before, after=after)


def _searchsorted(gen: Codegen, node_id: int) -> None:
    node = gen.graph[node_id]
    entry, emit = gen.entry, gen.entry.emit
    array, values, result = gen.plan.views[node.args[0]], gen.plan.views[node.args[1]], gen.plan.views[node_id]
    cache: dict[object, str] = {}
    a_pointer, v_pointer, r_pointer = (gen.base(entry, view, cache) for view in (array, values, result))
    dtype, t = array.dtype, scalar_ops.register_type(array.dtype)
    length, a_stride, left = array.shape[0], array.strides[0], node.params["side"] == "left"
    low, high = entry.alloca("i64", "low"), entry.alloca("i64", "high")

    def goes_before(element: str, x: str) -> str:
        """Does ``element`` of the array sort before value ``x`` (left: a < x; right: a <= x)?"""
        if not scalar_ops.is_float(dtype):
            return emit(f"icmp {'slt' if left else 'sle'} {t} {element}, {x}", "before")
        if left:  # a < x, or x is NaN and a is not
            x_nan = emit(f"fcmp uno {t} {x}, {x}", "x.nan")
            a_number = emit(f"fcmp ord {t} {element}, {element}", "a.number")
            return emit(f"or i1 {emit(f'fcmp olt {t} {element}, {x}')}, {emit(f'and i1 {x_nan}, {a_number}')}")
        return emit(f"or i1 {emit(f'fcmp ole {t} {element}, {x}')}, {emit(f'fcmp uno {t} {x}, {x}')}", "before")

    def payload(offsets: dict[Hashable, str]) -> None:
        x = gen.load(entry, v_pointer, offsets["v"], dtype, "x")
        entry.do("store i64 0, ptr " + low)
        entry.do(f"store i64 {length}, ptr {high}")
        test, step, done = entry.label("search.test"), entry.label("search.step"), entry.label("search.done")
        entry.do(f"br label %{test}")
        entry.place(test)
        lo, hi = emit(f"load i64, ptr {low}", "lo"), emit(f"load i64, ptr {high}", "hi")
        entry.do(f"br i1 {emit(f'icmp slt i64 {lo}, {hi}')}, label %{step}, label %{done}")
        entry.place(step)
        middle = emit(f"lshr i64 {emit(f'add i64 {lo}, {hi}')}, 1", "mid")
        element = gen.load(entry, a_pointer, emit(f"mul i64 {middle}, {a_stride}"), dtype, "a")
        before = goes_before(element, x)
        after_middle = emit(f"add i64 {middle}, 1", "mid.next")
        entry.do(f"store i64 {emit(f'select i1 {before}, i64 {after_middle}, i64 {lo}')}, ptr {low}")
        entry.do(f"store i64 {emit(f'select i1 {before}, i64 {hi}, i64 {middle}')}, ptr {high}")
        entry.do(f"br label %{test}")
        entry.place(done)
        gen.store(entry, lo, r_pointer, offsets["r"], "int64")

    strides: dict[Hashable, list[int]] = {"v": list(values.strides), "r": list(result.strides)}
    gen.nest(entry, list(values.shape), strides, payload)


def _concatenate(gen: Codegen, node_id: int) -> None:
    node = gen.graph[node_id]
    axis = node.params["axis"]
    result = gen.plan.views[node_id]
    start = 0
    for operand in node.args:
        source = gen.plan.views[operand]
        if 0 not in source.shape:
            offset = result.offset + start * result.strides[axis] * result.itemsize
            target = View(result.slot, offset, source.shape, result.strides, result.dtype)
            _copy(gen, source, target)
        start += source.shape[axis]


def _copy(gen: Codegen, source: View, target: View) -> None:
    entry = gen.entry
    cache: dict[object, str] = {}
    pointers = {"s": gen.base(entry, source, cache), "t": gen.base(entry, target, cache)}

    def payload(offsets: dict[Hashable, str]) -> None:
        value = gen.load(entry, pointers["s"], offsets["s"], source.dtype, "x")
        value = scalar_ops.convert(entry, value, source.dtype, target.dtype)
        gen.store(entry, value, pointers["t"], offsets["t"], target.dtype)

    gen.nest(entry, list(source.shape), {"s": list(source.strides), "t": list(target.strides)}, payload)


_EMITTERS: dict[str, Callable[[Codegen, int], None]] = {
    "cumsum": _scan,
    "cumprod": _scan,
    "argmax": _argextremum,
    "argmin": _argextremum,
    "searchsorted": _searchsorted,
    "concatenate": _concatenate,
    "scatter_add": native_scatter.emit,
    "index_update": native_scatter.emit,
    **dict.fromkeys(conv.OPS, conv.emit),
    **dict.fromkeys(maxpool.OPS, maxpool.emit),
    **dict.fromkeys(numpy_sort.OPS, numpy_sort.emit),
    **dict.fromkeys(pocketfft.OPS, pocketfft.emit),
}
