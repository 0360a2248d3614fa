"""What a ``Compiled`` shows of itself: its graphs, IR, generated code, cost and memory."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chainrule.compiler import pipeline
from chainrule.compiler.cost import CostReport, cost_report
from chainrule.compiler.memory_report import MemoryReport, memory_report
from chainrule.errors import ArgumentError
from chainrule.ir import Graph

if TYPE_CHECKING:
    from chainrule.transforms.specialization import Specialization


class LookingInside:
    """``Compiled``'s methods that look inside it for some arguments (each specializes on them)."""

    if TYPE_CHECKING:

        @property
        def _differentiates(self) -> bool: ...

        def _specialize(
            self, args: tuple[Any, ...], keywords: tuple[str, ...] = ()
        ) -> tuple[Specialization, list[Any]]: ...

    def graph(self, *args: Any, stage: str = "scheduled") -> Graph:
        """The IR graph after ``stage`` (one of ``chainrule.compiler.pipeline.STAGES``)."""
        entry, _ = self._specialize(args)
        graphs = entry.compilation.graphs
        if stage not in graphs:
            raise ArgumentError(f"unknown stage {stage!r} for this function; stages: {', '.join(graphs)}")
        return graphs[stage]

    def ir(self, *args: Any, stage: str = "scheduled") -> str:
        """The IR text after ``stage``."""
        return str(self.graph(*args, stage=stage))

    def source(self, *args: Any) -> str:
        """The generated code that runs for these arguments: Python source (numpy backend) or the
        LLVM IR module before optimization (llvm backend)."""
        entry, _ = self._specialize(args)
        return entry.kernel.source

    def cost(self, *args: Any, stage: str = pipeline.STAGES[-1]) -> CostReport:
        """FLOPs and bytes moved by the graph after ``stage``, forward and backward apart
        (``report.backward_to_forward`` is about 2 for a network); ``print`` it for a table."""
        return cost_report(self.graph(*args, stage=stage))

    def memory(self, *args: Any) -> MemoryReport:
        """The estimated peak bytes of a call, the forward values the backward pass keeps (bytes and
        why) and recomputes (FLOPs) under this function's ``checkpoint`` policy; ``print`` it."""
        if not self._differentiates:
            raise ArgumentError("memory() reports what a backward pass keeps: use it on cr.grad or cr.value_and_grad")
        report = memory_report(self.graph(*args, stage="checkpointed"), self.graph(*args, stage="scheduled"))
        lowered = getattr(self._specialize(args)[0].kernel, "lowered", None)
        if lowered is not None:
            report.arena_bytes = lowered.arena_bytes
        return report
