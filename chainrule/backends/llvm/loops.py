"""Loops as native loops: ``loop`` (scan, fori_loop), ``while`` and ``while_vjp`` (while_loop's
reverse mode) of ``chainrule.ir.control`` on the LLVM backend.

A loop node's bodies are planned as graphs of their own (``Lowering.plan``) and written into the
kernel's module as internal functions (each body's entry and its units), called from a counted
loop in an outlined function of the kernel; the optimizer may inline them. The module's size does
not depend on the trip count, which is one literal (or, for ``while_vjp``, a value read at run
time). Each step:

- stages the step index and the 0-d inputs in the body's arena and points the body's table at
  its array inputs: the carry (in the loop's scratch memory), ``xs[t]`` (a pointer offset into
  the stacked operand, or a copy when the slice is strided), the closed-over values (bound once);
- calls the body; a large carry is written by the body into a second buffer and the two swap
  (double buffering), a small one (in the body's arena) is copied back into the carry's buffer;
- writes ``ys[t]`` and the tape entry ``tape[t]`` (the carry the step started from) straight into
  the loop's packed result (a large ``y`` of the packed dtype: the body writes it there itself).

``while`` calls the condition's body before each step. ``while_vjp`` runs the forward steps again
for the trip count the forward loop recorded, keeping their carries in a tape allocated once with
``malloc`` (its size is known then: count x carry bytes), then the backward loop over it, and frees
it. No step allocates memory.

A body containing a node that runs through NumPy (a callback) keeps today's Python-driven loop
(``control.py``) for that loop node only; ``plan_native`` says why, and the kernel's source says it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from chainrule.backends.llvm import scalar_ops
from chainrule.backends.llvm.gather import checks_at_run_time
from chainrule.backends.llvm.irtext import Function
from chainrule.backends.llvm.loop_steps import (
    BodyCall,
    BodyPlan,
    Carry,
    StepSlice,
    at,
    copy_elements,
    counted,
    gather,
    while_steps,
)
from chainrule.backends.llvm.plan import ALIGNMENT
from chainrule.backends.llvm.views import View
from chainrule.ir.control import Body, loop_leaves, packed_type, while_leaves
from chainrule.ir.types import TensorType

if TYPE_CHECKING:
    from chainrule.backends.llvm.codegen import Codegen
    from chainrule.backends.llvm.lower import Lowering

NATIVE_OPS = ("loop", "while", "while_vjp", "switch")
_MALLOC = "declare noalias ptr @malloc(i64)"
_FREE = "declare void @free(ptr)"


@dataclass
class NativeLoop:
    """A control node run as a native loop: its bodies by role and its scratch memory's layout."""

    node_id: int
    op: str
    bodies: dict[str, BodyPlan]
    places: dict[tuple[str, int], int]  # (what, leaf) -> byte offset in the scratch
    scratch_bytes: int
    longest: int
    scratch_offset: int = -1  # in the kernel's arena, set when the kernel's memory is planned


# ---- planning ---------------------------------------------------------------------------------


def _roles(op: str, attrs: dict[str, Any]) -> dict[str, Body]:
    if op == "loop":
        return {"body": attrs["body"]}
    if op == "while":
        return {"cond": attrs["cond"], "body": attrs["body"]}
    if op == "switch":
        return {f"branch{b}": branch for b, branch in enumerate(attrs["branches"])}
    return {"body": attrs["body"], "backward": attrs["backward"]}


