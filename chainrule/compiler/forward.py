"""Forward mode (JVP): a graph-to-graph transform adding a tangent to every value it depends on.

Seed 003 (4.4) describes forward mode with dual numbers x + εx' (ε² = 0): each
value carries its tangent along, and each op maps its operands' tangents to
its own. One walk in id order (a loop: ids are a topological order) does this
for the whole graph. The rules come from the op table, one source of truth:

- elementwise ops: the VJP rule of operand i is ``g * ∂y/∂x_i`` (linear in the
  cotangent g, elementwise), so called with the tangent t_i in place of g it gives
  ``∂y/∂x_i * t_i``; the tangent of y is the sum over operands;
- ops marked ``LINEAR`` (sum, reshape, transpose, broadcast_to, concatenate,
  indexing) are their own JVP: the op applied to the tangents;
- ``MULTILINEAR`` ops (matmul) follow the product rule;
- the rest declare a rule in their table entry (max/min reductions).

The result is an ordinary graph, so every pass, printer and backend works on
it, and it can be differentiated again (forward over reverse gives Hessian-vector
products without ever building the Hessian).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import numpy as np

from chainrule.errors import UnsupportedError
from chainrule.ir import OPS, F, Graph, Value
from chainrule.ir.builder import apply
from chainrule.ir.custom import inline_consumed
from chainrule.ir.node import Node
from chainrule.ir.ops import LINEAR, MULTILINEAR, Op, cancels_itself
from chainrule.ir.structural_zeros import away_from_zeros, needs_guard, structural_zeros


def forward(
    primal: Graph,
    wrt: Sequence[int],
    of: Sequence[int] | None = None,
    keep_primal: bool = True,
    name: str | None = None,
) -> Graph:
    """The JVP graph of ``primal``.

    Inputs: ``primal``'s inputs, then one tangent input per input position in
    ``wrt`` (named ``t<input>``, same type). Outputs: ``primal``'s outputs (unless
    ``keep_primal`` is False), then the tangent of each output position in ``of``
    (default: every output); an output that does not depend on ``wrt`` has a
    symbolic zero tangent.
    """
    jvp = Graph(name or f"{primal.name}_jvp")
    # inputs are named (add_input takes a str)
    mapping = {i: jvp.add_input(primal.type(i), cast(str, primal[i].name), primal[i].loc) for i in primal.inputs}
    tangents: dict[int, Value] = {}
    for position in wrt:
        source = primal.inputs[position]
        tangent_input = jvp.add_input(primal.type(source), f"t{primal[source].name}", primal[source].loc)
        tangents[mapping[source]] = Value(jvp, tangent_input)
    jvp.transplant(primal, (i for i in range(len(primal)) if primal[i].op != "input"), mapping)
    jvp.carry_name_hints(primal, mapping)

    zeros = structural_zeros(primal)  # elements constant at 0 (x - x, unwritten np.zeros): no tangent
    for node_id in range(len(primal)):
        node = primal[node_id]
        result = mapping[node_id]
        if node.op == "input" or result in tangents or node_id in zeros.vanishing:
            continue  # (a hash-consed duplicate already has its tangent)
        operand_tangents = [tangents.get(mapping[a]) for a in node.args]
        if not any(t is not None for t in operand_tangents) or not jvp.type(result).is_float:
            continue
        mask = zeros.partial.get(node_id) if needs_guard(node) else None
        with jvp.attribution(node.loc, origin=result):
            tangent = _guarded_tangent(jvp, node, result, [mapping[a] for a in node.args], operand_tangents, mask)
        if tangent is None:
            continue
        record = jvp[tangent.id]
        if record.name is None and node.name and record.op not in ("input", "const", "zeros"):
            record.name = f"t{node.name}"
        tangents[result] = tangent

    of = range(len(primal.outputs)) if of is None else of
    outputs, names = ([mapping[o] for o in primal.outputs], list(primal.output_names)) if keep_primal else ([], [])
    for position in of:
        out = mapping[primal.outputs[position]]
        tangent = tangents.get(out)
        outputs.append(tangent.id if tangent is not None else jvp.zeros(jvp.type(out)))
        names.append(f"t{primal.output_names[position]}")
    jvp.set_outputs(outputs, names)
    return inline_consumed(jvp, None, [mapping[primal.inputs[p]] for p in wrt])  # used rules become primal ops


def _tangent(
    graph: Graph, op_name: str, operands: list[Value], output: Value, attrs: dict, tangents: list[Value | None]
) -> Value | None:
    """The tangent of ``output = op(*operands)``; None when no tangent flows (a zero)."""
    op = OPS[op_name]
    if op.vjp is None:  # not differentiable (stop_gradient-like): nothing flows, as in reverse mode
        return None
    if cancels_itself(op_name, [operand.id for operand in operands]):
        return None  # x - x, x / x: a zero tangent (see ir.ops.SELF_CANCELLING)
    if op.jvp is None and op.is_elementwise:
        tangent = _elementwise_tangent(op, operands, output, attrs, tangents)
    elif op.jvp == LINEAR:
        tangent = apply(op_name, *_tangents_or_zeros(graph, op, operands, tangents), **attrs)
    elif op.jvp == MULTILINEAR:
        tangent = None
        for position, operand_tangent in enumerate(tangents):
            if operand_tangent is not None:
                replaced = list(operands)
                replaced[position] = operand_tangent
                term = apply(op_name, *replaced, **attrs)
                tangent = term if tangent is None else tangent + term
    elif callable(op.jvp):
        tangent = op.jvp(tangents, output, *operands, **attrs)
    else:
        raise UnsupportedError(f"forward mode has no rule for the op {op_name!r}")
    if tangent is None:
        return None
    if tangent.dtype != output.dtype:
        tangent = F.cast(tangent, dtype=output.dtype)
    if tangent.shape != output.shape:
        tangent = F.broadcast_to(tangent, shape=output.shape)
    return tangent


def _elementwise_tangent(op, operands, output, attrs, tangents) -> Value | None:
    """Σ_i ∂y/∂x_i · t_i, each term the operand's VJP rule with the tangent as the cotangent."""
    tangent = None
    for position, operand_tangent in enumerate(tangents):
        if operand_tangent is None:
            continue
        rule = op.vjp_rule(position)
        term = rule(operand_tangent, output, *operands, **attrs) if rule is not None else None
        if term is not None:
            tangent = term if tangent is None else tangent + term
    return tangent


