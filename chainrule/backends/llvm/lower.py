"""A scheduled graph becomes one LLVM module with one exported entry function.

    void @<prefix>_entry(ptr %table, i64 %threads)

``table`` is an array of pointers: slot 0 the arena
(one block holding every intermediate, allocated once per kernel), slot 1 the
Python callback for nodes run by NumPy (see below), slot 2 the constants, then
one slot per array input and one per large output (filled per call). Shapes are
static (a kernel is specialized on its input shapes), so every stride is a
constant in the code.

How nodes become code:

- **Views** (transpose, broadcast_to, reshape of contiguous data, basic
  indexing, stop_gradient) are no code at all: a ``View`` is a slot, a byte
  offset and strides (0 on broadcast dimensions), and readers index through it.
- **Loops**: consecutive elementwise nodes and fused nodes of one shape, in
  schedule order, share one loop nest (forward and backward together, as the
  fuse pass never merges them), with full reductions of that shape as
  accumulators. A value is stored only when something outside the loop reads
  it; the rest stay in registers. Dimensions that are contiguous for every
  access are merged, so the innermost loop is what the vectorizer wants. A loop
  over many elements is split into tasks of an outlined body taking
  ``(table, start, end, partials)``, which the process's persistent worker pool
  runs (``pool.py``, ``parallel.py``).
- **Chains**: consecutive 1-D loops over the same points run block by block,
  their intermediates in L2-sized scratch, the blocks the pool's tasks (``chains.py``).
- **Reductions** over some axes are their own loop nest: accumulating in a
  register when the reduced axes are innermost, else into the (initialized)
  result.
- **matmul** (float32/float64, 1-D, 2-D and batched) calls BLAS ``gemm``
  (``@chainrule_dgemm``/``sgemm``), row-major as column-major with the operands
  swapped; a transposed operand is gemm's "T", so ``A.T @ B`` copies nothing.
  (An operand that is neither row- nor column-major, mixed dtypes or more than
  64 batch elements: operands copied column-major, gemm in a native loop over
  the batch, as for LAPACK below.)
- **Linear algebra** (cholesky, solve, triangular_solve, slogdet, eigh, svd, qr) calls SciPy's
  LAPACK (``cython_lapack``) on column-major copies of each matrix, in a workspace at the end of
  the arena (``lapack_ops.py``); a failure (a singular matrix) sets a status the wrapper raises from.
- **Scans, argmax/argmin, concatenate**: loop nests of their own, the op's
  axis innermost (``native_ops.py``); convolutions (im2col loops, BLAS gemm: ``conv.py``)
  and max pooling (``maxpool.py``) too, their workspace LAPACK's scratch block.
- **Loops and branches** (``loop``, ``while``, ``while_vjp``, ``switch``): native loops
  (``loops.py``) calling their bodies, each body planned as a graph of its own and written into
  this module; a body with a node run by NumPy keeps the Python-driven loop (``control.py``).
  A ``scatter_add`` at a basic index (a loop gradient's unpacking) is native too (``loop_scatter.py``).
- **Gathers and scatters** at index arrays: loop nests (``gather.py``, ``native_scatter.py``);
  a reshape of non-contiguous data: a copy (``copies.py``).
- **Everything else** (matmul on integers or of more than 64 batch elements, dtypes without LLVM
  arithmetic such as float16) runs its NumPy lowering from the native code through a Python
  callback (``Fallback``), on views of the same memory: one native call per function call still,
  and every op of the table runs, but those nodes run at NumPy speed. ``Lowered.fallbacks`` lists
  them; ``.source()`` marks them with a comment.

Memory: intermediates live in the arena at offsets planned here (a value's
space is reused once its last reader has run); small outputs are computed in
the arena and copied out, large ones are written straight into arrays the
wrapper allocates per call (``kernel.py``).
"""

from __future__ import annotations

import hashlib
import math

import numpy as np

