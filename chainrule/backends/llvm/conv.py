"""The convolutions of ``chainrule.ir.conv`` as native code: im2col and col2im as loop nests in the
entry function, the products as BLAS ``?gemm`` calls (one per group), as ``conv_kernels`` computes
them in NumPy, without a Python callback or a copy of the result.

- ``conv2d(x, w)``: im2col of ``x`` into the workspace, then per group ``y_g = W_g @ cols_g``,
  written straight into the node's place;
- ``conv2d_weight_grad(x, g)``: im2col of ``x``, then per group ``dw_gᵀ = cols_g @ g_gᵀ`` into the
  workspace (the columns as the left operand, as in NumPy: gemm's faster order), transposed into place;
- ``conv2d_input_grad(g, w)``: per group ``colgrad_g = W_gᵀ @ g_g`` into the workspace, then col2im:
  each kernel offset's block added into the zeroed result, offsets in row-major order (NumPy's
  order, so each pixel's sum is NumPy's to the bit).

im2col writes each column once: for each (channel, kernel offset, output pixel) the run of N batch
elements is copied from the image when the offset's pixel is inside it, and zeroed (``memset``)
when it is padding, as ``conv_kernels.columns`` copies only the in-image part of each offset.
The columns are computed again for the weight gradient rather than kept from the forward pass:
im2col is a copy of C*KH*KW*Ho*Wo*N numbers, a small part of the step next to the products, and
keeping them would hold that much arena from the forward pass to the backward one.

The workspace is the kernel's scratch block (``Lowering.scratch``, shared with LAPACK: nodes run
one after another), after its status word: the columns, a contiguous copy of a kernel or
cotangent operand whose layout BLAS cannot read as a matrix (a transposed view), and of images
whose batch is not innermost (a network's NCHW input seen batch-last: im2col would read each pixel
KH*KW times at a long stride; NumPy's ``conv_kernels.columns`` makes the same copy).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING

import numpy as np

from chainrule.backends.llvm import lapack_ops, scalar_ops
from chainrule.backends.llvm.lapack_unit import STATUS_BYTES, region_bytes
from chainrule.backends.llvm.strides import contiguous_strides
from chainrule.backends.llvm.views import View, gemm_layout
from chainrule.ir import Graph

if TYPE_CHECKING:
    from chainrule.backends.llvm.codegen import Codegen
    from chainrule.backends.llvm.irtext import Function
    from chainrule.backends.llvm.lower import Lowering

OPS = ("conv2d", "conv2d_weight_grad", "conv2d_input_grad")
_INT32_MAX = 2**31 - 1  # BLAS's integers (SciPy's LP64 cython_blas)
MEMSET = "declare void @llvm.memset.p0.i64(ptr, i8, i64, i1 immarg)"  # as loop_scatter.py declares it
# A kernel whose convolutions' gemms all do at most this many multiply-adds (a product of order 256,
# a few ms on one core; the digits CNN's largest at batch 512 is 9.4M) calls BLAS on one thread: on a
# busy machine SciPy's threaded gemm waited for descheduled threads (the CNN step took 31 ms for 0.55
# at batch 128), and on a quiet one its threads gained nothing at these sizes (lapack_ops' docstring).
SMALL_PRODUCT = lapack_ops.SINGLE_THREAD_MAX_ORDER**3


def ready(graph: Graph, node_id: int) -> bool:
    """Native when the dtype is BLAS's (float32/float64), nothing is empty and every matrix fits
    BLAS's 32-bit integers; else the NumPy callback."""
    node = graph[node_id]
    types = [node.type] + [graph.type(a) for a in node.args]
    return (
        node.type.dtype in ("float32", "float64")
        and all(t.dtype == node.type.dtype and t.size > 0 for t in types)
        and max(_columns_count(_geometry(graph, node_id)), *(t.size for t in types)) <= _INT32_MAX
    )


def _geometry(graph: Graph, node_id: int) -> dict:
    """Images (C, H, W, N), kernels (O, C/groups, KH, KW), output (O, Ho, Wo, N) and the attributes."""
    node = graph[node_id]
    first, second = (graph.type(a).shape for a in node.args)
    if node.op == "conv2d":
        images, kernels, output = first, second, node.type.shape
    elif node.op == "conv2d_weight_grad":
        images, kernels, output = first, node.type.shape, second
    else:
        images, kernels, output = node.type.shape, second, first
    return dict(node.params, images=images, kernels=kernels, output=output)


