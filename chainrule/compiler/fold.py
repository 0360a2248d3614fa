"""Constant folding: a node whose operands are all constants becomes a constant.

Folding is skipped where it would make a constant bigger than its operands
(``broadcast_to`` of a scalar stays a broadcast: the generated code is better
off with the scalar) or bigger than ``MAX_FOLDED_ELEMENTS``. A structural op
may grow its constants up to ``MAX_GROWN_ELEMENTS``: the gradient of
``einsum('ii->', A)`` is a scatter of ones into a zero matrix, which otherwise
ran on every call (1.3 µs of a 2.6 µs call at n = 16). Folded values are
computed by the op's own NumPy lowering, so they are exactly what the
unfolded program would compute. A folded value of zeros (+0) is the ``zeros`` node, not a
constant: ``x + 0 -> x`` and the products with zeros then see it whatever its size (a shape op
of the zero cotangent of an unused factor would otherwise be a dense constant from here on).
"""

from __future__ import annotations

import numpy as np

from chainrule.compiler.rewrite import rebuild
from chainrule.ir import OPS, Graph
from chainrule.ir.node import Node
from chainrule.ir.rewrite import EVERY_OP, RuleSet

MAX_FOLDED_ELEMENTS = 1 << 20
MAX_GROWN_ELEMENTS = 1 << 12  # 32 KiB of float64: a constant this size costs less than recomputing it


# The operands a foldable node can have (a broadcast only of a constant, checked below).
FOLDABLE_OPERANDS = frozenset({"const", "zeros", "broadcast_to"})


FOLD = RuleSet("fold")


@FOLD.rule(EVERY_OP, every_operand=FOLDABLE_OPERANDS)
def fold_rule(graph: Graph, node: Node, args: tuple[int, ...]) -> int | None:
    """A constant equal to ``node`` when all its operands are constants (or their broadcasts)."""
    definition = OPS[node.op]
    if definition.kind in ("source", "fused") or node.op == "stop_gradient":
        return None
    if definition.is_elementwise:
        # an elementwise op of broadcast constants is the broadcast of the op on the constants
        args = tuple(graph[a].args[0] if graph[a].op == "broadcast_to" else a for a in args)
    maybe_values = [graph.const_value(a) for a in args]
    values = [v for v in maybe_values if v is not None]
    if len(values) < len(args):  # a broadcast_to operand of a shape op
        return None
    size = (
        int(np.prod(np.broadcast_shapes(*(v.shape for v in values)))) if definition.is_elementwise else node.type.size
    )
    largest_operand = max(max(v.size for v in values), 1)
    grows = size > largest_operand and (
        definition.is_elementwise or node.op == "broadcast_to" or size > MAX_GROWN_ELEMENTS
    )
    if grows or size > MAX_FOLDED_ELEMENTS:
        return None
    with np.errstate(all="ignore"):
        try:
            value = np.asarray(definition.eager(*values, **node.params), dtype=node.type.dtype)
        except (IndexError, ValueError):  # a bad constant index: the call reports it, at the user's line
            return None
    if value.dtype.kind in "biuf" and not value.any() and not np.signbit(value).any():
        return graph.zeros(node.type)  # the symbolic zero, which the algebra rules and DCE see through
    folded = graph.const(value)
    if value.shape != node.type.shape:
        return graph.add("broadcast_to", (folded,), {"shape": node.type.shape})
    return folded


def fold(graph: Graph) -> Graph:
    """``graph`` with its constant subgraphs evaluated (one walk: operands are folded first)."""
    return rebuild(graph, FOLD)[0]