from chainrule.backends.llvm import chains, copies, gather, lapack_ops, loop_scatter, loops, native_ops, scalar_ops
from chainrule.backends.llvm.cache import code_text
from chainrule.backends.llvm.codegen import Codegen
from chainrule.backends.llvm.plan import ALIGNMENT, Arena, Fallback, InputSpec, Loop, Lowered, OutputSpec, Unit
from chainrule.backends.llvm.strategies import GEMM, LAPACK, NATIVE, SOURCE, VIEW, strategy_of
from chainrule.backends.llvm.strides import contiguous_strides
from chainrule.backends.llvm.views import View, gemm_layout, matrices
from chainrule.ir import OPS, Graph

ARENA, CALLBACK, CONSTANTS = 0, 1, 2
FIXED_SLOTS = 3
# Outputs up to this size are computed in the arena and copied out: cheaper than handing
# the kernel a fresh array (extracting an array's address from Python costs ~1 us).
SMALL_OUTPUT_BYTES = 4096
# A loop (or chain) runs on several threads when it does at least this much work (elements x
# steps): handing its tasks to the pool's parked workers and waiting for them costs several us.
PARALLEL_MIN_WORK = 1 << 18
PARALLEL_MIN_ELEMENTS = 4096
MAX_THREADS = 64
# Steps per loop body: the loop vectorizer's time grows faster than linearly with a body's length
# (a 2,000-step body costs ~0.3 s to compile); the depth-30 nested gradient is ~250 steps.
MAX_LOOP_STEPS = 400
MAX_UNROLLED_BATCH = 64  # matmuls with more batch elements run through NumPy


def lower(graph: Graph, function_name: str) -> Lowered:
    """``graph`` (scheduled) as an LLVM module; see the module docstring."""
    return Lowering(graph, function_name).run()


