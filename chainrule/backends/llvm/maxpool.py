"""The max pooling ops of ``chainrule.ir.pool`` as native loops, in the order ``conv_kernels``
computes them, so their results are NumPy's to the bit (NaN and infinities included):

- ``max_pool2d(x)``: the result starts at -inf; for each kernel offset in row-major order, each
  window's pixel under it (inside the image: padding is -inf, which never wins) replaces the
  running maximum when greater or NaN (``np.maximum``'s NaN propagation);
- ``max_pool2d_scatter(keys, g)`` and ``max_pool2d_gather(keys, a)``: first each window's argmax
  over the offsets (``which``, int32, in the workspace): an offset takes it when strictly greater
  than the running maximum, so ties go to the first offset, as in PyTorch, and a NaN stops the
  search (no later offset compares greater), as ``conv_kernels._window_argmax`` does; then, offset
  by offset, ``g`` added into (or, when windows do not overlap, written to) the zeroed result where
  the offset is the window's, +0.0 elsewhere, as ``conv_kernels.max_pool2d_scatter`` adds; or ``a``
  read there.

Every pass is a nest over (channel, offset row, offset column, output row, output column) around
a run of the N batch elements, which are innermost in every operand (the runs vectorize), in an
outlined function over channels that runs on the kernel's threads when the pass is large (each
channel's windows are its own: the results do not depend on the thread count).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING

from chainrule.backends.llvm import scalar_ops
from chainrule.backends.llvm.conv import MEMSET, over_channels
from chainrule.backends.llvm.lapack_unit import STATUS_BYTES, region_bytes
from chainrule.backends.llvm.strides import contiguous_strides
from chainrule.backends.llvm.views import View
from chainrule.ir import Graph

if TYPE_CHECKING:
    from chainrule.backends.llvm.codegen import Codegen
    from chainrule.backends.llvm.irtext import Function

OPS = ("max_pool2d", "max_pool2d_scatter", "max_pool2d_gather")
Offsets = dict[Hashable, str]


def ready(graph: Graph, node_id: int) -> bool:
    """Native for float32/float64 (others: the NumPy callback) and fewer offsets than int32 counts."""
    node = graph[node_id]
    kernel = node.params["kernel"]
    types = [node.type] + [graph.type(a) for a in node.args]
    return all(t.dtype in ("float32", "float64") and t.size > 0 for t in types) and kernel[0] * kernel[1] < 2**31


def _pooled_shape(graph: Graph, node_id: int) -> tuple[int, ...]:
    node = graph[node_id]
    return node.type.shape if node.op != "max_pool2d_scatter" else graph.type(node.args[1]).shape


def loop_elements(graph: Graph, node_id: int) -> int:
    """The numbers the node's passes visit, a window's worth per pooled element: its work on the
    kernel's threads."""
    kernel_h, kernel_w = graph[node_id].params["kernel"]
    return math.prod(_pooled_shape(graph, node_id)) * kernel_h * kernel_w


def workspace_bytes(graph: Graph, node_id: int) -> int:
    """The scatter and gather keep each window's running maximum and its offset in the workspace."""
    node = graph[node_id]
    if node.op == "max_pool2d":
        return 0
    windows = math.prod(_pooled_shape(graph, node_id))
    return STATUS_BYTES + region_bytes(windows, node.type.dtype) + region_bytes(windows, "int32")


def emit(gen: Codegen, node_id: int) -> None:
    """``node_id`` (a max-pooling op) as loop nests over channels, outlined (see the module docstring)."""
    node = gen.graph[node_id]
    gen.entry.note(gen.describe(node_id) + "  (native max pooling)")
    cache: dict[object, str] = {}
    result = gen.plan.views[node_id]
    assert result.is_contiguous, "a pooling result is planned contiguous"
    keys = gen.plan.views[node.args[0]]
    pooled = _pooled_shape(gen.graph, node_id)
    if node.op == "max_pool2d":
        _fill(gen, gen.base(gen.entry, result, cache), math.prod(pooled), result.dtype, "-inf")
        _max_pass(gen, node.params, keys, result, None)
        return
    scratch = gen.plan.scratch
    best_at = scratch.offset + STATUS_BYTES
    which_at = best_at + region_bytes(math.prod(pooled), result.dtype)
    best = View(scratch.slot, best_at, pooled, contiguous_strides(pooled), result.dtype)
    which = View(scratch.slot, which_at, pooled, contiguous_strides(pooled), "int32")
    _fill(gen, gen.base(gen.entry, best, cache), math.prod(pooled), result.dtype, "-inf")
    _fill(gen, gen.base(gen.entry, which, cache), math.prod(pooled), "int32", "0")
    _max_pass(gen, node.params, keys, best, which)
    _fill(gen, gen.base(gen.entry, result, cache), math.prod(result.shape), result.dtype, "0")
    second = gen.plan.views[node.args[1]]
    if node.op == "max_pool2d_scatter":
        _scatter_pass(gen, node.params, result, second, which)
    else:
        _gather_pass(gen, node.params, second, result, which)


