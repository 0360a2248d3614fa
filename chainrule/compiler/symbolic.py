"""Symbolic regions: small elementwise regions of the backward pass, simplified by SymPy.

Reverse mode differentiates one op at a time, so the gradient of binary
cross-entropy through a sigmoid comes out as ``(1-y) sigmoid(z) - y sigmoid(-z)``
(times the mean's 1/m): correct, but not the textbook's ``a - y``. Seen whole,
the region is a small expression SymPy can simplify. For each backward region
of at most ``MAX_STEPS`` smooth elementwise ops (the regions fusion would
make), this pass

1. writes the region as a SymPy expression of its inputs, looking through
   inputs that are a negation or ``c - x`` (so ``sigmoid(-z)`` is seen as
   such). sigmoid and softplus stay opaque functions with their reflection
   identities ``sigmoid(-x) = 1 - sigmoid(x)``, ``softplus(-x) = softplus(x) - x``
   applied, rather than their exp forms, which would come back as overflowing
   ``exp(z)/(1 + exp(z))``;
2. expands and refactors it (``factor_terms(expand(...))``: polynomial work
   on a bounded expression, so no expression swell);
3. keeps the result only when it has fewer operations and no function the
   region did not already have, and rebuilds the region from it.

Both translations, region -> SymPy (the ops' definitions, the opaque functions
and their reflections) and SymPy -> graph, are ``chainrule.ir.sympy_bridge``'s,
which ``cr.from_sympy`` and ``cr.to_sympy`` use too.

Large regions keep reverse mode over their scalar DAG. Identical regions (a
deep chain repeats one shape thousands of times) are simplified once: results
are cached by the region's structure.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import cast

import sympy as sp

from chainrule.compiler.fuse import regions_and_sizes
from chainrule.ir import Graph, sympy_bridge
from chainrule.ir.sympy_bridge import number

MAX_STEPS = 24
_SMOOTH = {
    "neg",
    "add",
    "sub",
    "mul",
    "div",
    "exp",
    "log",
    "sqrt",
    "sin",
    "cos",
    "tanh",
    "sigmoid",
    "softplus",
    "expm1",
    "log1p",
}


def symbolic_regions(graph: Graph) -> Graph:
    """``graph`` with each small backward region replaced by its SymPy-simplified form, where smaller."""
    region, sizes = regions_and_sizes(graph, min_elements=1)
    # the backward regions small enough to hand to SymPy (a deep chain has none), and their members
    small = {root for root, size in sizes.items() if 2 <= size <= MAX_STEPS and graph.nodes[root].origin is not None}
    if not small:
        return graph
    members: dict[int, list[int]] = {}
    for node_id, root in enumerate(region):
        if root in small:
            members.setdefault(root, []).append(node_id)
    replacements: dict[int, tuple] = {}  # root -> (expression, input ids, symbols)
    for root, nodes in members.items():
        if any(graph[n].op not in _SMOOTH or graph[n].recomputed for n in nodes):
            continue
        key, inputs = _region_key(graph, nodes, region)
        simplified = _simplify_region(key)
        if simplified is not None:
            replacements[root] = (simplified, inputs)
    if not replacements:
        return graph
    replaced = {n for root in replacements for n in members[root]}
    result = Graph(graph.name)
    # inputs are named
    mapping = {i: result.add_input(graph.type(i), cast(str, graph[i].name), graph[i].loc) for i in graph.inputs}
    original = {new: old for old, new in mapping.items()}  # mapping's inverse, kept as mapping grows
    for node_id in range(len(graph)):
        node = graph[node_id]
        if node.op == "input" or (node_id in replaced and node_id not in replacements):
            continue
        origin = mapping.get(node.origin) if node.origin is not None else None
        if node_id in replacements:
            expression, inputs = replacements[node_id]
            first_new = len(result)
            with result.attribution(node.loc, origin):
                new = _emit(result, expression, [mapping[i] for i in inputs], node.type)
            _restore_names(graph, result, range(first_new, len(result)), original)
            if result[new].name is None and result[new].op not in ("input", "const"):
                result[new].name = node.name
            mapping[node_id] = new
            original[new] = node_id
            continue
        add = result.add_recomputed if node.recomputed else result.add
        mapping[node_id] = copy = add(
            node.op, tuple(mapping[a] for a in node.args), node.params, loc=node.loc, name=node.name, origin=origin
        )
        original[copy] = node_id
    result.set_outputs([mapping[o] for o in graph.outputs], graph.output_names)
    result.carry_name_hints(graph, mapping)
    return result


def _restore_names(graph: Graph, result: Graph, new_ids: Iterable[int], original: dict[int, int]) -> None:
    """A rebuilt value the user had named before a rewrite removed it (``A2 = sigmoid(Z2)``) gets
    that name back, so the gradient reads ``dZ2 = A2 - Y``. ``original`` maps ids in ``result``
    to the ids in ``graph`` they copy."""
    for node_id in new_ids:
        node = result[node_id]
        if node.name is None and all(a in original for a in node.args):
            node.name = graph.name_hints.get((node.op, tuple(original[a] for a in node.args), node.attrs))


# ---- region -> SymPy --------------------------------------------------------------------------


def _region_key(graph: Graph, nodes: list[int], region: list[int]) -> tuple[tuple, list[int]]:
    """The region as a hashable program over numbered inputs, looking through a negation or ``c - x``
    input; and the input ids. Scalar constants are part of the key (by value). A value inside
    another region is never looked through to: that region may be rebuilt without it."""
    inside = set(nodes)

    def visible(a: int) -> bool:
        return a not in inside and region[a] in (-1, a)

    inputs: list[int] = []
    steps: list[tuple] = []
    index_of: dict[int, int] = {}

    def operand(a: int) -> tuple:
        if a in inside:
            return ("step", index_of[a])
        value = graph.const_value(a)
        if value is not None and value.size == 1:
            return ("number", float(value.reshape(())))
        source = graph[a]
        if source.op == "neg" and visible(source.args[0]):
            return ("neg", operand(source.args[0]))
        minuend = graph.const_value(source.args[0]) if source.op == "sub" else None
        if minuend is not None and graph.type(source.args[0]).size == 1 and visible(source.args[1]):
            return ("rsub", float(minuend.reshape(())), operand(source.args[1]))
        if a not in inputs:
            inputs.append(a)
        return ("input", inputs.index(a))

    for n in nodes:
        index_of[n] = len(steps)
        steps.append((graph[n].op, tuple(operand(a) for a in graph[n].args)))
    return tuple(steps), inputs


@functools.lru_cache(maxsize=4096)
def _simplify_region(key: tuple) -> sp.Expr | None:
    """The simplified expression of a region (inputs are symbols a0, a1, ...), or None if not smaller."""
    values: list[sp.Expr] = []

    def value(operand: tuple) -> sp.Expr:
        kind = operand[0]
        if kind == "step":
            return values[operand[1]]
        if kind == "number":
            return number(operand[1])
        if kind == "neg":
            return -value(operand[1])
        if kind == "rsub":
            return number(operand[1]) - value(operand[2])
        return _input_symbol(operand[1])

    for op, operands in key:
        values.append(sympy_bridge.op_expression(op, [value(o) for o in operands], opaque=True))
    original = values[-1]
    candidate = sp.factor_terms(sp.expand(sympy_bridge.reflected(original)))
    # no function the region did not have, and none but the smooth ops (sqrt(x*x) evaluates to Abs(x))
    heads = {e.func for e in original.atoms(sp.Function)}
    if any(e.func not in heads or sympy_bridge.op_of_head(e.func) not in _SMOOTH for e in candidate.atoms(sp.Function)):
        return None
    if sp.count_ops(candidate) >= _operation_count(key):
        return None
    return candidate


def _input_symbol(position: int) -> sp.Symbol:
    """The symbol standing for a region's input ``position``."""
    return sp.Symbol(f"a{position}", real=True)


def _operation_count(key: tuple) -> int:
    """Operations the region computes now, including the negations and ``c - x`` it looked through."""

    def extra(operand: tuple) -> int:
        if operand[0] == "neg":
            return 1 + extra(operand[1])
        if operand[0] == "rsub":
            return 1 + extra(operand[2])
        return 0

    return sum(1 + sum(extra(o) for o in operands) for _, operands in key)


# ---- SymPy -> graph --------------------------------------------------------------------------


def _emit(graph: Graph, expression: sp.Expr, inputs: list[int], type) -> int:
    """Build ``expression`` (symbols a0, a1, ... are ``inputs``) in ``graph``; a result of another shape
    is broadcast to ``type``."""
    symbols = {_input_symbol(position): node for position, node in enumerate(inputs)}
    (result,) = sympy_bridge.build(graph, [expression], symbols, type.dtype, exact_rationals=False)
    if graph.type(result).shape != type.shape:
        result = graph.add("broadcast_to", (result,), {"shape": type.shape})
    return result