def _columns_count(geometry: dict) -> int:
    channels, _, _, n = geometry["images"]
    _, out_h, out_w, _ = geometry["output"]
    return channels * geometry["kernels"][2] * geometry["kernels"][3] * out_h * out_w * n


def loop_elements(graph: Graph, node_id: int) -> int:
    """The numbers the node's im2col or col2im loop moves: its work on the kernel's threads (the
    GEMM runs on BLAS's own)."""
    return _columns_count(_geometry(graph, node_id))


def _matrix(view: View, split: int) -> View | None:
    """The view as a matrix of its dimensions before and after ``split`` merged, or None when they
    do not merge (a dimension's stride is not the next one's stride times its size)."""
    strides = []
    for part in (range(split), range(split, len(view.shape))):
        dims = [d for d in part if view.shape[d] != 1]
        if any(view.strides[a] != view.strides[b] * view.shape[b] for a, b in itertools.pairwise(dims)):
            return None
        strides.append(view.strides[dims[-1]] if dims else 1)
    shape = (math.prod(view.shape[:split]), math.prod(view.shape[split:]))
    return View(view.slot, view.offset, shape, (strides[0], strides[1]), view.dtype)


# which operands BLAS reads as matrices of O rows (the kernels, a cotangent)
_MATRIX_OPERANDS = {"conv2d": (1,), "conv2d_weight_grad": (1,), "conv2d_input_grad": (0, 1)}


def _group_matrix(view: View, groups: int) -> View | None:
    """Operand ``view`` (output channels leading) as group 0's matrix, O/groups rows, when BLAS can
    read it as it is; None when it must be copied first."""
    matrix = _matrix(view, 1)
    if matrix is None:
        return None
    rows = matrix.shape[0] // groups
    group = View(matrix.slot, matrix.offset, (rows, matrix.shape[1]), matrix.strides, matrix.dtype)
    return group if gemm_layout(group) is not None else None


def _planned_view(plan: Lowering, value_id: int) -> View:
    """The value's view while units are formed: its own, or contiguous for one computed later."""
    view = plan.views.get(value_id)
    if view is not None:
        return view
    value_type = plan.graph.type(value_id)
    return View(0, 0, value_type.shape, contiguous_strides(value_type.shape), value_type.dtype)


def workspace_bytes(plan: Lowering, node_id: int) -> int:
    """Bytes of the scratch block the node needs: the status word, the columns, copied operands."""
    graph = plan.graph
    node = graph[node_id]
    dtype = node.type.dtype
    total = STATUS_BYTES + region_bytes(_columns_count(_geometry(graph, node_id)), dtype)
    if node.op == "conv2d_weight_grad":  # its product, transposed
        total += region_bytes(node.type.size, dtype)
    if node.op != "conv2d_input_grad" and _planned_view(plan, node.args[0]).strides[3] != 1:
        total += region_bytes(graph.type(node.args[0]).size, dtype)  # the images, batch-last
    for k in _MATRIX_OPERANDS[node.op]:
        if _group_matrix(_planned_view(plan, node.args[k]), node.params["groups"]) is None:
            total += region_bytes(graph.type(node.args[k]).size, dtype)
    return total


# ---- code -------------------------------------------------------------------------------------


class _Regions:
    """The node's workspace: regions of the scratch block handed out in order, after the status word."""

    def __init__(self, gen: Codegen, cache: dict[object, str]) -> None:
        self.gen, self.cache = gen, cache
        self.offset = gen.plan.scratch.offset + STATUS_BYTES

    def take(self, count: int, dtype: str) -> View:
        scratch = self.gen.plan.scratch
        region = View(scratch.slot, self.offset, (), (), dtype)
        self.offset += region_bytes(count, dtype)
        assert self.offset <= scratch.offset + self.gen.plan.scratch_bytes, "a convolution outgrew its workspace"
        return region

    def pointer(self, count: int, dtype: str) -> str:
        """A region's address in the entry function."""
        return self.gen.base(self.gen.entry, self.take(count, dtype), self.cache)


