"""One LAPACK node's code in the kernel's entry function: its argument slots (every LAPACK argument
is a pointer), workspace pointers, the loop over its batch, the copies into and out of column-major
workspace, the calls and the checks of ``info`` (``lapack_ops.py``, ``expm.py``).

The workspace is one block of the arena (``Plan.scratch``): a status word (``STATUS_BYTES``), then
the node's regions, each aligned.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING

import numpy as np

from chainrule.backends.llvm import lapack, scalar_ops
from chainrule.backends.llvm.irtext import Function
from chainrule.backends.llvm.plan import ALIGNMENT
from chainrule.backends.llvm.views import View

if TYPE_CHECKING:
    from chainrule.backends.llvm.codegen import Codegen

STATUS_BYTES = 64


def region_bytes(count: int, dtype: str) -> int:
    """Bytes of ``count`` elements of ``dtype``, rounded up to the arena's alignment."""
    nbytes = count * np.dtype(dtype).itemsize
    return -(-nbytes // ALIGNMENT) * ALIGNMENT


class LapackUnit:
    """One node's code: argument slots, workspace pointers, the batch loop, copies, calls, checks."""

    def __init__(self, gen: Codegen, node_id: int, regions: dict[str, tuple[int, str]], batch: tuple[int, ...]) -> None:
        """``regions``: the node's workspace, name -> (elements, dtype), placed in that order after
        the status word; ``batch``: the batch shape the node loops over."""
        self.gen = gen
        self.entry: Function = gen.entry
        self.node = gen.graph[node_id]
        self.dtype = self.node.type.dtype
        self.t = scalar_ops.register_type(self.dtype)
        self.cache: dict[object, str] = {}
        self.operands = [gen.plan.views[a] for a in self.node.args]
        self.result = gen.plan.views[node_id]
        self.batch = batch
        scratch = gen.plan.scratch
        self.status = gen.base(self.entry, scratch, self.cache)
        self.regions: dict[str, str] = {}
        offset = scratch.offset + STATUS_BYTES
        for name, (count, dtype) in regions.items():
            self.regions[name] = gen.base(self.entry, View(scratch.slot, offset, (), (), dtype), self.cache)
            offset += region_bytes(count, dtype)
        self.entry.note(gen.describe(node_id) + "  (LAPACK)")
        self.info = self.entry.alloca("i32", "info")

    # ---- arguments (every LAPACK argument is a pointer) ---------------------------------------

    def _constant(self, llvm_type: str, value: object, name: str) -> str:
        key = (llvm_type, value)
        if key not in self.gen.blas_arguments:
            slot = self.entry.alloca(llvm_type, name)
            self.entry.do(f"store {llvm_type} {value}, ptr {slot}")
            self.gen.blas_arguments[key] = slot
        return self.gen.blas_arguments[key]

    def integer(self, value: int) -> str:
        return self._constant("i32", value, f"int.{value}")

    def char(self, letter: str) -> str:
        return self._constant("i8", ord(letter), f"char.{letter}")

    def real(self, value: float) -> str:
        return self._constant(self.t, scalar_ops.literal(value, self.dtype), "real")

    def at(self, pointer: str, elements: int) -> str:
        """``pointer`` advanced by ``elements`` of the unit's dtype."""
        return self.entry.emit(f"getelementptr {self.t}, ptr {pointer}, i64 {elements}", "at")

    # ---- code ---------------------------------------------------------------------------------

    def each_matrix(self, views: list[View], body: Callable[[list[str]], None]) -> None:
        """``body(pointers)`` once per batch element, ``pointers`` to each view's matrix in it."""
        bases = [self.gen.base(self.entry, v, self.cache) for v in views]
        rank = len(self.batch)
        strides: dict[Hashable, list[int]] = {index: list(v.strides[:rank]) for index, v in enumerate(views)}

        def payload(offsets: dict[Hashable, str]) -> None:
            pointers = []
            for index, (base, view) in enumerate(zip(bases, views)):
                offset = offsets[index]
                memory = scalar_ops.memory_type(view.dtype)
                at = base if offset == "0" else self.entry.emit(f"getelementptr {memory}, ptr {base}, i64 {offset}")
                pointers.append(at)
            body(pointers)

        self.gen.nest(self.entry, list(self.batch), strides, payload)

    def copy(
        self,
        source: tuple[str, str, tuple[int, ...]],
        target: tuple[str, str, tuple[int, ...]],
        shape: tuple[int, ...],
    ) -> None:
        """Copy ``shape`` elements between (pointer, dtype, strides) places, converting the dtype."""
        (s_pointer, s_dtype, s_strides), (t_pointer, t_dtype, t_strides) = source, target
        gen, entry = self.gen, self.entry

        def payload(offsets: dict[Hashable, str]) -> None:
            value = gen.load(entry, s_pointer, offsets["s"], s_dtype, "x")
            gen.store(entry, scalar_ops.convert(entry, value, s_dtype, t_dtype), t_pointer, offsets["t"], t_dtype)

        # the loop over the target's shortest stride innermost (then the source's): a matrix copied
        # in the layout it already has (A.T of a row-major A, into columns) streams, where walking
        # both with a stride of a row cost 3 copies x 0.5 ms of slogdet's 256x256 gradient
        order = sorted(range(len(shape)), key=lambda d: (abs(t_strides[d]), abs(s_strides[d])), reverse=True)
        strides: dict[Hashable, list[int]] = {"s": [s_strides[d] for d in order], "t": [t_strides[d] for d in order]}
        gen.nest(entry, [shape[d] for d in order], strides, payload)

    def into_columns(self, pointer: str, view: View, region: str) -> None:
        """The view's matrix at ``pointer`` into workspace ``region``, column-major, in our dtype."""
        rows, columns = view.shape[-2:]
        self.copy(
            (pointer, view.dtype, view.strides[-2:]), (self.regions[region], self.dtype, (1, rows)), (rows, columns)
        )

    def into_rows(self, pointer: str, view: View, region: str) -> None:
        """The view's matrix at ``pointer`` into workspace ``region``, row-major (LAPACK reads its
        transpose), in our dtype: a straight copy where ``into_columns`` transposes."""
        rows, columns = view.shape[-2:]
        self.copy(
            (pointer, view.dtype, view.strides[-2:]), (self.regions[region], self.dtype, (columns, 1)), (rows, columns)
        )

    def out_of_columns(self, region: str, rows: int, columns: int, pointer: str, first: int = 0) -> None:
        """Column-major ``region`` into the result at ``pointer`` (+ ``first`` elements), row-major."""
        target = pointer if first == 0 else self.at(pointer, first)
        self.copy((self.regions[region], self.dtype, (1, rows)), (target, self.dtype, (columns, 1)), (rows, columns))

    def out_of_vector(self, region: str, length: int, pointer: str) -> None:
        self.copy((self.regions[region], self.dtype, (1,)), (pointer, self.dtype, (1,)), (length,))

    def call(self, name: str, *arguments: str) -> None:
        self.entry.declare(lapack.declaration(name, self.dtype))
        listed = ", ".join(f"ptr {a}" for a in arguments)
        self.entry.do(f"call void @{lapack.symbol(name, self.dtype)}({listed})")

    def check(self, name: str, message: str | None, nan_info: int = 0) -> None:
        """After a call that set ``info``: record failure ``message`` (info > 0, or ``nan_info``,
        the value a routine reports a NaN operand with; None: no failure) or a rejected argument
        (info < 0) in the status, unless an earlier failure is there."""
        failures = self.gen.plan.failures
        routine = lapack.routine(name, self.dtype)
        failures.append((f"LAPACK {routine} rejected an argument (a bug in chainrule's llvm backend)", None))
        negative = len(failures)
        emit = self.entry.emit
        info = emit(f"load i32, ptr {self.info}", "info")
        rejected = emit(f"icmp slt i32 {info}, 0", "rejected")
        if nan_info:
            rejected = emit(f"and i1 {rejected}, {emit(f'icmp ne i32 {info}, {nan_info}', 'not.nan')}", "rejected")
        if message is None:
            failed, code = rejected, str(negative)
        else:
            failures.append((message, self.node.loc))
            failed = emit(f"icmp ne i32 {info}, 0", "failed")
            code = emit(f"select i1 {rejected}, i32 {negative}, i32 {len(failures)}", "code")
        status = emit(f"load i32, ptr {self.status}", "status")
        first = emit(f"and i1 {failed}, {emit(f'icmp eq i32 {status}, 0')}", "first")
        self.entry.do(f"store i32 {emit(f'select i1 {first}, i32 {code}, i32 {status}')}, ptr {self.status}")
