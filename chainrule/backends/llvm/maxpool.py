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

Every pass is a nest over (offset row, offset column, channel, output row, output column) around
a run of the N batch elements, which are innermost in every operand: the runs vectorize.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING

from chainrule.backends.llvm import scalar_ops
from chainrule.backends.llvm.conv import MEMSET
from chainrule.backends.llvm.lapack_unit import STATUS_BYTES, region_bytes
from chainrule.backends.llvm.strides import contiguous_strides
from chainrule.backends.llvm.views import View
from chainrule.ir import Graph

if TYPE_CHECKING:
    from chainrule.backends.llvm.codegen import Codegen

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


def workspace_bytes(graph: Graph, node_id: int) -> int:
    """The scatter and gather keep each window's running maximum and its offset in the workspace."""
    node = graph[node_id]
    if node.op == "max_pool2d":
        return 0
    windows = math.prod(_pooled_shape(graph, node_id))
    return STATUS_BYTES + region_bytes(windows, node.type.dtype) + region_bytes(windows, "int32")


def emit(gen: Codegen, node_id: int) -> None:
    """``node_id`` (a max-pooling op) as loop nests in the entry function (see the module docstring)."""
    node = gen.graph[node_id]
    gen.entry.note(gen.describe(node_id) + "  (native max pooling)")
    cache: dict[object, str] = {}
    result = gen.plan.views[node_id]
    assert result.is_contiguous, "a pooling result is planned contiguous"
    keys = gen.plan.views[node.args[0]]
    pooled = _pooled_shape(gen.graph, node_id)
    window = View(-1, 0, pooled, contiguous_strides(pooled), result.dtype)  # the layout of per-window arrays
    if node.op == "max_pool2d":
        _fill(gen, gen.base(gen.entry, result, cache), math.prod(pooled), result.dtype, "-inf")
        _max_pass(gen, node.params, keys, result, gen.base(gen.entry, result, cache), None, cache)
        return
    scratch = gen.plan.scratch
    best_at = scratch.offset + STATUS_BYTES
    which_at = best_at + region_bytes(math.prod(pooled), result.dtype)
    best = gen.base(gen.entry, View(scratch.slot, best_at, (), (), result.dtype), cache)
    which = gen.base(gen.entry, View(scratch.slot, which_at, (), (), "int32"), cache)
    _fill(gen, best, math.prod(pooled), result.dtype, "-inf")
    _fill(gen, which, math.prod(pooled), "int32", "0")
    _max_pass(gen, node.params, keys, window, best, which, cache)
    target = gen.base(gen.entry, result, cache)
    _fill(gen, target, math.prod(result.shape), result.dtype, "0")
    second = gen.plan.views[node.args[1]]
    if node.op == "max_pool2d_scatter":
        _scatter_pass(gen, node.params, result, target, second, window, which, cache)
    else:
        _gather_pass(gen, node.params, second, result, target, which, cache)


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


def _offset_nest(
    gen: Codegen,
    params: dict,
    images: dict[Hashable, View],
    windows: dict[Hashable, View],
    run: Callable[[Offsets, dict[Hashable, int]], None],
) -> None:
    """For each kernel offset (row-major), channel and window whose pixel under the offset is inside
    the image: ``run(offsets, n_strides)``, with the element offsets of that pixel in each of
    ``images`` and of the window in each of ``windows``, the key "k" the offset's number, and each
    key's stride along the batch."""
    entry = gen.entry
    channels, height, width, _n = next(iter(images.values())).shape
    out_h, out_w = next(iter(windows.values())).shape[1:3]
    (kh, kw), (sh, sw) = params["kernel"], params["stride"]
    (ph, pw), (dh, dw) = params["padding"], params["dilation"]
    strides: dict[Hashable, list[int]] = {"k": [kw, 1, 0, 0, 0], "row": [dh, 0, 0, sh, 0], "col": [0, dw, 0, 0, sw]}
    for key, view in images.items():
        s = view.strides
        strides[key] = [dh * s[1], dw * s[2], s[0], sh * s[1], sw * s[2]]
    for key, view in windows.items():
        strides[key] = [0, 0, *view.strides[:3]]
    shifts = {key: ph * view.strides[1] + pw * view.strides[2] for key, view in images.items()}
    n_strides = {key: view.strides[3] for key, view in {**images, **windows}.items()}

    def payload(offsets: Offsets) -> None:
        here = dict(offsets)
        for key, shift in shifts.items():
            if shift:
                here[key] = entry.emit(f"sub i64 {offsets[key]}, {shift}", "pixel.at")
        tests = [
            entry.emit(f"icmp ult i64 {entry.emit(f'sub i64 {offsets[key]}, {pad}')}, {size}", "inside")
            for key, pad, size in (("row", ph, height), ("col", pw, width))
            if pad
        ]
        if not tests:
            run(here, n_strides)
            return
        inside = tests[0] if len(tests) == 1 else entry.emit(f"and i1 {tests[0]}, {tests[1]}", "inside")
        yes, done = entry.label("pixel.inside"), entry.label("pixel.done")
        entry.do(f"br i1 {inside}, label %{yes}, label %{done}")
        entry.place(yes)
        run(here, n_strides)
        entry.do(f"br label %{done}")
        entry.place(done)

    gen.nest(entry, [kh, kw, channels, out_h, out_w], strides, payload)