def _fill(gen: Codegen, pointer: str, count: int, dtype: str, value: str) -> None:
    """``count`` elements at ``pointer`` set to zero ("0": a memset) or to -inf ("-inf")."""
    entry = gen.entry
    if value == "0":
        entry.declare(MEMSET)
        nbytes = count * _ITEMSIZE[dtype]
        entry.do(f"call void @llvm.memset.p0.i64(ptr {pointer}, i8 0, i64 {nbytes}, i1 false)")
        return
    literal = scalar_ops.float_literal(-math.inf, dtype)
    gen.nest(entry, [count], {"t": [1]}, lambda o: gen.store(entry, literal, pointer, o["t"], dtype))


_ITEMSIZE = {"float32": 4, "float64": 8, "int32": 4}
# (function, offsets, each key's stride along the batch, each key's pointer) -> the window's code
Run = Callable[["Function", Offsets, dict[Hashable, int], dict[Hashable, str]], None]


def _offset_nest(gen: Codegen, params: dict, images: dict[str, View], windows: dict[str, View], run: Run) -> None:
    """An outlined loop over channels (on the kernel's threads when large, ``conv.over_channels``):
    for each channel, kernel offset (row-major) and window whose pixel under the offset is inside
    the image, ``run(fn, offsets, n_strides, pointers)``, with the element offsets of that pixel in
    each of ``images`` and of the window in each of ``windows``, the key "k" the offset's number,
    each key's stride along the batch and pointer."""
    channels, height, width, _ = next(iter(images.values())).shape
    out_h, out_w = next(iter(windows.values())).shape[1:3]
    (kh, kw), (sh, sw) = params["kernel"], params["stride"]
    (ph, pw), (dh, dw) = params["padding"], params["dilation"]
    strides: dict[Hashable, list[int]] = {"k": [0, kw, 1, 0, 0], "row": [0, dh, 0, sh, 0], "col": [0, 0, dw, 0, sw]}
    for key, view in images.items():
        s = view.strides
        strides[key] = [s[0], dh * s[1], dw * s[2], sh * s[1], sw * s[2]]
    for key, view in windows.items():
        strides[key] = [view.strides[0], 0, 0, view.strides[1], view.strides[2]]
    shifts = {key: ph * view.strides[1] + pw * view.strides[2] for key, view in images.items()}
    n_strides: dict[Hashable, int] = {key: view.strides[3] for key, view in {**images, **windows}.items()}

    def body(fn: Function) -> None:
        cache: dict[object, str] = {}
        pointers: dict[Hashable, str] = {key: gen.base(fn, view, cache) for key, view in {**images, **windows}.items()}

        def payload(offsets: Offsets) -> None:
            here = dict(offsets)
            for key, shift in shifts.items():
                if shift:
                    here[key] = fn.emit(f"sub i64 {offsets[key]}, {shift}", "pixel.at")
            tests = [
                fn.emit(f"icmp ult i64 {fn.emit(f'sub i64 {offsets[key]}, {pad}')}, {size}", "inside")
                for key, pad, size in (("row", ph, height), ("col", pw, width))
                if pad
            ]
            if not tests:
                run(fn, here, n_strides, pointers)
                return
            inside = tests[0] if len(tests) == 1 else fn.emit(f"and i1 {tests[0]}, {tests[1]}", "inside")
            yes, done = fn.label("pixel.inside"), fn.label("pixel.done")
            fn.do(f"br i1 {inside}, label %{yes}, label %{done}")
            fn.place(yes)
            run(fn, here, n_strides, pointers)
            fn.do(f"br label %{done}")
            fn.place(done)

        gen.nest(fn, [channels, kh, kw, out_h, out_w], strides, payload, low="%start", high="%end")

    elements = channels * kh * kw * out_h * out_w * next(iter(images.values())).shape[3]
    over_channels(gen, f"max pooling pass: {elements} comparisons or picks", channels, elements, body)


