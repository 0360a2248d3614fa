"""Rewrites applied as a node is built, so that no graph ever holds the trivial forms.

Only rewrites that are exact for every input, NaN and inf included, belong here:
scalar constant folding (shape ops on one-element constants too), the
identities x*1, x/1, x+0, x-0 when they do not change the result's type, and
dropping a broadcast_to that NumPy's own broadcasting would do anyway (the
backward pass of a sum makes many: ``broadcast_to(g) * y``). Rewrites that need
judgement (x*0, reassociation, stability rewrites) are the simplify pass's business.
"""

from __future__ import annotations

import numpy as np

from chainrule.ir.ops import OPS

_IDENTITY_OPERAND = {
    # op: {operand position of the neutral constant: (neutral value, position of the kept operand)}
    "mul": {0: (1, 1), 1: (1, 0)},
    "div": {1: (1, 0)},
    "add": {0: (0, 1), 1: (0, 0)},
    "sub": {1: (0, 0)},
    "pow": {1: (1, 0)},
}

# Shape ops that are the identity when the type is unchanged (a transpose only if its axes are in order).
_NO_OP_WHEN_TYPE_KEPT = {"reshape", "broadcast_to", "transpose", "sum", "max", "min"}

_FOLD_MAX_SIZE = 1  # folding big constants is the fold pass's job, not construction's

# The operands an elementwise rule below looks for: constants to fold or that are neutral,
# broadcasts to drop.
_CONSTANTS = {"const", "zeros"}
REWRITABLE_OPERANDS = frozenset(_CONSTANTS | {"broadcast_to"})

# Non-elementwise ops whose operand 0 NumPy broadcasts to the shape they need (scatter_add's values).
_BROADCASTS_OPERAND_0 = {"scatter_add"}


def rewrite(graph, op: str, args: tuple, attrs: dict, out_type) -> int | None:
    """An existing or simpler node equal to ``op(args)``, or None to build it as asked."""
    definition = OPS[op]
    if op in _NO_OP_WHEN_TYPE_KEPT and graph.type(args[0]) == out_type \
            and (op != "transpose" or tuple(attrs["axes"]) == tuple(range(out_type.ndim))):
        return args[0]
    if definition.kind == "shape" and out_type.size <= _FOLD_MAX_SIZE and args \
            and all(graph[a].op == "const" for a in args):
        value = definition.eager(*(graph.const_value(a) for a in args), **attrs)
        return graph.const(np.asarray(value, dtype=out_type.dtype).reshape(out_type.shape))
    if op in _BROADCASTS_OPERAND_0 and graph[args[0]].op == "broadcast_to":
        return graph.add(op, (graph[args[0]].args[0],) + tuple(args[1:]), attrs)
    if not definition.is_elementwise or not args:
        return None
    operands = [graph.nodes[a] for a in args]
    if REWRITABLE_OPERANDS.isdisjoint([node.op for node in operands]):
        return None  # the common case, and every rule below needs such an operand
    constants = [graph.const_value(a) if node.op in _CONSTANTS and node.type.size <= _FOLD_MAX_SIZE else None
                 for a, node in zip(args, operands)]
    if all(c is not None for c in constants) and out_type.size <= _FOLD_MAX_SIZE:
        with np.errstate(all="ignore"):
            value = np.asarray(definition.eager(*constants, **attrs), dtype=out_type.dtype)
        return graph.const(value.reshape(out_type.shape))
    narrowed = None
    if any(node.op == "broadcast_to" for node in operands):
        narrowed = _without_implied_broadcasts(graph, args, out_type)
    if narrowed is not None:
        return graph.add(op, narrowed, attrs)
    for position, (neutral, kept) in _IDENTITY_OPERAND.get(op, {}).items():
        c = constants[position]
        is_neutral = (c is not None and _all_equal(c, neutral)) or \
            (neutral == 0 and graph[args[position]].op == "zeros")
        if is_neutral and graph.type(args[kept]) == out_type:
            return args[kept]
    return None


def _all_equal(array: np.ndarray, number) -> bool:
    # one element (the usual constant) compares as a Python number: NumPy's == costs ten times more
    return array.item() == number if array.size == 1 else bool((array == number).all())


def _without_implied_broadcasts(graph, args: tuple, out_type) -> tuple | None:
    """``args`` with each ``broadcast_to(x)`` replaced by ``x`` where NumPy's broadcasting among the
    operands still gives the result's shape, or None when there is none to drop."""
    narrowed, changed = list(args), False
    for position, arg in enumerate(args):
        node = graph[arg]
        if node.op != "broadcast_to":
            continue
        candidate = narrowed[:position] + [node.args[0]] + narrowed[position + 1:]
        if np.broadcast_shapes(*(graph.type(a).shape for a in candidate)) == out_type.shape:
            narrowed, changed = candidate, True
    return tuple(narrowed) if changed else None