def emit(gen: Codegen, node_id: int) -> None:
    """``node_id`` (a convolution) as im2col or col2im loops and BLAS calls in the entry function."""
    gen.uses_blas = True
    node = gen.graph[node_id]
    geometry = _geometry(gen.graph, node_id)
    if _small_products(gen):
        lapack_ops.blas_on_one_thread(gen)
    gen.entry.note(gen.describe(node_id) + "  (native: im2col/col2im loops, BLAS gemm per group)")
    cache: dict[object, str] = {}
    regions = _Regions(gen, cache)
    result = gen.plan.views[node_id]
    columns_region = regions.take(_columns_count(geometry), result.dtype)
    columns = gen.base(gen.entry, columns_region, cache)
    matrices = {k: _operand_matrix(gen, regions, node.args[k], geometry["groups"]) for k in _MATRIX_OPERANDS[node.op]}
    channels, _, _, n = geometry["images"]
    out_channels, kh, kw = geometry["kernels"][0], geometry["kernels"][2], geometry["kernels"][3]
    groups = geometry["groups"]
    pixels = geometry["output"][1] * geometry["output"][2] * n  # columns of the products
    group_rows = channels // groups * kh * kw  # the columns' rows of one group
    column_group = (columns, View(-1, 0, (group_rows, pixels), (pixels, 1), result.dtype), group_rows * pixels)
    out_rows = out_channels // groups
    if node.op == "conv2d":
        _im2col(gen, _batch_contiguous(gen, regions, gen.plan.views[node.args[0]]), columns_region, geometry)
        y = (gen.base(gen.entry, result, cache), View(-1, 0, (out_rows, pixels), (pixels, 1), result.dtype))
        _grouped_gemm(gen, groups, matrices[1], column_group, (*y, out_rows * pixels))
    elif node.op == "conv2d_weight_grad":
        # per group dwᵀ = cols @ gᵀ, then transposed into place: gemm runs the long Ho*Wo*N inner
        # dimension ~1.6x faster so (the columns as the row-major left operand) than as g @ colsᵀ
        _im2col(gen, _batch_contiguous(gen, regions, gen.plan.views[node.args[0]]), columns_region, geometry)
        pointer, view, step = matrices[1]
        g_transposed = (pointer, View(-1, 0, view.shape[::-1], view.strides[::-1], view.dtype), step)
        product = regions.pointer(math.prod(result.shape), result.dtype)
        block = View(-1, 0, (group_rows, out_rows), (out_rows, 1), result.dtype)
        _grouped_gemm(gen, groups, column_group, g_transposed, (product, block, group_rows * out_rows))
        strides: dict[Hashable, list[int]] = {
            "s": [group_rows * out_rows, 1, out_rows],
            "t": [out_rows * group_rows, group_rows, 1],
        }
        target = gen.base(gen.entry, result, cache)

        def move(offsets: dict[Hashable, str]) -> None:
            value = gen.load(gen.entry, product, offsets["s"], result.dtype, "dw")
            gen.store(gen.entry, value, target, offsets["t"], result.dtype)

        gen.nest(gen.entry, [groups, out_rows, group_rows], strides, move)
    else:
        pointer, view, step = matrices[1]
        kernels_transposed = (pointer, View(-1, 0, view.shape[::-1], view.strides[::-1], view.dtype), step)
        _grouped_gemm(gen, groups, kernels_transposed, matrices[0], column_group)
        _col2im(gen, columns_region, result, geometry)


def _small_products(gen: Codegen) -> bool:
    """Are the kernel's convolution products all small (see ``SMALL_PRODUCT``) and has it no LAPACK
    call (which decides for itself, ``lapack_ops``)?"""
    units = gen.plan.units
    if any(u.kind == "lapack" for u in units):
        return False
    convolutions = [u.node_id for u in units if u.kind == "native" and gen.graph[u.node_id].op in OPS]
    return all(_product_size(_geometry(gen.graph, c)) <= SMALL_PRODUCT for c in convolutions)