class Lowering:
    def __init__(self, graph: Graph, function_name: str):
        self.graph = graph
        self.name = function_name
        self.views: dict[int, View] = {}
        self.immediates: dict[int, float | bool] = {}  # size-1 constants read as literals
        self.units: list[Unit] = []
        self.group_of: dict[int, Loop] = {}
        self.constant_chunks: list[bytes] = []
        self.constant_bytes = 0
        self.table_size = FIXED_SLOTS
        self.inputs: list[InputSpec] = []
        self.outputs: list[OutputSpec] = []
        self.fallbacks: list[Fallback] = []
        self.arena_bytes = 0
        self.stored: set[int] = set()  # loop members whose value goes to memory
        self.view_nodes: list[int] = []  # view ops that are views (no code), in id order
        self.native_loops: dict[int, loops.NativeLoop] = {}  # control nodes run as native loops
        self.fallback_notes: dict[int, str] = {}  # why a node runs through NumPy, for the dump
        self.scratch_bytes = 0  # the LAPACK workspace (lapack_ops.py), shared by its nodes
        self.scratch = View(ARENA, -1, (), (), "int32")  # placed by _allocate; starts with the status
        self.failures: list[tuple[str, object]] = []  # what each LAPACK status code raises
        self.chains: list[chains.Chain] = []  # runs of loops over the same points, run block by block

    # ---- planning ---------------------------------------------------------------------------

    def run(self) -> Lowered:
        self.plan()
        module_text, entry, counts = self._emit()
        constants = np.frombuffer(b"".join(self.constant_chunks) or b"\0" * 8, dtype=np.uint8).copy()
        longest = self.longest_loop()
        lowered = Lowered(
            module_text,
            entry,
            self.table_size,
            self.arena_bytes,
            constants,
            self.inputs,
            self.outputs,
            self.fallbacks,
            *counts,
            longest,
        )
        if self.failures:
            lowered.status_offset, lowered.failures = self.scratch.offset, self.failures
        return lowered

    def plan(self) -> None:
        """Everything but the code: units, outputs, memory (a loop body is planned so, then emitted
        into its loop's module)."""
        live = self.graph.live_nodes()
        self._place_sources(live)
        self._form_units(live)
        self._plan_outputs()
        chains.plan_chains(self, PARALLEL_MIN_WORK, PARALLEL_MIN_ELEMENTS)
        self._allocate()

    def longest_loop(self) -> int:
        """Steps in the longest loop body over more than one element, native loops' bodies included."""
        own = [u.loop.steps for u in self.units if u.loop is not None and math.prod(u.loop.shape) > 1]
        own += [loop.steps for chain in self.chains for loop in chain.loops]
        return max(own + [n.longest for n in self.native_loops.values()] + [0])

    def _new_slot(self) -> int:
        self.table_size += 1
        return self.table_size - 1

    def _constant(self, array: np.ndarray) -> View:
        array = np.array(array, order="C")  # not ascontiguousarray: that makes 0-d arrays 1-d
        offset = self.constant_bytes
        data = array.tobytes()
        padding = (-len(data)) % ALIGNMENT
        self.constant_chunks.append(data + b"\0" * padding)
        self.constant_bytes += len(data) + padding
        return View(CONSTANTS, offset, array.shape, contiguous_strides(array.shape), array.dtype.name)

    def place_constant_bytes(self, data: bytes) -> View:
        """``data`` among the kernel's constants, 64-byte aligned (a loop body's own constants)."""
        return self._constant(np.frombuffer(data, np.uint8))

    def _place_sources(self, live: list[int]) -> None:
        graph = self.graph
        for node_id in graph.inputs:
            node_type = graph.type(node_id)
            spec = InputSpec(node_type.shape, node_type.dtype)
            if node_type.ndim == 0:
                spec.staged = View(ARENA, -1, (), (), node_type.dtype)  # offset set by _allocate
            else:
                spec.slot = self._new_slot()
                self.views[node_id] = View(
                    spec.slot, 0, node_type.shape, contiguous_strides(node_type.shape), node_type.dtype
                )
            self.inputs.append(spec)
        for node_id in live:
            node = graph[node_id]
            if node.op == "const":
                value = node.params["value"].array
                if value.size == 1:
                    self.immediates[node_id] = value.reshape(()).item()
                self.views[node_id] = self._constant(value)
            elif node.op == "zeros":
                single = self._constant(np.zeros((), node.type.dtype))
                self.immediates[node_id] = 0
                self.views[node_id] = View(
                    CONSTANTS, single.offset, node.type.shape, (0,) * node.type.ndim, node.type.dtype
                )

    def _view_of(self, node_id: int) -> View | None:
        """The view a view op gives (see strategies.py), or None when its operand's layout allows none.

        An operand computed by the kernel has no place yet while units are formed: its layout
        (contiguous) decides, and ``_allocate`` derives the view again once it has a place.
        """
        node = self.graph[node_id]
        view = strategy_of(node.op).view
        return None if view is None else view(self._layout(node.args[0]), node)

    def _form_units(self, live: list[int]) -> None:
        graph = self.graph
        current: Loop | None = None
        for node_id in live:
            node = graph[node_id]
            strategy = strategy_of(node.op).kind
            if strategy == SOURCE:
                continue
            if strategy == VIEW:
                view = self._view_of(node_id)
                if view is not None:
                    self.views[node_id] = view
                    self.view_nodes.append(node_id)
                    continue
            loop_shape = self._loop_shape(node_id)
            if loop_shape is not None and current is not None and self._joins(current, node_id, loop_shape):
                self._add_member(current, node_id)
                continue
            current = None
            if loop_shape is not None:
                current = Loop(loop_shape)
                self._add_member(current, node_id)
                self.units.append(Unit("loop", node_id, current))
            elif self.is_reduction_member(node_id):
                self.units.append(Unit("reduce" if self._lowerable_reduction(node_id) else "fallback", node_id))
            elif strategy == GEMM and self._gemm_ready(node_id):
                self.units.append(Unit("matmul", node_id))
            elif node.op in loops.NATIVE_OPS and self._plan_native_loop(node_id):
                self.units.append(Unit("native_loop", node_id))
            elif loop_scatter.is_native(self, node_id):
                self.units.append(Unit("scatter", node_id))
            elif strategy in (LAPACK, GEMM) and lapack_ops.ready(graph, node_id):
                self.units.append(Unit("lapack", node_id))
                self.scratch_bytes = max(self.scratch_bytes, lapack_ops.scratch_bytes(graph, node_id))
            elif strategy == NATIVE and native_ops.ready(graph, node_id):
                self.units.append(Unit("native", node_id))
                self.scratch_bytes = max(self.scratch_bytes, native_ops.scratch_bytes(self, node_id))
            elif gather.is_native(graph, node_id):
                self.units.append(Unit("gather", node_id))
            elif copies.is_relayout(self, node_id):
                self.units.append(Unit("copy", node_id))
            else:
                self.units.append(Unit("fallback", node_id))

    def _plan_native_loop(self, node_id: int) -> bool:
        """Can this loop run as a native loop (its bodies lowered without NumPy)? Else note why."""
        native = loops.plan_native(self, node_id)
        if isinstance(native, str):
            self.fallback_notes[node_id] = native
            return False
        self.native_loops[node_id] = native
        return True

    def _supported_dtypes(self, node_id: int) -> bool:
        node = self.graph[node_id]
        dtypes = [node.type.dtype] + [self.graph.type(a).dtype for a in node.args]
        if node.op == "fused":
            dtypes += [step[3].dtype for step in node.params["body"].steps]
        return all(d in scalar_ops.TYPES for d in dtypes)

    def _loop_shape(self, node_id: int) -> tuple[int, ...] | None:
        """The iteration shape if the node can be a loop member (elementwise, or a full reduction)."""
        node = self.graph[node_id]
        if not self._supported_dtypes(node_id) or not self._steps_lowered(node_id):
            return None
        if OPS[node.op].is_elementwise:
            return node.type.shape
        root = node.params["body"].root if node.op == "fused" else (node.op, None, node.attrs, node.type)
        if OPS[root[0]].is_reduction:
            operand_shape = self.reduction_operand_shape(node_id)
            axes = dict(root[2])["axis"]
            if len(axes) == len(operand_shape) and _is_float_or_int(node.type.dtype):
                return operand_shape
            return None
        if node.op == "fused":
            return node.type.shape
        return None

    def reduction_operand_shape(self, node_id: int) -> tuple[int, ...]:
        node = self.graph[node_id]
        if node.op == "fused":
            steps = node.params["body"].steps
            (k,) = steps[-1][1]
            return steps[k][3].shape if k >= 0 else self.graph.type(node.args[-k - 1]).shape
        return self.graph.type(node.args[0]).shape

    def _steps_lowered(self, node_id: int) -> bool:
        node = self.graph[node_id]
        steps = node.params["body"].steps if node.op == "fused" else [(node.op, None, node.attrs, node.type)]
        for op, _, _, step_type in steps:
            if not OPS[op].is_reduction and not scalar_ops.lowerable(op, step_type.dtype):
                return False
        return True

    def _lowerable_reduction(self, node_id: int) -> bool:
        return (
            self._supported_dtypes(node_id)
            and self._steps_lowered(node_id)
            and _is_float_or_int(self.graph.type(node_id).dtype)
        )

    def _joins(self, loop: Loop, node_id: int, shape: tuple[int, ...]) -> bool:
        if shape != loop.shape or loop.steps >= MAX_LOOP_STEPS:
            return False
        for a in self.graph[node_id].args:
            member = self.group_of.get(a)
            if member is loop and self.is_reduction_member(a):
                return False  # a reduction's value exists only after the loop
        # a member read through a view needs memory written by an earlier loop
        return not any(self.group_of.get(r) is loop for r in self.view_roots(node_id))

    def view_roots(self, node_id: int) -> list[int]:
        """The computed values ``node_id`` reads through views (not directly)."""
        roots: list[int] = []
        for a in self.graph[node_id].args:
            if a in self.views and OPS[self.graph[a].op].view:
                stack = [a]
                while stack:
                    v = stack.pop()
                    if OPS[self.graph[v].op].view:
                        stack.append(self.graph[v].args[0])
                    else:
                        roots.append(v)
        return roots

    def is_reduction_member(self, node_id: int) -> bool:
        node = self.graph[node_id]
        return OPS[node.params["body"].root[0] if node.op == "fused" else node.op].is_reduction

    def _add_member(self, loop: Loop, node_id: int) -> None:
        loop.members.append(node_id)
        node = self.graph[node_id]
        loop.steps += len(node.params["body"].steps) if node.op == "fused" else 1
        self.group_of[node_id] = loop

    def _gemm_ready(self, node_id: int) -> bool:
        """Can BLAS compute this matmul from its operands' layouts as they are?"""
        node = self.graph[node_id]
        a, b = (self.graph.type(x) for x in node.args)
        if node.type.dtype not in ("float64", "float32") or a.dtype != node.type.dtype or b.dtype != a.dtype:
            return False
        if 0 in a.shape or 0 in b.shape or node.type.size == 0:
            return False
        a2, b2, batch = matrices(*(self._layout(x) for x in node.args))
        return math.prod(batch) <= MAX_UNROLLED_BATCH and gemm_layout(a2) is not None and gemm_layout(b2) is not None

    def _layout(self, node_id: int) -> View:
        """The node's view, or (for a value computed later) the contiguous layout it will have."""
        view = self.views.get(node_id)
        if view is not None:
            return view
        node_type = self.graph.type(node_id)
        return View(ARENA, 0, node_type.shape, contiguous_strides(node_type.shape), node_type.dtype)

    def add_fallback(self, node_id: int, on_error: bool = False) -> None:
        node = self.graph[node_id]
        operands, result = [self.views[a] for a in node.args], self.views[node_id]
        description = f"%{node_id} {node.op}"
        self.fallbacks.append(Fallback(node_id, node.op, node.params, operands, result, description, on_error))

    def _plan_outputs(self) -> None:
        """Which stored values are outputs written in place, and which outputs need a copy."""
        graph = self.graph
        for loop in [u.loop for u in self.units if u.loop is not None]:
            members = set(loop.members)
            for m in loop.members:
                if self.is_reduction_member(m) or any(u not in members for u in graph.users(m)) or m in graph.outputs:
                    self.stored.add(m)
        self.output_copies: list[tuple[int, int]] = []  # (output index, node)
        self.output_home: dict[int, int] = {}  # node -> output index written in place
        for index, node_id in enumerate(graph.outputs):
            node_type = graph.type(node_id)
            spec = OutputSpec(node_type.shape, node_type.dtype)
            if node_type.nbytes > SMALL_OUTPUT_BYTES:
                spec.slot = self._new_slot()
            self.outputs.append(spec)
            computed = node_id not in self.views and OPS[graph[node_id].op].kind != "source"
            if computed and node_id not in self.output_home:
                self.output_home[node_id] = index
            elif spec.slot is not None and (root := copies.reshaped_value(self, node_id)) is not None:
                self.output_home[root] = index  # computed into the output's array, which its reshape views
            else:
                self.output_copies.append((index, node_id))

    # ---- memory ---------------------------------------------------------------------------

    def _members(self, unit: Unit) -> list[int]:
        if unit.kind == "chain":
            return [m for loop in self.chains[unit.node_id].loops for m in loop.members]
        return unit.loop.members if unit.loop is not None else [unit.node_id]

    def _materialized(self, unit: Unit) -> list[int]:
        if unit.loop is not None or unit.kind == "chain":
            return [m for m in self._members(unit) if m in self.stored]
        return [unit.node_id]

    def _allocate(self) -> None:
        """Arena offsets: each value from the unit computing it to its last reader (through views)."""
        graph = self.graph
        root = list(range(len(graph)))
        for node_id in range(len(graph)):
            if node_id in self.views and OPS[graph[node_id].op].view:
                root[node_id] = root[graph[node_id].args[0]]
        last_read: dict[int, int] = {}
        for index, unit in enumerate(self.units):
            for node_id in self._members(unit):
                for a in graph[node_id].args:
                    last_read[root[a]] = max(last_read.get(root[a], -1), index)
        end = len(self.units)
        for _, node_id in self.output_copies:
            last_read[root[node_id]] = end
        arena = Arena()
        for spec in self.inputs:
            if spec.staged is not None:
                spec.staged = View(ARENA, arena.take(np.dtype(spec.dtype).itemsize), (), (), spec.dtype)
        for node_id, spec in zip(graph.inputs, self.inputs):
            if spec.staged is not None:
                self.views[node_id] = spec.staged
        dying: dict[int, list[tuple[int, int]]] = {}
        for index, unit in enumerate(self.units):
            for node_id in self._materialized(unit):
                node_type = graph.type(node_id)
                output = self.output_home.get(node_id)
                slot = None if output is None else self.outputs[output].slot
                if slot is not None:
                    self.views[node_id] = View(
                        slot, 0, node_type.shape, contiguous_strides(node_type.shape), node_type.dtype
                    )
                    continue
                offset = arena.take(node_type.nbytes)
                self.views[node_id] = View(
                    ARENA, offset, node_type.shape, contiguous_strides(node_type.shape), node_type.dtype
                )
                if output is not None:
                    self.outputs[output].arena_view = self.views[node_id]
                else:
                    dying.setdefault(max(last_read.get(node_id, index), index), []).append((offset, node_type.nbytes))
            if unit.kind == "chain":  # its seats, partials and seat mask, free again once it has run
                chain = self.chains[unit.node_id]
                chain.place(arena.take(chain.arena_bytes()))
                dying.setdefault(index, []).append((chain.mask_offset, chain.arena_bytes()))
            native = self.native_loops.get(unit.node_id) if unit.kind == "native_loop" else None
            if native is not None:  # the loop's working memory, free again once it has run
                native.scratch_offset = arena.take(native.scratch_bytes)
                dying.setdefault(index, []).append((native.scratch_offset, native.scratch_bytes))
            for offset, size in dying.pop(index, ()):
                arena.give_back(offset, size)
        self._place_copies_and_scratch(arena)

    def _place_copies_and_scratch(self, arena: Arena) -> None:
        """The arena's last blocks: outputs copied out at the end, then the LAPACK workspace; and the
        views, now that every computed value has its place."""
        for index, _ in self.output_copies:
            copied = self.outputs[index]
            if copied.slot is None:
                size = np.dtype(copied.dtype).itemsize * math.prod(copied.shape)
                copied.arena_view = View(
                    ARENA, arena.take(size), copied.shape, contiguous_strides(copied.shape), copied.dtype
                )
        if self.scratch_bytes:  # past everything: freed blocks were some value's during the call
            self.scratch = View(ARENA, arena.size, (), (), "int32")
            arena.size += -(-self.scratch_bytes // ALIGNMENT) * ALIGNMENT
        self.arena_bytes = arena.size
        for node_id in self.view_nodes:
            view = self._view_of(node_id)
            assert view is not None, f"%{node_id} was planned as a view of a layout it cannot view"
            self.views[node_id] = view

    def _emit(self) -> tuple[str, str, tuple[int, int]]:
        placeholder = "__CHAINRULE_PREFIX__"
        codegen = Codegen(self, placeholder, MAX_THREADS, PARALLEL_MIN_WORK, PARALLEL_MIN_ELEMENTS)
        codegen.emit()
        text = codegen.module.text()
        # symbols are named by the code alone (the function's name is in comments only), so the
        # same program made for another name or transform finds the same disk cache entry
        prefix = f"cr_{hashlib.sha1(code_text(text).encode()).hexdigest()[:16]}"
        return text.replace(placeholder, prefix), f"{prefix}_entry", (codegen.loops, codegen.parallel_loops)


def _is_float_or_int(dtype: str) -> bool:
    return dtype in scalar_ops.TYPES and dtype != "bool"
