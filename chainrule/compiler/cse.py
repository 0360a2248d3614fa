"""Common-subexpression elimination.

Graphs are hash-consed (``Graph.add`` returns the existing node for a repeated
``(op, args, attrs)``), so rebuilding a graph merges its duplicates. This pass
adds what hashing alone misses: a commutative operation whose operands in the
other order (``b * a`` for ``a * b``) already exist becomes that node. Operands
are not sorted otherwise, so the code keeps the user's ``x @ W + b`` order.
"""

from __future__ import annotations

from chainrule.compiler.rewrite import rebuild
from chainrule.ir import Graph
from chainrule.ir.node import Node
from chainrule.ir.rewrite import RuleSet

COMMUTATIVE = {"add", "mul", "maximum", "minimum", "eq", "ne", "logical_and", "logical_or"}


CSE = RuleSet("cse")


@CSE.rule(*COMMUTATIVE)
def commutative_order(graph: Graph, node: Node, args: tuple[int, ...]) -> int | None:
    """The existing node with the operands in the other order."""
    return graph.find(node.op, (args[1], args[0]), node.attrs)


def cse(graph: Graph) -> Graph:
    """``graph`` with equal computations merged into one node."""
    return rebuild(graph, CSE)[0]