def _product_size(geometry: dict) -> int:
    """Multiply-adds of one group's gemm (the same for the three ops: the output channels, the
    columns' rows, the output pixels times the batch)."""
    channels, _, _, n = geometry["images"]
    out_channels, kh, kw = geometry["kernels"][0], geometry["kernels"][2], geometry["kernels"][3]
    groups = geometry["groups"]
    return out_channels // groups * (channels // groups * kh * kw) * geometry["output"][1] * geometry["output"][2] * n


def _operand_matrix(gen: Codegen, regions: _Regions, value_id: int, groups: int) -> tuple[str, View, int]:
    """(pointer, group 0's matrix, elements from one group's matrix to the next's) of a BLAS operand:
    the value as it is, or a contiguous copy in the workspace when BLAS cannot read it."""
    view = gen.plan.views[value_id]
    matrix = _group_matrix(view, groups)
    if matrix is not None:
        return gen.base(gen.entry, view, regions.cache), matrix, matrix.shape[0] * matrix.strides[0]
    pointer = regions.pointer(math.prod(view.shape), view.dtype)
    _copy_contiguous(gen, view, pointer, regions.cache)
    matrix = _group_matrix(View(-1, 0, view.shape, contiguous_strides(view.shape), view.dtype), groups)
    assert matrix is not None
    return pointer, matrix, matrix.shape[0] * matrix.strides[0]


def _batch_contiguous(gen: Codegen, regions: _Regions, image: View) -> View:
    """The images with the batch innermost: as they are, or (NCHW images seen batch-last, whose
    batch is a long stride) copied once into the workspace, reading them in their own order, so
    that im2col's KH*KW reads of each pixel run along contiguous memory."""
    if image.strides[3] == 1:
        return image
    region = regions.take(math.prod(image.shape), image.dtype)
    contiguous = View(region.slot, region.offset, image.shape, contiguous_strides(image.shape), image.dtype)
    order = sorted(range(4), key=lambda d: -image.strides[d])
    source, target = gen.base(gen.entry, image, regions.cache), gen.base(gen.entry, contiguous, regions.cache)

    def payload(offsets: dict[Hashable, str]) -> None:
        value = gen.load(gen.entry, source, offsets["s"], image.dtype, "x")
        gen.store(gen.entry, value, target, offsets["t"], image.dtype)

    strides: dict[Hashable, list[int]] = {
        "s": [image.strides[d] for d in order],
        "t": [contiguous.strides[d] for d in order],
    }
    gen.nest(gen.entry, [image.shape[d] for d in order], strides, payload)
    return contiguous


def _copy_contiguous(gen: Codegen, view: View, target: str, cache: dict[object, str]) -> None:
    entry = gen.entry
    source = gen.base(entry, view, cache)

    def payload(offsets: dict[Hashable, str]) -> None:
        value = gen.load(entry, source, offsets["s"], view.dtype, "x")
        gen.store(entry, value, target, offsets["t"], view.dtype)

    strides: dict[Hashable, list[int]] = {"s": list(view.strides), "t": list(contiguous_strides(view.shape))}
    gen.nest(entry, list(view.shape), strides, payload)


def _constant(gen: Codegen, llvm_type: str, value: object, name: str) -> str:
    """A pointer to ``value`` (BLAS takes every argument by pointer), one per distinct value."""
    key = (llvm_type, value)
    if key not in gen.blas_arguments:
        slot = gen.entry.alloca(llvm_type, name)
        gen.entry.do(f"store {llvm_type} {value}, ptr {slot}")
        gen.blas_arguments[key] = slot
    return gen.blas_arguments[key]


Operand = tuple[str, View, int]  # (pointer to group 0's matrix, its shape and strides, group step)


