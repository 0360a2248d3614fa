"""The cost model: FLOPs and bytes moved by every node of a graph, forward and backward apart.

So users can check "backward costs about 2x forward" (seed 000) on their own model:

    report = cr.grad(loss).cost(params, x, y)
    report.forward_flops, report.backward_flops, report.backward_to_forward
    print(report)                # totals, then the nodes that do the most arithmetic

The count of each op is the ``flops`` entry of the op table (``chainrule.ir``);
this module only adds them up, so an op added later (a fused region, whose
count is the sum of its inner ops') needs nothing here. The conventions:

- matmul of an N×M by an M×T matrix: N·M·T multiplications + (M−1)·N·T
  additions, as seed 000 counts it. A 1-D operand is a matrix of one row (or
  column); a batch of matmuls multiplies the count.
- elementwise, per result element: 1 for an op NumPy computes with one ufunc
  or libm call (add, mul, div, exp, log, tanh, erf, pow, relu, maximum, a
  comparison, where). Transcendentals weigh 1 like an addition: a FLOP count
  says how much arithmetic there is, not how long each piece takes. An op that
  stands for a composition counts its definition's operations: sigmoid
  1/(1+exp(-x)) 4, softplus log(1+exp(x)) 3, clip (a max and a min) 2, so the
  op and the spelled-out form cost the same.
- reductions (sum, max, min): n − 1 additions or comparisons per result that
  reduces n elements; mean is a sum and a division.
- scatter_add (the adjoint of indexing): one addition per element scattered.
- no arithmetic, 0 FLOPs: sources (input, const, zeros), shape ops, indexing,
  concatenate, cast, stop_gradient.

Bytes moved by a node: the bytes of its distinct operands, read whole, plus the
bytes of its result. That is an upper bound for a gather, which reads only the
picked elements, and a broadcast operand counts at its own size. Views move 0
bytes: reshape, transpose, broadcast_to, stop_gradient, basic indexing (a
getitem without index arrays), and the sources input, const and zeros.

A node is *backward* when it has an ``origin`` — reverse mode sets it to the
forward node it differentiates — and *forward* otherwise. Only the nodes the
outputs depend on are counted: dead nodes never run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

from chainrule.compiler.schedule import SHAPE_VIEWS, is_view
from chainrule.ir import OPS, Graph, TensorType
from chainrule.ir.printer import node_comment

# Ops whose result is a view of an operand, or needs no computation at all: they move no bytes
# (and basic indexing, which schedule.is_view tells apart from a gather).
VIEW_OPS = frozenset({"input", "const", "zeros"}) | SHAPE_VIEWS

_TOP_NODES = 10  # rows of the "top nodes by FLOPs" table in str(report)


class NodeCost(NamedTuple):
    """The cost of one node: its FLOPs, the bytes it moves, and which pass it belongs to.

    A named tuple, not a dataclass: a report holds one per node, and graphs have 100,000 of them.
    """

    id: int
    op: str
    type: TensorType
    flops: int
    bytes: int
    phase: str  # "forward" or "backward"
    where: str = ""  # the user's variable name and source line, or the forward op it differentiates


@dataclass(frozen=True)
class CostReport:
    """FLOPs and bytes of one graph, totals per phase and one row per node (``nodes``, in graph order)."""

    name: str
    forward_flops: int
    backward_flops: int
    forward_bytes: int
    backward_bytes: int
    nodes: tuple[NodeCost, ...]

    @property
    def flops(self) -> int:
        return self.forward_flops + self.backward_flops

    @property
    def bytes(self) -> int:
        return self.forward_bytes + self.backward_bytes

    @property
    def backward_to_forward(self) -> float:
        """backward_flops / forward_flops (seed 000: about 2); 0.0 with no backward, nan with no forward."""
        if self.forward_flops == 0:
            return 0.0 if self.backward_flops == 0 else math.nan
        return self.backward_flops / self.forward_flops

    def top(self, count: int = _TOP_NODES) -> list[NodeCost]:
        """The ``count`` nodes with the most FLOPs (ties: the earlier node first)."""
        return sorted((n for n in self.nodes if n.flops), key=lambda n: (-n.flops, n.id))[:count]

    def __str__(self) -> str:
        return format_report(self)


def node_cost(graph: Graph, node_id: int) -> NodeCost:
    """The FLOPs and bytes of one node (the conventions are in this module's docstring)."""
    node = graph[node_id]
    operand_types = [graph.type(a) for a in node.args]
    flops = int(OPS[node.op].flops(operand_types, node.type, node.params))
    moved = (
        0
        if node.op in VIEW_OPS or is_view(node)
        else node.type.nbytes + sum(graph.type(a).nbytes for a in set(node.args))
    )
    phase = "backward" if node.is_backward else "forward"
    return NodeCost(node_id, node.op, node.type, flops, moved, phase, node_comment(graph, node))


def cost_report(graph: Graph) -> CostReport:
    """The cost of running ``graph``: every node the outputs depend on, forward and backward apart."""
    rows = tuple(node_cost(graph, node_id) for node_id in graph.live_nodes())
    totals = {("forward", "flops"): 0, ("forward", "bytes"): 0, ("backward", "flops"): 0, ("backward", "bytes"): 0}
    for row in rows:
        totals[row.phase, "flops"] += row.flops
        totals[row.phase, "bytes"] += row.bytes
    return CostReport(
        graph.name,
        totals["forward", "flops"],
        totals["backward", "flops"],
        totals["forward", "bytes"],
        totals["backward", "bytes"],
        rows,
    )


# ---- printing -----------------------------------------------------------------------------


def _scaled(value: float, base: int, units: tuple[str, ...]) -> str:
    """``value`` with 3 significant digits in the largest unit that keeps it at least 1."""
    if value < base:
        return f"{value:g} {units[0]}"
    scale = 0
    while value >= base * 0.9995 and scale < len(units) - 1:  # 999.96 k reads better as 1 M
        value /= base
        scale += 1
    return f"{value:.3g} {units[scale]}"


def format_flops(flops: float) -> str:
    """``1234567`` -> ``'1.23 MFLOP'`` (decimal prefixes, as FLOP counts are quoted)."""
    return _scaled(flops, 1000, ("FLOP", "kFLOP", "MFLOP", "GFLOP", "TFLOP", "PFLOP"))


def format_bytes(count: float) -> str:
    """``4608`` -> ``'4.5 KiB'`` (binary prefixes, as memory is)."""
    return _scaled(count, 1024, ("B", "KiB", "MiB", "GiB", "TiB", "PiB"))


def format_report(report: CostReport) -> str:
    """The report as a table: totals per phase, their ratio, then the nodes with the most FLOPs."""
    lines = [f"cost of {report.name}: {len(report.nodes)} nodes", f"  {'':<10}{'FLOPs':>13}{'bytes':>13}"]
    for label, flops, moved in [
        ("forward", report.forward_flops, report.forward_bytes),
        ("backward", report.backward_flops, report.backward_bytes),
        ("total", report.flops, report.bytes),
    ]:
        lines.append(f"  {label:<10}{format_flops(flops):>13}{format_bytes(moved):>13}")
    if report.backward_flops:
        lines.append(f"  backward / forward = {report.backward_to_forward:.2f}")
    top = report.top()
    if top:
        lines += [
            "",
            f"  top {len(top)} nodes by FLOPs:",
            f"  {'node':>7}  {'phase':<9}{'op':<13}{'type':<16}{'FLOPs':>13}{'bytes':>12}{'share':>8}  where",
        ]
        for row in top:
            share = row.flops / report.flops
            lines.append(
                f"  {'%' + str(row.id):>7}  {row.phase:<9}{row.op:<13}{row.type!s:<16}"
                f"{format_flops(row.flops):>13}{format_bytes(row.bytes):>12}{share:>8.1%}  {row.where}"
            )
    return "\n".join(lines)


__all__ = [
    "VIEW_OPS",
    "CostReport",
    "NodeCost",
    "cost_report",
    "format_bytes",
    "format_flops",
    "format_report",
    "node_cost",
]
