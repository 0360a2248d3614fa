"""The loop nest of a reduction over some axes, written by ``codegen.py`` (full reductions are
accumulators of a loop there); what a reduction starts from and how it combines two values is
its strategy's (``strategies.py``)."""

from __future__ import annotations

import functools
from collections.abc import Hashable
from typing import TYPE_CHECKING

from chainrule.backends.llvm import scalar_ops
from chainrule.backends.llvm.irtext import Function

if TYPE_CHECKING:
    from chainrule.backends.llvm.codegen import Codegen, Offsets


class ReductionNest:
    """The loop nest of a reduction over some axes (``Codegen._reduction``): into a register when
    the reduced axes are innermost, else into the initialized result."""

    def __init__(
        self,
        codegen: Codegen,
        fn: Function,
        node_id: int,
        pointers: dict[tuple[str, int], str],
        extents: list[int],
        stride_of: dict[Hashable, list[int]],
        first_reduced: int,
    ):
        self.codegen, self.fn, self.node_id, self.pointers = codegen, fn, node_id, pointers
        self.extents, self.stride_of, self.first_reduced = extents, stride_of, first_reduced
        self.op = codegen.reduction_op(node_id)
        self.dtype = codegen.plan.views[node_id].dtype
        self.t = scalar_ops.register_type(self.dtype)
        self.accumulator = fn.alloca(self.t, "acc")
        self.out = ("w", node_id)

    def element(self, offsets: Offsets) -> str:
        """The element reduced at ``offsets``, in the result's dtype."""
        codegen, fn, plan, graph = self.codegen, self.fn, self.codegen.plan, self.codegen.graph

        def read(value_id: int) -> str:
            if value_id in plan.immediates:
                return scalar_ops.literal(plan.immediates[value_id], graph.type(value_id).dtype)
            return codegen.load(
                fn,
                self.pointers[("r", value_id)],
                offsets[("r", value_id)],
                graph.type(value_id).dtype,
                graph[value_id].name or f"in{value_id}",
            )

        value, value_dtype = codegen.element(fn, self.node_id, read)
        return scalar_ops.convert(fn, value, value_dtype, self.dtype)

    def accumulate(self, offsets: Offsets, address: str | None = None) -> None:
        """Combine the element at ``offsets`` into ``address`` (default: its place in the result)."""
        fn, t = self.fn, self.t
        value = self.element(offsets)
        if address is None:
            memory = scalar_ops.memory_type(self.dtype)
            address = fn.emit(
                f"getelementptr {memory}, ptr {self.pointers[self.out]}, i64 {offsets[self.out]}", "out.p"
            )
        so_far = fn.emit(f"load {t}, ptr {address}", "acc")
        fn.do(f"store {t} {self.codegen.combine(fn, self.op, self.dtype, so_far, value)}, ptr {address}")

    def store(self, value: str, offset: str) -> None:
        self.codegen.store(self.fn, value, self.pointers[self.out], offset, self.dtype)

    def in_register(self) -> None:
        codegen, fn, t = self.codegen, self.fn, self.t
        nest = functools.partial(codegen.nest, fn, self.extents, self.stride_of, low="%start", high="%end")
        if self.first_reduced == len(self.extents):  # nothing to reduce (sizes of 1): a copy
            nest(lambda offsets: self.store(self.element(offsets), offsets[self.out]))
            return

        def before(d: int, offsets: Offsets | None) -> None:
            if d == self.first_reduced:
                fn.do(f"store {t} {codegen.identity(self.op, self.dtype)}, ptr {self.accumulator}")

        def after(d: int, offsets: Offsets) -> None:
            if d == self.first_reduced:
                self.store(fn.emit(f"load {t}, ptr {self.accumulator}", "total"), offsets[self.out])

        payload = functools.partial(self.accumulate, address=self.accumulator)
        if self.first_reduced == 0:
            before(0, None)
            nest(payload)
            self.store(fn.emit(f"load {t}, ptr {self.accumulator}", "total"), "0")
        else:
            nest(payload, before=before, after=after)

    def in_memory(self, size: int) -> None:
        codegen, fn = self.codegen, self.fn
        codegen.nest(
            fn, [size], {"o": [1]}, lambda offsets: self.store(codegen.identity(self.op, self.dtype), offsets["o"])
        )
        codegen.nest(fn, self.extents, self.stride_of, self.accumulate, low="0", high=None)