def _batch_run(
    gen: Codegen,
    fn: Function,
    n: int,
    bases: dict[str, tuple[str, str, int]],
    body: Callable[[Callable[[str, str], str], Callable[[str, str, str], None]], None],
) -> None:
    """A loop over the N batch elements: ``bases`` key -> (pointer, element offset of element 0,
    stride); ``body(load, store)`` with ``load(key, dtype)`` and ``store(key, value, dtype)``
    reading and writing each key's current element."""

    def payload(offsets: Offsets) -> None:
        def place(key: str) -> tuple[str, str]:
            pointer, at, _ = bases[key]
            return pointer, fn.emit(f"add i64 {at}, {offsets[key]}", "at") if at != "0" else offsets[key]

        def load(key: str, dtype: str) -> str:
            return gen.load(fn, *place(key), dtype, "x")

        def store(key: str, value: str, dtype: str) -> None:
            gen.store(fn, value, *place(key), dtype)

        body(load, store)

    gen.nest(fn, [n], {key: [stride] for key, (_, _, stride) in bases.items()}, payload)


def _max_pass(gen: Codegen, params: dict, keys: View, best: View, which: View | None) -> None:
    """Each window's running maximum into ``best`` (and, with ``which``, the offset that holds it)."""
    dtype = keys.dtype
    t = scalar_ops.register_type(dtype)

    def run(fn: Function, offsets: Offsets, n_strides: dict[Hashable, int], pointers: dict[Hashable, str]) -> None:
        k = fn.emit(f"trunc i64 {offsets['k']} to i32", "k")
        bases = {"x": (pointers["x"], offsets["x"], n_strides["x"]), "b": (pointers["b"], offsets["b"], 1)}
        if which is not None:
            bases["w"] = (pointers["w"], offsets["b"], 1)

        def body(load: Callable[[str, str], str], store: Callable[[str, str, str], None]) -> None:
            x, so_far = load("x", dtype), load("b", dtype)
            store("b", scalar_ops.nan_propagating_pick(fn, t, x, so_far, "ogt"), dtype)
            if which is not None:  # strictly greater: a tie keeps the first offset, a NaN ends the search
                better = fn.emit(f"fcmp ogt {t} {x}, {so_far}", "better")
                store("w", fn.emit(f"select i1 {better}, i32 {k}, i32 {load('w', 'int32')}", "which"), "int32")

        _batch_run(gen, fn, keys.shape[3], bases, body)

    _offset_nest(gen, params, {"x": keys}, {"b": best} | ({"w": which} if which is not None else {}), run)


def _scatter_pass(gen: Codegen, params: dict, result: View, g: View, which: View) -> None:
    """``g`` into the zeroed result at each window's offset, +0.0 at the others (added where windows
    overlap, written where they do not), offset by offset."""
    dtype = result.dtype
    t = scalar_ops.register_type(dtype)
    kernel, stride, dilation = params["kernel"], params["stride"], params["dilation"]
    overlapping = any(stride[a] < dilation[a] * (kernel[a] - 1) + 1 for a in (0, 1))
    zero = scalar_ops.literal(0.0, dtype)

    def run(fn: Function, offsets: Offsets, n_strides: dict[Hashable, int], pointers: dict[Hashable, str]) -> None:
        k = fn.emit(f"trunc i64 {offsets['k']} to i32", "k")
        bases = {key: (pointers[key], offsets[key], n_strides[key]) for key in ("d", "g", "w")}

        def body(load: Callable[[str, str], str], store: Callable[[str, str, str], None]) -> None:
            hit = fn.emit(f"icmp eq i32 {load('w', 'int32')}, {k}", "hit")
            chosen = fn.emit(f"select i1 {hit}, {t} {load('g', dtype)}, {t} {zero}", "chosen")
            if overlapping:  # a pixel in several windows collects from each, in offset order
                chosen = fn.emit(f"fadd {t} {load('d', dtype)}, {chosen}", "sum")
            store("d", chosen, dtype)

        _batch_run(gen, fn, result.shape[3], bases, body)

    _offset_nest(gen, params, {"d": result}, {"g": g, "w": which}, run)


def _gather_pass(gen: Codegen, params: dict, a: View, result: View, which: View) -> None:
    """``a`` read at each window's offset into the zeroed result (an offset in the padding reads 0)."""
    dtype = result.dtype
    t = scalar_ops.register_type(dtype)

    def run(fn: Function, offsets: Offsets, n_strides: dict[Hashable, int], pointers: dict[Hashable, str]) -> None:
        k = fn.emit(f"trunc i64 {offsets['k']} to i32", "k")
        bases = {key: (pointers[key], offsets[key], n_strides[key]) for key in ("a", "o", "w")}

        def body(load: Callable[[str, str], str], store: Callable[[str, str, str], None]) -> None:
            hit = fn.emit(f"icmp eq i32 {load('w', 'int32')}, {k}", "hit")
            store("o", fn.emit(f"select i1 {hit}, {t} {load('a', dtype)}, {t} {load('o', dtype)}"), dtype)

        _batch_run(gen, fn, a.shape[3], bases, body)

    _offset_nest(gen, params, {"a": a}, {"o": result, "w": which}, run)
