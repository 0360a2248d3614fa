"""The entry function's last step: outputs computed in the arena, or views of other values, copied
into the arrays the wrapper allocated (``Codegen.emit``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from chainrule.backends.llvm import scalar_ops
from chainrule.backends.llvm.irtext import Function
from chainrule.backends.llvm.strides import coalesce, contiguous_strides
from chainrule.backends.llvm.views import View
from chainrule.ir import OPS

if TYPE_CHECKING:
    from chainrule.backends.llvm.codegen import Codegen, Offsets
    from chainrule.backends.llvm.lower import Lowering


def reshaped_value(lowering: Lowering, node_id: int) -> int | None:
    """The value output ``node_id`` reshapes, when it is computed by the kernel and no output holds
    it yet: computed into the output's array (a trace's gradient, a diagonal scattered into a flat
    matrix), it needs no copy. None for any other output."""
    graph = lowering.graph
    node = graph[node_id]
    if node.op != "reshape" or node_id not in lowering.views:
        return None
    root = node.args[0]
    computed = root not in lowering.views and OPS[graph[root].op].kind != "source"
    return root if computed and root not in lowering.output_home and root not in graph.outputs else None


def emit_output_copies(self: Codegen) -> None:
    """Copy each output computed in the arena (or a view of another value) into its own array,
    converting its dtype on the way."""
    for index, node_id in self.plan.output_copies:
        spec = self.plan.outputs[index]
        source = self.plan.views[node_id]
        target = (
            spec.arena_view
            if spec.slot is None
            else type(source)(spec.slot, 0, spec.shape, contiguous_strides(spec.shape), spec.dtype)
        )
        assert target is not None, f"output {index} has no place"
        shape = spec.shape
        views = [source.broadcast_to(shape), target]
        extents, strides = coalesce(shape, [v.strides for v in views])
        fn = self.outlined(f"output {index}: a copy of %{node_id}")
        cache: dict[object, str] = {}
        pointers = [self.base(fn, v, cache) for v in views]

        def payload(
            offsets: Offsets,
            fn: Function = fn,
            pointers: list[str] = pointers,
            source: View = source,
            target: View = target,
            node_id: int = node_id,
        ) -> None:
            value = self.load(fn, pointers[0], offsets["s"], source.dtype, "value")
            value = scalar_ops.convert(fn, value, source.dtype, target.dtype)
            self.store(fn, value, pointers[1], offsets["t"], target.dtype)

        self.nest(fn, extents, {"s": strides[0], "t": strides[1]}, payload, low="%start", high="%end")
        fn.do("ret void")
        self.run_outlined(fn, extents[0] if extents else 1, False)
