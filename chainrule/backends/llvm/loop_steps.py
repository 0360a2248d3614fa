"""The pieces a native loop (``loops.py``) is written with: a body called through its own table of
pointers (``BodyCall``), a carry leaf between steps (``Carry``), the counted and conditional loop
skeletons, and copies (strided gathers, contiguous copies converting dtypes)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from chainrule.backends.llvm import scalar_ops
from chainrule.backends.llvm.irtext import Function
from chainrule.backends.llvm.strides import coalesce, contiguous_strides
from chainrule.backends.llvm.views import View
from chainrule.ir.types import TensorType

if TYPE_CHECKING:
    from chainrule.backends.llvm.codegen import Codegen
    from chainrule.backends.llvm.lower import Lowering

_MEMCPY = "declare void @llvm.memcpy.p0.p0.i64(ptr noalias, ptr noalias, i64, i1 immarg)"


@dataclass
class BodyPlan:
    """A body planned as a graph of its own, and where its memory is."""

    lowering: Lowering
    arena: int  # byte offset of its arena in the loop's scratch
    constants: View  # its constants, placed among the kernel's


class BodyCall:
    """One body as the loop calls it: its own table of pointers (on the stack) and arena (in the
    loop's scratch); its inputs staged or pointed at, its outputs found after the call."""

    def __init__(self, gen: Codegen, fn: Function, plan: BodyPlan, scratch: str, constants: str):
        self.gen, self.fn, self.lowering = gen, fn, plan.lowering
        body_gen = type(gen)(
            plan.lowering,
            f"{gen.prefix}_body{len(gen.module.functions)}",  # each body adds functions: unique
            gen.max_threads,
            gen.parallel_min_work,
            gen.parallel_min_elements,
            gen.module,
        )
        self.symbol = body_gen.emit("internal ")
        self.table = fn.alloca(f"[{plan.lowering.table_size} x ptr]", "body.table")
        self.arena = at(fn, scratch, plan.arena, "body.arena")
        self.point(0, self.arena)
        self.point(1, "null")  # no callback: a body with NumPy nodes is not run natively
        self.point(2, at(fn, constants, plan.constants.offset, "body.constants"))

    def point(self, slot: int, pointer: str) -> None:
        place = self.fn.emit(f"getelementptr ptr, ptr {self.table}, i64 {slot}", "body.slot")
        self.fn.do(f"store ptr {pointer}, ptr {place}")

    def bind(self, k: int, pointer: str) -> None:
        """Input ``k`` is the contiguous data at ``pointer`` (a 0-d one is copied into its stage)."""
        spec = self.lowering.inputs[k]
        if spec.staged is None:
            assert spec.slot is not None, f"input {k} of a body has neither a stage nor a slot"
            self.point(spec.slot, pointer)
            return
        self.stage(k, self.gen.load(self.fn, pointer, "0", spec.dtype, "in"))

    def stage(self, k: int, value: str) -> None:
        spec = self.lowering.inputs[k]
        assert spec.staged is not None, f"input {k} of a body is not staged"
        place = at(self.fn, self.arena, spec.staged.offset, "stage")
        self.gen.store(self.fn, value, place, "0", spec.dtype)

    def writes_through_pointer(self, k: int) -> bool:
        return self.lowering.outputs[k].slot is not None

    def direct(self, k: int, pointer: str) -> None:
        """Output ``k`` (a large one) is to be written at ``pointer``."""
        slot = self.lowering.outputs[k].slot
        assert slot is not None, f"output {k} of a body is computed in its arena"
        self.point(slot, pointer)

    def output(self, k: int) -> str:
        """Where output ``k`` (a small one) is after the call."""
        view = self.lowering.outputs[k].arena_view
        assert view is not None, f"output {k} of a body has no place in its arena"
        return at(self.fn, self.arena, view.offset, "body.out")

    def call(self) -> None:
        self.fn.do(f"call void @{self.symbol}(ptr {self.table}, i64 %threads)")


class Carry:
    """A carry leaf between steps: its buffer and, when the body writes it through a pointer, a
    second one; the two swap after each step (pointers on the stack, in registers once optimized)."""

    def __init__(self, fn: Function, leaf: TensorType, buffer: str, second: str | None):
        self.fn, self.leaf = fn, leaf
        self.current_place = fn.alloca("ptr", "carry.at")
        fn.do(f"store ptr {buffer}, ptr {self.current_place}")
        self.next_place: str | None = None
        if second is not None:
            self.next_place = fn.alloca("ptr", "carry.next")
            fn.do(f"store ptr {second}, ptr {self.next_place}")

    def current(self) -> str:
        return self.fn.emit(f"load ptr, ptr {self.current_place}", "carry")

    def next(self) -> str:
        assert self.next_place is not None, "a carry copied back has no second buffer"
        return self.fn.emit(f"load ptr, ptr {self.next_place}", "carry.next")

    def swap(self) -> None:
        assert self.next_place is not None, "a carry copied back has no second buffer"
        current, following = self.current(), self.next()
        self.fn.do(f"store ptr {following}, ptr {self.current_place}")
        self.fn.do(f"store ptr {current}, ptr {self.next_place}")


# A per-step input: the step index -> a pointer to that step's (contiguous) slice
StepSlice = Callable[[str], str]


def at(fn: Function, pointer: str, byte_offset: int, name: str) -> str:
    if not byte_offset:
        return pointer
    return fn.emit(f"getelementptr i8, ptr {pointer}, i64 {byte_offset}", name)


def counted(fn: Function, length: str, reverse: bool, step: Callable[[str], None]) -> None:
    """``step(t)`` for ``t`` in ``0 .. length-1`` (``reverse``: downwards); the counter lives on the
    stack, in a register once optimized."""
    counter = fn.alloca("i64", "step.count")
    fn.do(f"store i64 0, ptr {counter}")
    condition, body, done = fn.label("steps.cond"), fn.label("steps.body"), fn.label("steps.done")
    fn.do(f"br label %{condition}")
    fn.place(condition)
    index = fn.emit(f"load i64, ptr {counter}", "i")
    more = fn.emit(f"icmp slt i64 {index}, {length}", "more")
    fn.do(f"br i1 {more}, label %{body}, label %{done}")
    fn.place(body)
    if reverse:
        last = fn.emit(f"sub nsw i64 {length}, 1", "last")
        t = fn.emit(f"sub nsw i64 {last}, {index}", "t")
    else:
        t = index
    step(t)
    following = fn.emit(f"add nsw i64 {index}, 1", "i.next")
    fn.do(f"store i64 {following}, ptr {counter}")
    fn.do(f"br label %{condition}")
    fn.place(done)


def while_steps(fn: Function, condition: Callable[[], str], step: Callable[[str], None]) -> str:
    """``step(t)`` while ``condition()`` holds; the number of steps taken."""
    counter = fn.alloca("i64", "step.count")
    fn.do(f"store i64 0, ptr {counter}")
    test, body, done = fn.label("while.cond"), fn.label("while.body"), fn.label("while.done")
    fn.do(f"br label %{test}")
    fn.place(test)
    holds = condition()
    fn.do(f"br i1 {holds}, label %{body}, label %{done}")
    fn.place(body)
    t = fn.emit(f"load i64, ptr {counter}", "t")
    step(t)
    following = fn.emit(f"add nsw i64 {t}, 1", "t.next")
    fn.do(f"store i64 {following}, ptr {counter}")
    fn.do(f"br label %{test}")
    fn.place(done)
    return fn.emit(f"load i64, ptr {counter}", "count")


def gather(gen: Codegen, fn: Function, source: str, view: View, target: str) -> None:
    """The elements of ``view`` (its first at ``source``) written contiguously at ``target``."""
    if 0 in view.shape:
        return
    if view.is_contiguous:
        copy_elements(gen, fn, source, view.dtype, target, view.dtype, math.prod(view.shape))
        return
    extents, strides = coalesce(view.shape, [view.strides, contiguous_strides(view.shape)])

    def payload(offsets: dict[Any, str]) -> None:
        value = gen.load(fn, source, offsets["s"], view.dtype, "value")
        gen.store(fn, value, target, offsets["t"], view.dtype)

    gen.nest(fn, extents, {"s": strides[0], "t": strides[1]}, payload)


def copy_elements(
    gen: Codegen, fn: Function, source: str, source_dtype: str, target: str, target_dtype: str, count: int
) -> None:
    """``count`` contiguous elements from ``source`` to ``target``, converted when the dtypes differ."""
    if count == 0:
        return
    if count == 1 or source_dtype != target_dtype:

        def payload(offsets: dict[Any, str]) -> None:
            value = gen.load(fn, source, offsets["e"], source_dtype, "value")
            value = scalar_ops.convert(fn, value, source_dtype, target_dtype)
            gen.store(fn, value, target, offsets["e"], target_dtype)

        gen.nest(fn, [] if count == 1 else [count], {"e": [] if count == 1 else [1]}, payload)
        return
    fn.declare(_MEMCPY)
    nbytes = count * np.dtype(source_dtype).itemsize
    fn.do(f"call void @llvm.memcpy.p0.p0.i64(ptr {target}, ptr {source}, i64 {nbytes}, i1 false)")