def _grouped_gemm(gen: Codegen, groups: int, a: Operand, b: Operand, c: Operand) -> None:
    """``c_g = a_g @ b_g`` for every group g, row-major, one gemm call each (the column-major product
    of the transposes, as gemm.py calls it); ``c`` is row-major."""
    entry = gen.entry
    dtype = c[1].dtype
    gemm = "chainrule_dgemm" if dtype == "float64" else "chainrule_sgemm"
    layouts = [gemm_layout(operand[1]) for operand in (a, b, c)]
    assert all(layout is not None for layout in layouts) and layouts[2] == ("N", c[1].shape[1]), "not BLAS's layout"
    (a_trans, a_ld), (b_trans, b_ld), _ = layouts  # type: ignore[misc]
    rows, inner, columns = a[1].shape[0], a[1].shape[1], b[1].shape[1]
    integers = [_constant(gen, "i32", v, f"int.{v}") for v in (columns, rows, inner, b_ld, a_ld, columns)]
    trans_b, trans_a = (_constant(gen, "i8", ord(t), f"char.{t}") for t in (b_trans, a_trans))
    t = scalar_ops.register_type(dtype)
    alpha = _constant(gen, t, scalar_ops.literal(1.0, dtype), "alpha")
    beta = _constant(gen, t, scalar_ops.literal(0.0, dtype), "beta")
    memory = scalar_ops.memory_type(dtype)

    def payload(offsets: dict[Hashable, str]) -> None:
        at = {
            key: entry.emit(f"getelementptr {memory}, ptr {operand[0]}, i64 {offsets[key]}", f"{key}.g")
            for key, operand in zip("abc", (a, b, c))
        }
        entry.do(
            f"call void @{gemm}(ptr {trans_b}, ptr {trans_a}, ptr {integers[0]}, ptr {integers[1]}, "
            f"ptr {integers[2]}, ptr {alpha}, ptr {at['b']}, ptr {integers[3]}, ptr {at['a']}, ptr {integers[4]}, "
            f"ptr {beta}, ptr {at['c']}, ptr {integers[5]})"
        )

    gen.nest(entry, [groups], {key: [operand[2]] for key, operand in zip("abc", (a, b, c))}, payload)


def _window_nest(
    gen: Codegen,
    fn: Function,
    image: View,
    geometry: dict,
    run: Callable[[str, str], None],
    outside: Callable[[str], None] | None = None,
) -> None:
    """In ``fn`` (an outlined body over channels [%start, %end)): for each (channel, kernel offset,
    output pixel), outermost first, ``run(image_at, columns_at)`` when the offset's pixel is inside
    the image, else ``outside(columns_at)`` (element offsets of the image's pixel and of the
    columns' run of N)."""
    channels, height, width, n = image.shape
    kh, kw = geometry["kernels"][2:]
    out_h, out_w = geometry["output"][1:3]
    (sh, sw), (ph, pw), (dh, dw) = geometry["stride"], geometry["padding"], geometry["dilation"]
    xs = image.strides
    column_strides = contiguous_strides((channels, kh, kw, out_h, out_w, n))[:5]
    strides: dict[Hashable, list[int]] = {
        "c": list(column_strides),
        "x": [xs[0], dh * xs[1], dw * xs[2], sh * xs[1], sw * xs[2]],
        "row": [0, dh, 0, sh, 0],
        "col": [0, 0, dw, 0, sw],
    }
    shift = ph * xs[1] + pw * xs[2]  # the image's pixel (0, 0) is the padded image's (ph, pw)

    def payload(offsets: dict[Hashable, str]) -> None:
        image_at = fn.emit(f"sub i64 {offsets['x']}, {shift}", "image.at") if shift else offsets["x"]
        tests = []
        for key, pad, size in (("row", ph, height), ("col", pw, width)):
            if pad:  # unsigned: a pixel above or left of the image is a huge number
                tests.append(fn.emit(f"icmp ult i64 {fn.emit(f'sub i64 {offsets[key]}, {pad}')}, {size}"))
        if not tests:
            run(image_at, offsets["c"])
            return
        inside = tests[0] if len(tests) == 1 else fn.emit(f"and i1 {tests[0]}, {tests[1]}", "inside")
        yes, no, join = fn.label("pixel.inside"), fn.label("pixel.padding"), fn.label("pixel.done")
        fn.do(f"br i1 {inside}, label %{yes}, label %{no}")
        fn.place(yes)
        run(image_at, offsets["c"])
        fn.do(f"br label %{join}")
        fn.place(no)
        if outside is not None:
            outside(offsets["c"])
        fn.do(f"br label %{join}")
        fn.place(join)

    gen.nest(fn, [channels, kh, kw, out_h, out_w], strides, payload, low="%start", high="%end")


