"""Emitting the planned units of ``lower.py`` as LLVM IR text.

Each loop and reduction is an internal function ``(table, start, end, partials)``
running its outermost dimension from ``start`` to ``end``; the entry function
calls it once, or through ``parallel`` on every thread (each thread's
accumulators go to its own row of ``partials``, combined in thread order
afterwards, so results do not depend on timing).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Sequence
from typing import TYPE_CHECKING

from chainrule.backends.llvm import blas, blocked, conv, loop_hints, loop_scatter, loops, parallel, scalar_ops, widen
from chainrule.backends.llvm.copies import emit_output_copies, emit_relayout
from chainrule.backends.llvm.gather import emit_gather
from chainrule.backends.llvm.gemm import emit_gemm
from chainrule.backends.llvm.irtext import Function, Module
from chainrule.backends.llvm.lapack_ops import emit_lapack, finish
from chainrule.backends.llvm.native_ops import emit_native
from chainrule.backends.llvm.reductions import ReductionNest
from chainrule.backends.llvm.strategies import strategy_of
from chainrule.backends.llvm.strides import (
    coalesce,
    coalesce_marked,
    contiguous_strides,
)
from chainrule.backends.llvm.views import View
from chainrule.ir import OPS

if TYPE_CHECKING:
    from chainrule.backends.llvm.lower import Lowering
    from chainrule.backends.llvm.plan import Loop, Unit

# access key -> an element offset (a register or literal), as a loop nest's body sees it
Offsets = dict[Hashable, str]

_ACCUMULATOR_BYTES = 8
_SLOT_NAMES = {0: "arena", 2: "constants"}
_VECTOR_GRANULE = 64


class Codegen:
    """Writes the module for a planned ``Lowering`` (see lower.py)."""

    def __init__(
        self,
        plan: Lowering,
        prefix: str,
        max_threads: int,
        parallel_min_work: int,
        parallel_min_elements: int,
        module: Module | None = None,
    ):
        self.plan = plan
        self.graph = plan.graph
        self.prefix = prefix
        self.max_threads = max_threads
        self.parallel_min_work = parallel_min_work
        self.parallel_min_elements = parallel_min_elements
        self.module = module or Module()  # a loop body is written into its loop's module
        self.loops = 0
        self.parallel_loops = 0
        self.uses_blas = False
        self.blas_arguments: dict[tuple[str, object], str] = {}  # (type, value) -> the entry's pointer to it
        self.uses_threads = False
        self.lapack_status_cleared = False
        self.lapack_threads: str | None = None  # where SciPy's BLAS thread count is saved (lapack_ops)

    # ---- the entry function -----------------------------------------------------------------

    def emit(self, linkage: str = "") -> str:
        """Write the entry function and what it calls into the module (``module.text()``); its symbol."""
        plan = self.plan
        entry = self.module.function(
            f"{linkage}void @{self.prefix}_entry(ptr noalias %table, i64 %threads)",
            f"{plan.name}: the whole function, one call",
        )
        self.entry = entry
        accumulators = max([self._accumulator_count(u) for u in plan.units] + [1])
        self.row_bytes = accumulators * _ACCUMULATOR_BYTES
        self.partials = entry.alloca(f"[{self.max_threads * accumulators} x i64]", "partials")
        few = entry.emit(f"icmp ult i64 %threads, {self.max_threads}", "threads.fit")
        clamped = entry.emit(f"select i1 {few}, i64 %threads, i64 {self.max_threads}", "threads.max")
        positive = entry.emit(f"icmp ugt i64 {clamped}, 0", "threads.positive")
        self.threads = entry.emit(f"select i1 {positive}, i64 {clamped}, i64 1", "threads.used")
        for unit in plan.units:
            if unit.loop is not None:  # kind "loop"
                self._loop(unit.loop)
            elif unit.kind == "reduce":
                self._reduction(unit.node_id)
            elif unit.kind in ("gather", "native") and self.graph[unit.node_id].op not in conv.OPS:
                self._outlined_node(unit.kind, unit.node_id)
            elif unit.kind in _EMITTERS:
                _EMITTERS[unit.kind](self, unit.node_id)
            else:
                self._fallback(unit.node_id)
        emit_output_copies(self)
        finish(self)
        entry.do("ret void")
        if self.uses_threads:
            self.module.header.append(parallel.runtime(self.prefix, self.max_threads))
            self.module.declare(parallel.DECLARATION)
        if self.uses_blas:
            self.module.declare(blas.DECLARATIONS.strip())
        return f"{self.prefix}_entry"

    def _outlined_node(self, kind: str, node_id: int) -> None:
        """A gather's or native op's loop nests in a function of their own, called from the entry. LLVM
        took more than linear time in a function's blocks: autograd's fluidsim (8 steps) compiled
        in 88-100 s with them in the entry, 22-26 s so. (Convolutions use the entry's BLAS arguments.)"""
        entry = self.entry
        name = f"{self.prefix}_node{node_id}"
        fn = self.module.function(
            f"internal void @{name}(ptr noalias %table, i64 {self.threads}, ptr {self.partials}) noinline",
            self.describe(node_id),
        )
        for register in ("%table", self.threads, self.partials):  # the entry's names: the emitters read them
            fn.fresh(register[1:])
        self.entry = fn  # (an emitter that raises ends the whole module)
        _EMITTERS[kind](self, node_id)
        self.entry = entry
        fn.do("ret void")
        entry.note(self.describe(node_id))
        entry.do(f"call void @{name}(ptr %table, i64 {self.threads}, ptr {self.partials})")

    def _accumulator_count(self, unit: Unit) -> int:
        if unit.loop is None:
            return 0
        return sum(1 for m in unit.loop.members if self.plan.is_reduction_member(m))

    def describe(self, node_id: int) -> str:
        node = self.graph[node_id]
        text = f"%{node_id}"
        if node.name:
            text += f" {node.name}"
        if node.op == "fused":
            text += f" = fused {{ {node.params['body'].summary([f'%{a}' for a in node.args])} }}"
        else:
            text += f" = {node.op} {', '.join(f'%{a}' for a in node.args)}"
        if node.origin is not None:
            origin = self.graph[node.origin]
            origin_op = origin.params["body"].root[0] if origin.op == "fused" else origin.op
            text += f"  (d {origin_op}{' ' + origin.name if origin.name else ''})"
        if node.loc:
            text += f"  at {node.loc}"
        return text

    # ---- pointers -------------------------------------------------------------------------------

    def base(self, fn: Function, view: View, cache: dict[object, str]) -> str:
        """A pointer to the view's first element (offset applied), loaded once per function."""
        key = (view.slot, view.offset)
        if key not in cache:
            if view.slot not in cache:
                slot_pointer = fn.emit(f"getelementptr ptr, ptr %table, i64 {view.slot}", "slot")
                cache[view.slot] = fn.emit(f"load ptr, ptr {slot_pointer}", _SLOT_NAMES.get(view.slot, "buffer"))
            base = cache[view.slot]
            cache[key] = fn.emit(f"getelementptr i8, ptr {base}, i64 {view.offset}", "at") if view.offset else base
        return cache[key]

    def load(self, fn: Function, pointer: str, offset: str, dtype: str, name: str, group: str = "") -> str:
        """The element of ``dtype`` at ``pointer[offset]``, in a register (in access ``group``, if any)."""
        memory = scalar_ops.memory_type(dtype)
        address = fn.emit(f"getelementptr {memory}, ptr {pointer}, i64 {offset}", f"{name}.p")
        value = fn.emit(f"load {memory}, ptr {address}" + (f", !llvm.access.group {group}" if group else ""), name)
        if dtype == "bool":
            value = fn.emit(f"trunc i8 {value} to i1", name)
        return value

    def store(self, fn: Function, value: str, pointer: str, offset: str, dtype: str, group: str = "") -> None:
        """Write register ``value`` of ``dtype`` to ``pointer[offset]`` (in access ``group``, if any)."""
        memory = scalar_ops.memory_type(dtype)
        if dtype == "bool":
            value = fn.emit(f"zext i1 {value} to i8", "byte")
        address = fn.emit(f"getelementptr {memory}, ptr {pointer}, i64 {offset}", "out.p")
        fn.do(f"store {memory} {value}, ptr {address}" + (f", !llvm.access.group {group}" if group else ""))

    # ---- loop nests -------------------------------------------------------------------------------

    def nest(
        self,
        fn: Function,
        extents: Sequence[int | None],
        strides: dict[Hashable, list[int]],
        payload: Callable[[Offsets], None],
        low: str = "0",
        high: str | None = None,
        before: Callable[[int, Offsets], None] | None = None,
        after: Callable[[int, Offsets], None] | None = None,
        hints: tuple[str, ...] = (),
    ) -> None:
        """Loops over ``extents`` (outermost first; the first from ``low`` to ``high``), keeping for
        each access key its element offset; ``payload(offsets)`` writes the innermost body and
        ``before(d, offsets)`` / ``after(d, offsets)`` run around the loop of dimension d."""
        offsets = dict.fromkeys(strides, "0")

        def level(d: int, offsets: Offsets) -> None:
            if d == len(extents):
                payload(offsets)
                return
            if before:
                before(d, offsets)
            condition, body, latch, done = (fn.label(f"d{d}.{part}") for part in ("cond", "body", "latch", "exit"))
            index, following = fn.fresh(f"i{d}"), fn.fresh(f"i{d}.next")
            entering = fn.current_label
            fn.do(f"br label %{condition}")
            fn.place(condition)
            start = low if d == 0 else "0"
            end = (high if high is not None else str(extents[0])) if d == 0 else str(extents[d])
            fn.emit_as(index, f"phi i64 [ {start}, %{entering} ], [ {following}, %{latch} ]")
            more = fn.emit(f"icmp slt i64 {index}, {end}", "more")
            fn.do(f"br i1 {more}, label %{body}, label %{done}")
            fn.place(body)
            inner: Offsets = {}
            for key, value in offsets.items():
                stride = strides[key][d]
                if stride == 0:
                    inner[key] = value
                    continue
                step = fn.emit(f"mul nsw i64 {index}, {stride}", "step") if stride != 1 else index
                inner[key] = fn.emit(f"add nsw i64 {value}, {step}", "at") if value != "0" else step
            level(d + 1, inner)
            fn.do(f"br label %{latch}")
            fn.place(latch)
            fn.emit_as(following, f"add nuw nsw i64 {index}, 1")
            if d == len(extents) - 1 and hints:
                fn.do(f"br label %{condition}, !llvm.loop {self.module.loop_metadata(*hints)}")
            else:
                fn.do(f"br label %{condition}")
            fn.place(done)
            if after:
                after(d, offsets)

        level(0, offsets)

    def element(self, fn: Function, node_id: int, read: Callable[[int], str]) -> tuple[str, str]:
        """One element of an elementwise or fused node (for a reduction: the element reduced) and
        its dtype; ``read(value_id)`` gives an operand's element."""
        node = self.graph[node_id]
        if node.op == "fused":
            steps = node.params["body"].steps
            body = node.params["body"]
        else:
            steps = ((node.op, tuple(-i - 1 for i in range(len(node.args))), node.attrs, node.type),)
            body = None
        registers: list[str] = []
        for index, (op, operands, _attrs, step_type) in enumerate(steps):
            if OPS[op].is_reduction:
                (k,) = operands
                return (registers[k] if k >= 0 else read(node.args[-k - 1])), (
                    steps[k][3].dtype if k >= 0 else self.graph.type(node.args[-k - 1]).dtype
                )
            values: list[str] = []
            dtypes: list[str] = []
            for k in operands:
                if k >= 0:
                    values.append(registers[k])
                    dtypes.append(steps[k][3].dtype)
                else:
                    operand = node.args[-k - 1]
                    values.append(read(operand))
                    dtypes.append(self.graph.type(operand).dtype)
            targets = scalar_ops.operand_dtypes(op, dtypes, step_type.dtype)
            converted = [scalar_ops.convert(fn, v, s, t) for v, s, t in zip(values, dtypes, targets)]
            name = (body.name(index) if body is not None else node.name) or op
            fn.current_name = name
            result = scalar_ops.emit(fn, op, converted, targets, step_type.dtype)
            fn.current_name = None
            registers.append(result)
        if OPS[node.op].is_reduction:
            return read(node.args[0]), self.graph.type(node.args[0]).dtype
        return registers[-1], steps[-1][3].dtype

    def reduction_op(self, node_id: int) -> str:
        """The reduction a node (a reduction, or a fused region ending in one) computes."""
        node = self.graph[node_id]
        return node.params["body"].root[0] if node.op == "fused" else node.op

    def identity(self, op: str, dtype: str) -> str:
        """The value reduction ``op`` starts from (its strategy's)."""
        rule = strategy_of(op).identity
        assert rule is not None, f"{op} is not a reduction"
        return rule(dtype)

    def combine(self, fn: Function, op: str, dtype: str, accumulator: str, value: str) -> str:
        """One step of reduction ``op``: ``accumulator`` combined with ``value`` (its strategy's)."""
        rule = strategy_of(op).combine
        assert rule is not None, f"{op} is not a reduction"
        return rule(fn, dtype, accumulator, value)

    def outlined(self, comment: str) -> Function:
        self.loops += 1
        return self.module.function(
            f"internal void @{self.prefix}_loop{self.loops}(ptr noalias %table, i64 %start, i64 %end, "
            f"ptr noalias %partials) noinline",
            comment,
        )  # inlined, a long graph's loops make one huge block

    def run_outlined(self, function: Function, extent: int, parallel: bool, granule: int = 1) -> None:
        name = function.signature.split("@")[1].split("(")[0]
        self.entry.note(function.comment + (", on all threads" if parallel else ""))
        if parallel:
            self.uses_threads = True
            self.parallel_loops += 1
            self.entry.do(
                f"call void @{self.prefix}_parallel(ptr @{name}, ptr %table, i64 {extent}, "
                f"ptr {self.partials}, i64 {self.row_bytes}, i64 {self.threads}, i64 {granule})"
            )
        else:
            self.entry.do(f"call void @{name}(ptr %table, i64 0, i64 {extent}, ptr {self.partials})")

    # ---- loops ------------------------------------------------------------------------------------

    def _loop(self, loop: Loop) -> None:
        plan = self.plan
        members = set(loop.members)
        shape = loop.shape
        reads: dict[int, View] = {}  # operand id -> its view broadcast to the loop's shape
        for m in loop.members:
            for a in self.graph[m].args:
                if a not in members and a not in plan.immediates:
                    reads[a] = plan.views[a].broadcast_to(shape)
        writes = {m: plan.views[m] for m in loop.members if m in plan.stored and not plan.is_reduction_member(m)}
        keys = [("r", a) for a in reads] + [("w", m) for m in writes]
        views = list(reads.values()) + list(writes.values())
        extents, strides = coalesce(shape, [v.strides for v in views])
        comment = f"loop over {_shape_text(shape)}: {len(loop.members)} node(s), {loop.steps} step(s)"
        fn = self.outlined(comment)
        cache: dict[object, str] = {}
        pointers = {key: self.base(fn, view, cache) for key, view in zip(keys, views)}
        reductions = [m for m in loop.members if plan.is_reduction_member(m)]
        slots: dict[int, str] = {}
        for m in reductions:
            dtype = self.graph.type(m).dtype
            slots[m] = fn.alloca(scalar_ops.register_type(dtype), "acc")
            fn.do(
                f"store {scalar_ops.register_type(dtype)} {self.identity(self.reduction_op(m), dtype)}, ptr {slots[m]}"
            )
        threaded = (
            bool(extents)
            and extents[0] > 1
            and math.prod(shape) >= self.parallel_min_elements
            and math.prod(shape) * loop.steps >= self.parallel_min_work
        )
        dtypes = {self.graph.type(m).dtype for m in loop.members}
        hints = loop_hints.hints(loop.shape, loop.steps, len(keys), dtypes)
        group = self.module.access_group() if loop_hints.vectorized(loop.shape) else ""
        if group:  # see loop_hints.py
            hints += (f'!{{!"llvm.loop.parallel_accesses", {group}}}',)
        payload = self._loop_payload(fn, loop, pointers, writes, slots, group)
        widenable = len(extents) == 1 and not reductions and {s[0] for s in strides} <= {0, 1}
        floats = dtypes - {"bool"}  # a bool is widened too: a byte in memory, an i1 in a register
        width = loop_hints.explicit_width(loop.shape, loop.steps, len(keys), floats) if widenable else 0
        overlap = widen.writes_apart_from_reads(reads.values(), writes.values())
        copies = widen.copies(width, math.prod(shape)) if overlap else 1
        widening = (width, min(floats, default=""), overlap, copies)
        widen.nest_widened(self, fn, extents, dict(zip(keys, strides)), payload, hints, widening)
        for index, m in enumerate(reductions):
            t = scalar_ops.register_type(self.graph.type(m).dtype)
            value = fn.emit(f"load {t}, ptr {slots[m]}", "acc")
            place = fn.emit(f"getelementptr i8, ptr %partials, i64 {index * _ACCUMULATOR_BYTES}", "partial")
            fn.do(f"store {t} {value}, ptr {place}")
        fn.do("ret void")
        extent, granule = (extents[0] if extents else 1), (_VECTOR_GRANULE if len(extents) == 1 else 1)
        self.run_outlined(fn, extent, threaded, granule)
        rows = parallel.task_layout(extent, granule, self.max_threads)[1] if threaded else 1
        for index, m in enumerate(reductions):
            self.combine_partials(m, self.partials, self.row_bytes, index * _ACCUMULATOR_BYTES, rows)

    def _loop_payload(
        self,
        fn: Function,
        loop: Loop,
        pointers: dict[tuple[str, int], str],
        writes: dict[int, View],
        slots: dict[int, str],
        group: str,
    ) -> Callable[[Offsets], None]:
        """The innermost body of a loop: every member's element, stored or accumulated as planned."""
        plan = self.plan

        def payload(offsets: Offsets) -> None:
            registers: dict[int, str] = {}

            def read(value_id: int) -> str:
                if value_id in registers:
                    return registers[value_id]
                if value_id in plan.immediates:
                    return scalar_ops.literal(plan.immediates[value_id], self.graph.type(value_id).dtype)
                register = self.load(
                    fn,
                    pointers[("r", value_id)],
                    offsets[("r", value_id)],
                    self.graph.type(value_id).dtype,
                    self.graph[value_id].name or f"in{value_id}",
                    group,
                )
                registers[value_id] = register
                return register

            for m in loop.members:
                fn.note(self.describe(m))
                value, dtype = self.element(fn, m, read)
                if m in slots:
                    op = self.reduction_op(m)
                    out_dtype = self.graph.type(m).dtype
                    value = scalar_ops.convert(fn, value, dtype, out_dtype)
                    t = scalar_ops.register_type(out_dtype)
                    accumulator = fn.emit(f"load {t}, ptr {slots[m]}", "acc")
                    fn.do(f"store {t} {self.combine(fn, op, out_dtype, accumulator, value)}, ptr {slots[m]}")
                    continue
                registers[m] = value
                if m in writes:
                    self.store(fn, value, pointers[("w", m)], offsets[("w", m)], dtype, group)

        return payload

    def combine_partials(self, node_id: int, partials: str, row_bytes: int, offset: int, rows: int) -> None:
        """The reduction's result from ``rows`` partials (one row of ``row_bytes`` per task or
        block, this reduction's at ``offset`` in each), combined in row order (parallel.py)."""
        entry = self.entry
        dtype = self.graph.type(node_id).dtype
        t = scalar_ops.register_type(dtype)
        op = self.reduction_op(node_id)
        view = self.plan.views[node_id]
        total = entry.alloca(t, "total")
        entry.do(f"store {t} {self.identity(op, dtype)}, ptr {total}")

        def payload(offsets: Offsets) -> None:
            row = entry.emit(f"mul i64 {offsets['row']}, {row_bytes}", "row")
            at = entry.emit(f"add i64 {row}, {offset}", "at")
            place = entry.emit(f"getelementptr i8, ptr {partials}, i64 {at}", "partial")
            partial = entry.emit(f"load {t}, ptr {place}", "partial")
            so_far = entry.emit(f"load {t}, ptr {total}", "total")
            entry.do(f"store {t} {self.combine(entry, op, dtype, so_far, partial)}, ptr {total}")

        self.nest(entry, [None], {"row": [1]}, payload, high=str(rows))
        result = entry.emit(f"load {t}, ptr {total}", self.graph[node_id].name or "total")
        self.store(entry, result, self.base(entry, view, {}), "0", dtype)

    # ---- reductions over some axes ----------------------------------------------------------------

    def _reduction(self, node_id: int) -> None:
        plan = self.plan
        node = self.graph[node_id]
        params = dict(node.params["body"].root[2]) if node.op == "fused" else node.params
        shape = plan.reduction_operand_shape(node_id)
        axes = params["axis"]
        kept = tuple(1 if d in axes else n for d, n in enumerate(shape))
        result = plan.views[node_id]
        out = type(result)(result.slot, result.offset, kept, contiguous_strides(kept), result.dtype).broadcast_to(shape)
        reads = {a: plan.views[a].broadcast_to(shape) for a in node.args if a not in plan.immediates}
        is_reduced = [d in axes for d in range(len(shape))]
        keys = [("r", a) for a in reads] + [("w", node_id)]
        views = list(reads.values()) + [out]
        # coalesce reduced and kept dimensions separately: a merged dimension must be one or the other
        extents, strides, reduced = coalesce_marked(shape, [v.strides for v in views], is_reduced)
        fn = self.outlined(self.describe(node_id))
        cache: dict[object, str] = {}
        pointers = {key: self.base(fn, view, cache) for key, view in zip(keys, views)}
        first_reduced = reduced.index(True) if True in reduced else len(extents)
        nest = ReductionNest(self, fn, node_id, pointers, extents, dict(zip(keys, strides)), first_reduced)
        if all(reduced[first_reduced:]):  # the reduced axes are innermost: accumulate in a register
            nest.in_register()
        else:
            nest.in_memory(math.prod(d for d, r in zip(shape, is_reduced) if not r))
        fn.do("ret void")
        self.run_outlined(fn, extents[0] if extents else 1, False)

    # ---- NumPy fallbacks and output copies --------------------------------------------------------

    def _fallback(self, node_id: int) -> None:
        entry = self.entry
        index = len(self.plan.fallbacks)
        self.plan.add_fallback(node_id)
        why = self.plan.fallback_notes.get(node_id, f"{self.graph[node_id].op} has no native lowering here")
        entry.note(f"{self.describe(node_id)}\n(run by NumPy: {why})")
        slot = entry.emit("getelementptr ptr, ptr %table, i64 1", "callback.p")
        callback = entry.emit(f"load ptr, ptr {slot}", "callback")
        entry.do(f"call void {callback}(i64 {index})")


# unit kind -> the module that writes its code
_EMITTERS: dict[str, Callable[[Codegen, int], None]] = {
    "matmul": emit_gemm,
    "native_loop": loops.emit_native,
    "scatter": loop_scatter.emit_scatter,
    "lapack": emit_lapack,
    "native": emit_native,
    "gather": emit_gather,
    "copy": emit_relayout,
    "chain": blocked.emit_chain,
}


def _shape_text(shape: tuple[int, ...]) -> str:
    return f"[{','.join(map(str, shape))}]"
