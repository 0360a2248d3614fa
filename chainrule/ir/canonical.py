"""The canonical rules: rewrites every ``Graph.add`` applies, so that no graph ever holds the trivial forms.

Only rewrites that are exact for every input, NaN and inf included, belong here:
scalar constant folding (shape ops on one-element constants too), the
identities x*1, x/1, x+0, x-0 when they do not change the result's type, and
dropping a broadcast_to that NumPy's own broadcasting would do anyway (the
backward pass of a sum makes many: ``broadcast_to(g) * y``). Rewrites that need
judgement (x*0, reassociation, stability rewrites) are the simplify pass's business.
The rules are data in the one rewrite engine (``ir/rewrite.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from chainrule.ir.node import Node
from chainrule.ir.ops import OPS
from chainrule.ir.rewrite import RuleSet
from chainrule.ir.types import TensorType

if TYPE_CHECKING:
    from chainrule.ir.graph import Graph

CANONICAL = RuleSet("canonical")

# op: {operand position of the neutral constant: (neutral value, position of the kept operand)}
_NEUTRAL_OPERAND = {
    "mul": {0: (1, 1), 1: (1, 0)},
    "div": {1: (1, 0)},
    "add": {0: (0, 1), 1: (0, 0)},
    "sub": {1: (0, 0)},
    "pow": {1: (1, 0)},
}
_FOLD_MAX_SIZE = 1  # folding big constants is the fold pass's job, not construction's
_CONSTANTS = ("const", "zeros")
_SHAPE_OPS = sorted(name for name, op in OPS.items() if op.kind == "shape")
_ELEMENTWISE_OPS = sorted(name for name, op in OPS.items() if op.is_elementwise)


@CANONICAL.rule("reshape", "broadcast_to", "transpose", "sum", "max", "min")
def shape_op_keeping_the_type(graph: Graph, node: Node, args: tuple[int, ...]) -> int | None:
    """A shape op or reduction that leaves the type as it is (a transpose only with its axes in order)."""
    if graph.type(args[0]) != node.type:
        return None
    if node.op == "transpose" and tuple(node.params["axes"]) != tuple(range(node.type.ndim)):
        return None
    return args[0]


@CANONICAL.rule(*_SHAPE_OPS, every_operand=["const"])
def shape_op_of_scalar_constants(graph: Graph, node: Node, args: tuple[int, ...]) -> int | None:
    if node.type.size > _FOLD_MAX_SIZE:
        return None
    value = OPS[node.op].eager(*(graph.constant(a) for a in args), **node.params)
    return _constant(graph, value, node.type)


@CANONICAL.rule("scatter_add", any_operand=["broadcast_to"])
def scatter_of_broadcast_values(graph: Graph, node: Node, args: tuple[int, ...]) -> int | None:
    """scatter_add broadcasts its values itself (operand 0)."""
    values = graph[args[0]]
    if values.op != "broadcast_to":
        return None
    return graph.add(node.op, (values.args[0], *args[1:]), node.params)


@CANONICAL.rule(*_ELEMENTWISE_OPS, every_operand=_CONSTANTS)
def elementwise_of_scalar_constants(graph: Graph, node: Node, args: tuple[int, ...]) -> int | None:
    if node.type.size > _FOLD_MAX_SIZE or any(graph.type(a).size > _FOLD_MAX_SIZE for a in args):
        return None
    with np.errstate(all="ignore"):
        value = OPS[node.op].eager(*(graph.constant(a) for a in args), **node.params)
    return _constant(graph, value, node.type)


@CANONICAL.rule(*_ELEMENTWISE_OPS, any_operand=["broadcast_to"])
def implied_broadcast(graph: Graph, node: Node, args: tuple[int, ...]) -> int | None:
    """``args`` with each ``broadcast_to(x)`` replaced by ``x`` where NumPy's broadcasting among the
    operands still gives the result's shape. An operand that is also another operand stays: narrowing
    one side of ``b - b`` would hide that no derivative flows through it (``ops.SELF_CANCELLING``)."""
    narrowed, changed = list(args), False
    for position, arg in enumerate(args):
        operand = graph[arg]
        if operand.op != "broadcast_to" or args.count(arg) > 1:
            continue
        candidate = [*narrowed[:position], operand.args[0], *narrowed[position + 1 :]]
        if np.broadcast_shapes(*(graph.type(a).shape for a in candidate)) == node.type.shape:
            narrowed, changed = candidate, True
    return graph.add(node.op, tuple(narrowed), node.params) if changed else None


@CANONICAL.rule(*_NEUTRAL_OPERAND, any_operand=_CONSTANTS)
def neutral_operand(graph: Graph, node: Node, args: tuple[int, ...]) -> int | None:
    """x*1, 1*x, x/1, x+0, 0+x, x-0, x**1 -> x, when x already has the result's type."""
    for position, (neutral, kept) in _NEUTRAL_OPERAND[node.op].items():
        operand = graph[args[position]]
        if operand.op == "zeros":
            is_neutral = neutral == 0
        elif operand.op == "const" and operand.type.size <= _FOLD_MAX_SIZE:
            is_neutral = _all_equal(graph.constant(args[position]), neutral)
        else:
            continue
        if is_neutral and graph.type(args[kept]) == node.type:
            return args[kept]
    return None


@CANONICAL.rule("gt", "lt")
def strict_comparison_with_itself(graph: Graph, node: Node, args: tuple[int, ...]) -> int | None:
    """x > x and x < x are False for every x, NaN included; a where on them then keeps one branch."""
    return graph.zeros(node.type) if args[0] == args[1] else None


@CANONICAL.rule("where", any_operand=_CONSTANTS)
def where_of_a_constant_condition(graph: Graph, node: Node, args: tuple[int, ...]) -> int | None:
    """where(False, a, b) -> b and where(True, a, b) -> a, when that branch already has the result's
    type: otherwise the derivative of the other branch, an exact zero, meets an infinite one further
    on (0 * inf = NaN in forward mode), where the function does not depend on that branch at all."""
    condition = graph[args[0]]
    if condition.op == "zeros":
        kept = args[2]
    elif condition.op == "const" and condition.type.size <= _FOLD_MAX_SIZE:
        kept = args[1] if graph.constant(args[0]).all() else args[2]
    else:
        return None
    return kept if graph.type(kept) == node.type else None


def _constant(graph: Graph, value: object, type: TensorType) -> int:
    return graph.const(np.asarray(value, dtype=type.dtype).reshape(type.shape))


def _all_equal(array: np.ndarray, number: int) -> bool:
    # one element (the usual constant) compares as a Python number: NumPy's == costs ten times more
    return bool(array.item() == number) if array.size == 1 else bool((array == number).all())