def _batch_run(
    gen: Codegen,
    n: int,
    bases: dict[str, tuple[str, str, int]],
    body: Callable[[Callable[[str, str], str], Callable[[str, str, str], None]], None],
) -> None:
    """A loop over the N batch elements: ``bases`` key -> (pointer, element offset of element 0,
    stride); ``body(load, store)`` with ``load(key, dtype)`` and ``store(key, value, dtype)``
    reading and writing each key's current element."""
    entry = gen.entry

    def payload(offsets: Offsets) -> None:
        def place(key: str) -> tuple[str, str]:
            pointer, at, _ = bases[key]
            return pointer, entry.emit(f"add i64 {at}, {offsets[key]}", "at") if at != "0" else offsets[key]

        def load(key: str, dtype: str) -> str:
            return gen.load(entry, *place(key), dtype, "x")

        def store(key: str, value: str, dtype: str) -> None:
            gen.store(entry, value, *place(key), dtype)

        body(load, store)

    gen.nest(entry, [n], {key: [stride] for key, (_, _, stride) in bases.items()}, payload)


def _max_pass(
    gen: Codegen, params: dict, keys: View, windows: View, best: str, which: str | None, cache: dict[object, str]
) -> None:
    """Each window's running maximum into ``best`` (and, with ``which``, the offset that holds it)."""
    entry, dtype = gen.entry, keys.dtype
    t = scalar_ops.register_type(dtype)
    source = gen.base(entry, keys, cache)

    def run(offsets: Offsets, n_strides: dict[Hashable, int]) -> None:
        k = entry.emit(f"trunc i64 {offsets['k']} to i32", "k")
        bases = {"x": (source, offsets["x"], n_strides["x"]), "b": (best, offsets["b"], 1)}
        if which is not None:
            bases["w"] = (which, offsets["b"], 1)

        def body(load: Callable[[str, str], str], store: Callable[[str, str, str], None]) -> None:
            x, so_far = load("x", dtype), load("b", dtype)
            store("b", scalar_ops.nan_propagating_pick(entry, t, x, so_far, "ogt"), dtype)
            if which is not None:  # strictly greater: a tie keeps the first offset, a NaN ends the search
                better = entry.emit(f"fcmp ogt {t} {x}, {so_far}", "better")
                store("w", entry.emit(f"select i1 {better}, i32 {k}, i32 {load('w', 'int32')}", "which"), "int32")

        _batch_run(gen, keys.shape[3], bases, body)

    _offset_nest(gen, params, {"x": keys}, {"b": windows}, run)


def _scatter_pass(
    gen: Codegen, params: dict, result: View, target: str, g: View, windows: View, which: str, cache: dict[object, str]
) -> None:
    """``g`` into the zeroed result at each window's offset, +0.0 at the others (added where windows
    overlap, written where they do not), offset by offset."""
    entry, dtype = gen.entry, result.dtype
    t = scalar_ops.register_type(dtype)
    kernel, stride, dilation = params["kernel"], params["stride"], params["dilation"]
    overlapping = any(stride[a] < dilation[a] * (kernel[a] - 1) + 1 for a in (0, 1))
    source = gen.base(entry, g, cache)
    zero = scalar_ops.literal(0.0, dtype)

    def run(offsets: Offsets, n_strides: dict[Hashable, int]) -> None:
        k = entry.emit(f"trunc i64 {offsets['k']} to i32", "k")
        bases = {
            "d": (target, offsets["d"], n_strides["d"]),
            "g": (source, offsets["g"], n_strides["g"]),
            "w": (which, offsets["w"], 1),
        }

        def body(load: Callable[[str, str], str], store: Callable[[str, str, str], None]) -> None:
            hit = entry.emit(f"icmp eq i32 {load('w', 'int32')}, {k}", "hit")
            chosen = entry.emit(f"select i1 {hit}, {t} {load('g', dtype)}, {t} {zero}", "chosen")
            if overlapping:  # a pixel in several windows collects from each, in offset order
                chosen = entry.emit(f"fadd {t} {load('d', dtype)}, {chosen}", "sum")
            store("d", chosen, dtype)

        _batch_run(gen, result.shape[3], bases, body)

    _offset_nest(gen, params, {"d": result}, {"g": g, "w": windows}, run)


def _gather_pass(
    gen: Codegen, params: dict, a: View, result: View, target: str, which: str, cache: dict[object, str]
) -> None:
    """``a`` read at each window's offset into the zeroed result (an offset in the padding reads 0)."""
    entry, dtype = gen.entry, result.dtype
    t = scalar_ops.register_type(dtype)
    source = gen.base(entry, a, cache)

    def run(offsets: Offsets, n_strides: dict[Hashable, int]) -> None:
        k = entry.emit(f"trunc i64 {offsets['k']} to i32", "k")
        bases = {
            "a": (source, offsets["a"], n_strides["a"]),
            "o": (target, offsets["o"], 1),
            "w": (which, offsets["o"], 1),
        }

        def body(load: Callable[[str, str], str], store: Callable[[str, str, str], None]) -> None:
            hit = entry.emit(f"icmp eq i32 {load('w', 'int32')}, {k}", "hit")
            store("o", entry.emit(f"select i1 {hit}, {t} {load('a', dtype)}, {t} {load('o', dtype)}"), dtype)

        _batch_run(gen, a.shape[3], bases, body)

    _offset_nest(gen, params, {"a": a}, {"o": result}, run)