def over_channels(gen: Codegen, comment: str, channels: int, elements: int, body: Callable[[Function], None]) -> None:
    """``body(fn)`` writes a loop over channels [%start, %end) into an outlined function, which runs
    on the kernel's threads (``parallel.py``) when ``elements`` are enough work, as codegen's loops
    do; each channel's elements are its own, so the results do not depend on the thread count."""
    fn = gen.outlined(comment)
    body(fn)
    fn.do("ret void")
    threaded = channels > 1 and elements >= max(gen.parallel_min_elements, gen.parallel_min_work)
    gen.run_outlined(fn, channels, threaded)


def _run(
    gen: Codegen,
    fn: Function,
    count: int,
    source: tuple[str, str, int],
    target: tuple[str, str, int],
    dtype: str,
    add: bool,
) -> None:
    """``count`` elements from ``source`` to ``target`` (pointer, element offset, stride), copied or
    added to what is there."""
    memory = scalar_ops.memory_type(dtype)
    s, t = (
        fn.emit(f"getelementptr {memory}, ptr {p}, i64 {at}", name)
        for (p, at, _), name in ((source, "run.s"), (target, "run.t"))
    )

    def payload(offsets: dict[Hashable, str]) -> None:
        value = gen.load(fn, s, offsets["s"], dtype, "x")
        if add:
            so_far = gen.load(fn, t, offsets["t"], dtype, "sum")
            value = fn.emit(f"fadd {scalar_ops.register_type(dtype)} {so_far}, {value}", "sum")
        gen.store(fn, value, t, offsets["t"], dtype)

    gen.nest(fn, [count], {"s": [source[2]], "t": [target[2]]}, payload)


def _zero(fn: Function, pointer: str, at: str, count: str, dtype: str) -> None:
    """``count`` elements (a register or literal) from ``pointer[at]`` set to +0.0."""
    fn.declare(MEMSET)
    place = fn.emit(f"getelementptr {scalar_ops.memory_type(dtype)}, ptr {pointer}, i64 {at}", "zeroed")
    nbytes = fn.emit(f"mul i64 {count}, {np.dtype(dtype).itemsize}", "bytes")
    fn.do(f"call void @llvm.memset.p0.i64(ptr {place}, i8 0, i64 {nbytes}, i1 false)")


def _im2col(gen: Codegen, image: View, columns: View, geometry: dict) -> None:
    """The columns (C, KH, KW, Ho, Wo, N): each offset's in-image runs copied, its padding zeroed."""
    n = image.shape[3]

    def body(fn: Function) -> None:
        cache: dict[object, str] = {}
        source, target = gen.base(fn, image, cache), gen.base(fn, columns, cache)
        _window_nest(
            gen,
            fn,
            image,
            geometry,
            lambda image_at, columns_at: _run(
                gen, fn, n, (source, image_at, image.strides[3]), (target, columns_at, 1), image.dtype, False
            ),
            lambda columns_at: _zero(fn, target, columns_at, str(n), image.dtype),
        )

    count = _columns_count(geometry)
    over_channels(gen, f"im2col: {count} columns' elements", image.shape[0], count, body)


def _col2im(gen: Codegen, columns: View, result: View, geometry: dict) -> None:
    """The image (C, H, W, N) of the columns' cotangent: zeroed, then each offset's runs added."""
    assert result.is_contiguous, "a convolution's input gradient is planned contiguous"
    n, per_channel = result.shape[3], result.strides[0]

    def body(fn: Function) -> None:
        cache: dict[object, str] = {}
        source, target = gen.base(fn, columns, cache), gen.base(fn, result, cache)
        first = fn.emit(f"mul i64 %start, {per_channel}", "first")
        _zero(fn, target, first, fn.emit(f"mul i64 {fn.emit('sub i64 %end, %start')}, {per_channel}"), result.dtype)
        _window_nest(
            gen,
            fn,
            result,
            geometry,
            lambda image_at, columns_at: _run(
                gen, fn, n, (source, columns_at, 1), (target, image_at, result.strides[3]), result.dtype, True
            ),
        )

    count = _columns_count(geometry)
    over_channels(gen, f"col2im: {count} columns' elements", result.shape[0], count, body)
