"""Copies: the entry function's last step (outputs computed in the arena, or views of other values,
copied into the arrays the wrapper allocated, ``Codegen.emit``) and a reshape of data no view can
reshape (a transposed or sliced operand: a CNN's Flatten of batch-last images), copied into the
result's contiguous place."""

from __future__ import annotations

from typing import TYPE_CHECKING

from chainrule.backends.llvm import scalar_ops
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


def is_relayout(lowering: Lowering, node_id: int) -> bool:
    """Is this a reshape the kernel computes as a copy: of data no view can reshape (a transposed
    or sliced operand), on a dtype with LLVM arithmetic?"""
    node = lowering.graph[node_id]
    return node.op == "reshape" and node.type.size > 0 and node.type.dtype in scalar_ops.TYPES


def emit_relayout(gen: Codegen, node_id: int) -> None:
    """The reshape of non-contiguous data: the operand's elements, in row-major order, copied into
    the result's contiguous place, which seen in the operand's shape is the operand's copy."""
    node = gen.graph[node_id]
    source, result = gen.plan.views[node.args[0]], gen.plan.views[node_id]
    assert result.is_contiguous, f"the reshape %{node_id} is computed into a non-contiguous place"
    target = View(result.slot, result.offset, source.shape, contiguous_strides(source.shape), result.dtype)
    _copy(gen, source, target, f"{gen.describe(node_id)}\n(a copy: the operand is not contiguous)")


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
        _copy(self, source.broadcast_to(spec.shape), target, f"output {index}: a copy of %{node_id}")


def _copy(gen: Codegen, source: View, target: View, comment: str) -> None:
    """``target[...] = source`` (one shape), converting the dtype, as an outlined loop nest."""
    extents, strides = coalesce(target.shape, [source.strides, target.strides])
    fn = gen.outlined(comment)
    cache: dict[object, str] = {}
    pointers = [gen.base(fn, v, cache) for v in (source, target)]

    def payload(offsets: Offsets) -> None:
        value = gen.load(fn, pointers[0], offsets["s"], source.dtype, "value")
        value = scalar_ops.convert(fn, value, source.dtype, target.dtype)
        gen.store(fn, value, pointers[1], offsets["t"], target.dtype)

    gen.nest(fn, extents, {"s": strides[0], "t": strides[1]}, payload, low="%start", high="%end")
    fn.do("ret void")
    gen.run_outlined(fn, extents[0] if extents else 1, False)