def plan_native(lowering: Lowering, node_id: int) -> NativeLoop | str:
    """The native plan of a control node, or why it keeps the Python-driven loop."""
    graph = lowering.graph
    node = graph[node_id]
    operand_types = [graph.type(a) for a in node.args]
    dtypes = {t.dtype for t in operand_types} | {node.type.dtype}
    bodies = _roles(node.op, node.params)
    for body in bodies.values():
        dtypes |= {t.dtype for t in body.input_types + body.output_types}
    driven = "a Python-driven " + ("switch calling its branch's native code" if node.op == "switch" else "loop")
    unsupported = sorted(d for d in dtypes if d not in scalar_ops.TYPES)
    if unsupported:
        return f"{driven}: the llvm backend has no {', '.join(unsupported)} arithmetic"
    if node.op == "while_vjp" and len(node.params["backward"].output_types) != _backward_carry(node.params):
        return f"{driven}: its backward body stacks per-step outputs"
    planned: dict[str, Lowering] = {}
    for role, body in bodies.items():
        inner = type(lowering)(body.graph, body.graph.name)
        inner.plan()
        numpy_units = [
            u.node_id
            for u in inner.units
            if u.kind == "fallback" or (u.kind in ("gather", "native") and checks_at_run_time(body.graph, u.node_id))
        ]
        if numpy_units:
            culprit = body.graph[numpy_units[0]]
            once = "" if node.op == "switch" else f" calling its {role}'s native code once a step"
            return f"{driven}{once}: the {role} runs %{numpy_units[0]} {culprit.op} through NumPy"
        planned[role] = inner
    places: dict[tuple[str, int], int] = {}
    scratch = [0]

    def take(key: tuple[str, int], nbytes: int) -> None:
        places[key] = scratch[0]
        scratch[0] += max(ALIGNMENT, -(-nbytes // ALIGNMENT) * ALIGNMENT)

    plans = {}
    for role, inner in planned.items():
        take((role, 0), inner.arena_bytes)
        data = b"".join(inner.constant_chunks) or b"\0" * 8
        plans[role] = BodyPlan(inner, places[(role, 0)], lowering.place_constant_bytes(data))
    for what, leaves in _buffers(node.op, node.params, operand_types, planned).items():
        for index, leaf in enumerate(leaves):
            if leaf is not None:
                take((what, index), leaf.nbytes)
    longest = max(inner.longest_loop() for inner in planned.values())
    return NativeLoop(node_id, node.op, plans, places, scratch[0], longest)


def _backward_carry(attrs: dict[str, Any]) -> int:
    """The backward carry of a ``while_vjp``: the cotangents of the float carry and float consts."""
    body: Body = attrs["body"]
    n_carry = len(body.output_types)
    return len(attrs["backward"].input_types) - 1 - n_carry - (len(body.input_types) - 1 - n_carry)


def _buffers(
    op: str, attrs: dict[str, Any], types: list[TensorType], planned: dict[str, Lowering]
) -> dict[str, list[TensorType | None]]:
    """The scratch buffers a loop needs, by kind: a carry's buffer ("carry") and, when the body
    writes it through a pointer, its second buffer ("next"); copies of strided per-step inputs and
    closed-over arrays ("x", "const")."""
    if op == "loop":
        n_carry, n_xs = attrs["n_carry"], attrs["n_xs"]
        carry, xs, consts = types[:n_carry], types[n_carry : n_carry + n_xs], types[n_carry + n_xs :]
        step_xs: list[TensorType | None] = [TensorType(t.shape[1:], t.dtype) for t in xs]
        outputs = planned["body"].outputs
        packed = packed_type(loop_leaves(types, attrs)).dtype
        ys = [TensorType(o.shape, o.dtype) for o in outputs[n_carry:]]
        return {
            "carry": list(carry),
            "next": [t if outputs[k].slot is not None else None for k, t in enumerate(carry)],
            "x": step_xs,
            "const": list(consts),
            # a large y of another dtype than the packed result: written here, converted into it
            "y": [t if outputs[n_carry + j].slot is not None and t.dtype != packed else None for j, t in enumerate(ys)],
        }
    if op == "switch":
        outputs = planned["branch0"].outputs
        packed = packed_type(attrs["branches"][0].output_types).dtype
        ys = [TensorType(o.shape, o.dtype) for o in outputs]
        large = [any(p.outputs[k].slot is not None for p in planned.values()) for k in range(len(ys))]
        return {"const": list(types[1:]), "y": [t if big and t.dtype != packed else None for t, big in zip(ys, large)]}
    if op == "while":
        n_carry = attrs["n_carry"]
        outputs = planned["body"].outputs
        carry = types[:n_carry]
        return {
            "carry": list(carry),
            "next": [t if outputs[k].slot is not None else None for k, t in enumerate(carry)],
            "const": list(types[n_carry:]),
        }
    n_backward = _backward_carry(attrs)
    n_carry = len(attrs["body"].output_types)
    seeds, carry = types[:n_backward], types[n_backward + 1 : n_backward + 1 + n_carry]
    forward, backward = planned["body"].outputs, planned["backward"].outputs
    return {
        "carry": list(carry),
        "next": [t if forward[k].slot is not None else None for k, t in enumerate(carry)],
        "bcarry": list(seeds),
        "bnext": [t if backward[k].slot is not None else None for k, t in enumerate(seeds)],
        "const": list(types[n_backward + 1 + n_carry :]),
    }


# ---- emitting ---------------------------------------------------------------------------------


def emit_native(gen: Codegen, node_id: int) -> None:
    """The loop (planned by ``plan_native``) as an outlined function of the kernel, called once from its entry."""
    native = gen.plan.native_loops[node_id]
    gen.loops += 1
    node = gen.graph[native.node_id]
    name = f"{gen.prefix}_native{gen.loops}"
    comment = f"{gen.describe(native.node_id)}\n(a native {_kind(node.op, node.params)})"
    fn = gen.module.function(f"internal void @{name}(ptr noalias %table, i64 %threads)", comment)
    emitter = _Emitter(gen, fn, native)
    kinds = {"loop": emitter.scan, "while": emitter.while_loop, "while_vjp": emitter.while_vjp}
    kinds["switch"] = emitter.switch
    kinds[node.op]()
    fn.do("ret void")
    gen.entry.note(comment)
    gen.entry.do(f"call void @{name}(ptr %table, i64 {gen.threads})")


def _kind(op: str, attrs: dict[str, Any]) -> str:
    if op == "switch":
        return "switch: " + ", ".join(f"{{{b.graph.name}}}" for b in attrs["branches"])
    if op == "loop":
        direction = "backwards" if attrs["reverse"] else "forwards"
        return f"loop of {attrs['length']} steps, {direction}, body {{{attrs['body'].graph.name}}} called each step"
    if op == "while":
        return f"while loop: condition {{{attrs['cond'].graph.name}}}, body {{{attrs['body'].graph.name}}}"
    return (
        f"while loop's reverse mode: {{{attrs['body'].graph.name}}} run again for the recorded trip count "
        f"onto a tape, then {{{attrs['backward'].graph.name}}} backwards over it"
    )


class _Emitter:
    """Writes one native loop into ``fn`` (see the module doc)."""

    def __init__(self, gen: Codegen, fn: Function, native: NativeLoop):
        self.gen, self.fn, self.native = gen, fn, native
        self.graph = gen.graph
        self.node = gen.graph[native.node_id]
        self.cache: dict[object, str] = {}
        arena = gen.base(fn, View(0, 0, (), (), "uint8"), self.cache)
        self.scratch = at(fn, arena, native.scratch_offset, "scratch")
        self.constants = gen.base(fn, View(2, 0, (), (), "uint8"), self.cache)
        result = gen.plan.views[native.node_id]
        self.result = gen.base(fn, result, self.cache)
        self.packed = result.dtype

    def place(self, what: str, index: int) -> str:
        return at(self.fn, self.scratch, self.native.places[(what, index)], what)

    def operand(self, position: int) -> tuple[View, str]:
        view = self.gen.plan.views[self.node.args[position]]
        return view, self.gen.base(self.fn, view, self.cache)

    def call(self, role: str) -> BodyCall:
        return BodyCall(self.gen, self.fn, self.native.bodies[role], self.scratch, self.constants)

    def carries(self, positions: range, what: str = "carry") -> list[Carry]:
        """The carry leaves, their buffers filled from the operands at ``positions``."""
        carries = []
        for k, position in enumerate(positions):
            view, pointer = self.operand(position)
            buffer = self.place(what, k)
            gather(self.gen, self.fn, pointer, view, buffer)
            key = ("next" if what == "carry" else f"{what[0]}next", k)
            second = self.place(*key) if key in self.native.places else None
            carries.append(Carry(self.fn, self.graph.type(self.node.args[position]), buffer, second))
        return carries

    def bind_consts(self, calls: list[BodyCall], positions: range, first_input: int) -> None:
        """The closed-over values, bound once: their inputs start at ``first_input`` in each body."""
        for k, position in enumerate(positions):
            view, pointer = self.operand(position)
            if view.shape and not view.is_contiguous:
                copy = self.place("const", k)
                gather(self.gen, self.fn, pointer, view, copy)
                pointer = copy
            for call in calls:
                call.bind(first_input + k, pointer)

    def step(
        self,
        call: BodyCall,
        t: str,
        carries: list[Carry],
        xs: list[StepSlice],
        ys: list[int] | None = None,
        tapes: list[int] | None = None,
    ) -> None:
        """One step: ``t`` and the carry in, the body called, the carry out; ``ys`` and ``tapes`` are
        element offsets in the packed result where the stacked outputs and the tape start."""
        fn, gen = self.fn, self.gen
        call.stage(0, t)
        for k, carry in enumerate(carries):
            current = carry.current()
            call.bind(1 + k, current)
            if tapes is not None:
                self.store_leaf(current, carry.leaf, tapes[k], t)
            if call.writes_through_pointer(k):
                call.direct(k, carry.next())
        for i, slice_at in enumerate(xs):
            call.bind(1 + len(carries) + i, slice_at(t))
        copied = self.route_outputs(call, len(carries), ys or [], t)
        call.call()
        for k, carry in enumerate(carries):
            if call.writes_through_pointer(k):
                carry.swap()
            else:
                copy_elements(
                    gen, fn, call.output(k), carry.leaf.dtype, carry.current(), carry.leaf.dtype, carry.leaf.size
                )
        self.copy_outputs(copied, t)

    def route_outputs(self, call: BodyCall, first: int, starts: list[int], t: str) -> list[tuple[str, int, str, int]]:
        """Before the call: outputs ``first, first+1, ...`` go to entry ``t`` of the packed result's
        leaves at element offsets ``starts``. A large one of the packed dtype is written there by the
        body; the others are copied (converted) after the call: (place, start, dtype, size) each."""
        copied = []
        for j, start in enumerate(starts):
            k = first + j
            leaf = call.lowering.outputs[k]
            size = math.prod(leaf.shape)
            if not call.writes_through_pointer(k):
                copied.append((call.output(k), start, leaf.dtype, size))
            elif leaf.dtype == self.packed:
                call.direct(k, self.leaf_pointer(start, t, size))
            else:
                call.direct(k, self.place("y", j))
                copied.append((self.place("y", j), start, leaf.dtype, size))
        return copied

    def copy_outputs(self, copied: list[tuple[str, int, str, int]], t: str) -> None:
        for place, start, dtype, size in copied:
            copy_elements(self.gen, self.fn, place, dtype, self.leaf_pointer(start, t, size), self.packed, size)

    def leaf_pointer(self, start: int, t: str, size: int) -> str:
        """Where entry ``t`` of a stacked leaf starting at element ``start`` of the result is."""
        at = self.fn.emit(f"mul nsw i64 {t}, {size}", "row")
        at = self.fn.emit(f"add nsw i64 {at}, {start}", "row")
        memory = scalar_ops.memory_type(self.packed)
        return self.fn.emit(f"getelementptr {memory}, ptr {self.result}, i64 {at}", "row.p")

    def store_leaf(self, source: str, leaf: TensorType, start: int, t: str = "0") -> None:
        copy_elements(
            self.gen, self.fn, source, leaf.dtype, self.leaf_pointer(start, t, leaf.size), self.packed, leaf.size
        )

    # ---- the three kinds --------------------------------------------------------------------

    def scan(self) -> None:
        attrs = self.node.params
        n_carry, n_xs, length = attrs["n_carry"], attrs["n_xs"], attrs["length"]
        operand_types = [self.graph.type(a) for a in self.node.args]
        leaves = loop_leaves(operand_types, attrs)
        starts = list(np.cumsum([0] + [t.size for t in leaves]))
        call = self.call("body")
        carries = self.carries(range(n_carry))
        self.bind_consts([call], range(n_carry + n_xs, len(operand_types)), 1 + n_carry + n_xs)
        xs = [self.stacked_slice(n_carry + i, i) for i in range(n_xs)]
        n_ys = len(leaves) - n_carry - (n_carry if attrs["tape"] else 0)
        ys = [int(s) for s in starts[n_carry : n_carry + n_ys]]
        tapes = [int(s) for s in starts[n_carry + n_ys : -1]] if attrs["tape"] else None

        def step(t: str) -> None:
            self.step(call, t, carries, xs, ys, tapes)

        counted(self.fn, str(length), attrs["reverse"], step)
        for k, carry in enumerate(carries):
            self.store_leaf(carry.current(), carry.leaf, int(starts[k]))

    def stacked_slice(self, position: int, index: int) -> StepSlice:
        """Step ``t``'s slice of the stacked operand at ``position``: a pointer into it, or a copy."""
        view, pointer = self.operand(position)
        step_view = View(view.slot, view.offset, view.shape[1:], view.strides[1:], view.dtype)
        byte_stride = view.strides[0] * view.itemsize

        def slice_at(t: str) -> str:
            at = self.fn.emit(f"mul nsw i64 {t}, {byte_stride}", "x.at")
            start = self.fn.emit(f"getelementptr i8, ptr {pointer}, i64 {at}", "x")
            if step_view.is_contiguous:
                return start
            copy = self.place("x", index)
            gather(self.gen, self.fn, start, step_view, copy)
            return copy

        return slice_at

    def switch(self) -> None:
        """The branch the index picks (clamped to the branches, as jax.lax.switch does), called once."""
        fn, gen = self.fn, self.gen
        branches = self.node.params["branches"]
        index_view, index_pointer = self.operand(0)
        index = gen.load(fn, index_pointer, "0", index_view.dtype, "index")
        index = scalar_ops.convert(fn, index, index_view.dtype, "int64")
        below = fn.emit(f"icmp slt i64 {index}, 0", "below")
        index = fn.emit(f"select i1 {below}, i64 0, i64 {index}", "index")
        above = fn.emit(f"icmp sgt i64 {index}, {len(branches) - 1}", "above")
        index = fn.emit(f"select i1 {above}, i64 {len(branches) - 1}, i64 {index}", "index")
        calls = [self.call(f"branch{b}") for b in range(len(branches))]
        self.bind_consts(calls, range(1, len(self.node.args)), 0)
        starts = [int(s) for s in np.cumsum([0] + [t.size for t in branches[0].output_types])[:-1]]
        labels = [fn.label(f"branch{b}") for b in range(len(branches))]
        done = fn.label("switch.done")
        cases = " ".join(f"i64 {b}, label %{label}" for b, label in enumerate(labels))
        fn.do(f"switch i64 {index}, label %{labels[0]} [ {cases} ]")
        for call, label in zip(calls, labels):
            fn.place(label)
            copied = self.route_outputs(call, 0, starts, "0")
            call.call()
            self.copy_outputs(copied, "0")
            fn.do(f"br label %{done}")
        fn.place(done)

    def while_loop(self) -> None:
        n_carry = self.node.params["n_carry"]
        operand_types = [self.graph.type(a) for a in self.node.args]
        test, call = self.call("cond"), self.call("body")
        carries = self.carries(range(n_carry))
        consts = range(n_carry, len(operand_types))
        self.bind_consts([test], consts, n_carry)
        self.bind_consts([call], consts, 1 + n_carry)
        fn = self.fn

        def condition() -> str:
            for k, carry in enumerate(carries):
                test.bind(k, carry.current())
            test.call()
            dtype = test.lowering.outputs[0].dtype
            value = self.gen.load(fn, test.output(0), "0", dtype, "holds")
            return scalar_ops.convert(fn, value, dtype, "bool")

        count = while_steps(fn, condition, lambda t: self.step(call, t, carries, []))
        leaves = while_leaves(operand_types, self.node.params)
        start = 0
        for carry in carries:
            self.store_leaf(carry.current(), carry.leaf, start)
            start += carry.leaf.size
        self.gen.store(fn, scalar_ops.convert(fn, count, "int64", self.packed), self.result, str(start), self.packed)
        assert start + 1 == sum(t.size for t in leaves), "a while loop's result is its carry and its count"

    def while_vjp(self) -> None:
        fn, gen = self.fn, self.gen
        attrs = self.node.params
        n_backward = _backward_carry(attrs)
        n_carry = len(attrs["body"].output_types)
        operand_types = [self.graph.type(a) for a in self.node.args]
        count_view, count_pointer = self.operand(n_backward)
        count = gen.load(fn, count_pointer, "0", count_view.dtype, "count")
        count = scalar_ops.convert(fn, count, count_view.dtype, "int64")
        forward, backward = self.call("body"), self.call("backward")
        carries = self.carries(range(n_backward + 1, n_backward + 1 + n_carry))
        consts = range(n_backward + 1 + n_carry, len(operand_types))
        self.bind_consts([forward], consts, 1 + n_carry)
        self.bind_consts([backward], consts, 1 + n_backward + n_carry)
        fn.declare(_MALLOC)
        fn.declare(_FREE)
        tapes = []
        for carry in carries:  # the tape: count carries of each leaf, allocated once
            nbytes = fn.emit(f"mul nsw i64 {count}, {max(carry.leaf.nbytes, 1)}", "tape.bytes")
            tapes.append(fn.emit(f"call ptr @malloc(i64 {nbytes})", "tape"))

        def forward_step(t: str) -> None:
            for carry, tape in zip(carries, tapes):
                place = fn.emit(f"mul nsw i64 {t}, {carry.leaf.nbytes}", "tape.at")
                place = fn.emit(f"getelementptr i8, ptr {tape}, i64 {place}", "tape.row")
                copy_elements(gen, fn, carry.current(), carry.leaf.dtype, place, carry.leaf.dtype, carry.leaf.size)
            self.step(forward, t, carries, [])

        counted(fn, count, False, forward_step)
        seeds = self.carries(range(n_backward), "bcarry")

        def tape_slice(tape: str, nbytes: int) -> StepSlice:
            def slice_at(t: str) -> str:
                at = fn.emit(f"mul nsw i64 {t}, {nbytes}", "tape.at")
                return fn.emit(f"getelementptr i8, ptr {tape}, i64 {at}", "tape.row")

            return slice_at

        xs = [tape_slice(tape, carry.leaf.nbytes) for tape, carry in zip(tapes, carries)]
        counted(fn, count, True, lambda t: self.step(backward, t, seeds, xs))
        for tape in tapes:
            fn.do(f"call void @free(ptr {tape})")
        start = 0
        for seed in seeds:
            self.store_leaf(seed.current(), seed.leaf, start)
            start += seed.leaf.size
        expected = packed_type(attrs["backward"].output_types).size
        assert start == expected, "a while loop's cotangents are the backward loop's carry"
