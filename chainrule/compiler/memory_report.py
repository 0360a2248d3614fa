"""The memory report of a compiled gradient: the peak, what the backward pass keeps and why, and what
it recomputes at which price.

    report = cr.grad(loss, checkpoint="sqrt").memory(params, x, y)
    report.peak_bytes, report.kept_bytes, report.recompute_flops
    print(report)            # the totals, then every kept value and every recomputed one

The peak is the memory plan of the scheduled graph (compiler/schedule.py), which
simulates the NumPy backend's allocations and frees: the temporaries one call
allocates, gradients included, inputs not. Kept values and recomputations are
read off the checkpointed graph (before fusion, so each is one op).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from chainrule.compiler.checkpoint import checkpoint_info
from chainrule.compiler.cost import format_bytes, format_flops, node_cost
from chainrule.compiler.loop_checkpoint import LoopCheckpoint, loop_checkpoints
from chainrule.compiler.schedule import is_view, peak_bytes
from chainrule.ir import Graph, TensorType

_SOURCES = ("input", "const", "zeros")


@dataclass(frozen=True)
class KeptValue:
    """A forward value the backward pass reads as the forward pass left it."""

    node: int  # id in the checkpointed graph
    name: str | None
    type: TensorType
    bytes: int  # 0 for a view, which shares its operand's storage
    reason: str


@dataclass(frozen=True)
class RecomputedValue:
    """A forward value computed again in the backward pass."""

    node: int
    name: str | None
    op: str
    type: TensorType
    flops: int


@dataclass
class MemoryReport:
    policy: str
    peak_bytes: int  # estimated peak of one call's temporaries (the memory plan)
    kept_bytes: int  # bytes of the forward values kept for the backward pass
    recompute_flops: int  # FLOPs spent computing forward values again
    forward_flops: int  # FLOPs of the forward pass, to compare recompute_flops with
    kept: list[KeptValue]
    recomputed: list[RecomputedValue]
    # The llvm backend's arena (planned at compile time and held between calls, outputs over 4 KiB
    # aside); None on the numpy backend, whose temporaries come and go with each call.
    arena_bytes: int | None = None
    # Checkpointed loops (``cr.scan(..., checkpoint=)``): the carries each backward pass holds at once.
    loops: list[LoopCheckpoint] = field(default_factory=list)

    @property
    def extra_forward_passes(self) -> float:
        """recompute_flops / forward_flops: 1.0 is one more forward pass."""
        return self.recompute_flops / self.forward_flops if self.forward_flops else 0.0

    def __str__(self) -> str:
        lines = [
            f"memory of one call, checkpoint={self.policy}",
            f"  peak (estimated)   {format_bytes(self.peak_bytes):>12}",
            f"  kept for backward  {format_bytes(self.kept_bytes):>12}  in {len(self.kept)} values",
            f"  recomputed         {format_flops(self.recompute_flops):>12}  in {len(self.recomputed)} nodes"
            f" ({self.extra_forward_passes:.2f} forward passes)",
        ]
        if self.arena_bytes is not None:
            lines.append(f"  llvm arena         {format_bytes(self.arena_bytes):>12}")
        if self.loops:
            lines.append("  checkpointed loops:")
            lines += [f"    {loop}" for loop in self.loops]
        if self.kept:
            lines.append("  kept:")
            lines += [
                f"    %{v.node:<6} {(v.name or ''):<12} {v.type!s:<18} {format_bytes(v.bytes):>10}  {v.reason}"
                for v in self.kept
            ]
        if self.recomputed:
            lines.append("  recomputed:")
            lines += [
                f"    %{v.node:<6} {(v.name or ''):<12} {v.op:<10} {v.type!s:<18} {format_flops(v.flops):>10}"
                for v in self.recomputed
            ]
        return "\n".join(lines)


def memory_report(checkpointed: Graph, scheduled: Graph) -> MemoryReport:
    """The report of a compilation from its ``checkpointed`` and ``scheduled`` graphs."""
    info = checkpoint_info(checkpointed)
    reasons = info.reasons if info is not None else {}
    default_reason = info.default_reason if info is not None else "read by the backward pass"
    live = checkpointed.live_nodes()
    read_by_backward: set[int] = set()
    for node_id in live:
        if checkpointed[node_id].is_backward:
            read_by_backward.update(checkpointed[node_id].args)
    kept: list[KeptValue] = []
    recomputed: list[RecomputedValue] = []
    forward_flops = 0
    for node_id in live:
        node = checkpointed[node_id]
        if node.recomputed:
            recomputed.append(
                RecomputedValue(node_id, node.name, node.op, node.type, node_cost(checkpointed, node_id).flops)
            )
        elif not node.is_backward:
            forward_flops += node_cost(checkpointed, node_id).flops
            if node_id in read_by_backward and node.op not in _SOURCES:
                size = 0 if is_view(node) else node.type.nbytes
                kept.append(KeptValue(node_id, node.name, node.type, size, reasons.get(node_id, default_reason)))
    policy = info.policy if info is not None else "'all'"
    return MemoryReport(
        policy,
        peak_bytes(scheduled),
        sum(v.bytes for v in kept),
        sum(v.flops for v in recomputed),
        forward_flops,
        kept,
        recomputed,
        loops=loop_checkpoints(checkpointed),
    )