def _guarded_tangent(
    graph: Graph, node: Node, output: int, args: Sequence[int], tangents: list[Value | None], mask: np.ndarray | None
) -> Value | None:
    """The tangent of ``output``, the copy of primal ``node`` on ``args``; 0 at ``mask`` (output
    elements constant at 0 after an op whose rule can be infinite there: 0 / (2 sqrt(0))). The rule
    sees 1 where every operand is such a constant 0, so NumPy has no division by 0 to warn of."""
    if mask is not None:
        moves = {p: mask for p, a in enumerate(args) if graph.type(a).shape == mask.shape}
        output, args = away_from_zeros(graph, node, args, moves)
    operands = [Value(graph, a) for a in args]
    tangent = _tangent(graph, node.op, operands, Value(graph, output), node.params, tangents)
    return tangent if tangent is None or mask is None else _zero_where(tangent, mask)


def _zero_where(tangent: Value, mask) -> Value:
    """``tangent`` with its elements at ``mask`` (structural zeros: constants) set to 0."""
    graph = tangent.graph
    zero = Value(graph, graph.zeros(tangent.type))
    return F.where(Value(graph, graph.const(mask)), zero, tangent)


def _tangents_or_zeros(graph: Graph, op: Op, operands: list[Value], tangents: list[Value | None]) -> list[Value]:
    """A linear op's operands for its JVP: tangents, a zero for a float operand without one or an
    integer one the op reads as data (the 2 in ``concatenate([x, [2]])``: its reverse rule has a
    cotangent for it), and integer operands read as indices as they are."""
    replaced = []
    for position, (operand, tangent) in enumerate(zip(operands, tangents)):
        if tangent is not None:
            replaced.append(tangent)
        elif operand.type.is_float or op.vjp_rule(position) is not None:
            replaced.append(Value(graph, graph.zeros(operand.type)))
        else:
            replaced.append(operand)
    return replaced
