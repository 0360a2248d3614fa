"""Reverse mode: a graph-to-graph transform giving one joint forward+backward graph.

The forward nodes are copied first; then one walk over them in reverse
topological order (a loop, never recursion) applies each op's VJP rules from
the op table. Cotangents of a value used several times are summed (seed 003,
5.4); a rule's broadcast-shaped result is summed back to its operand's shape.
Inputs that do not affect the output get an explicit symbolic zero.
The result is an ordinary graph, so it can be differentiated again.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import numpy as np

from chainrule.ir import OPS, F, Graph, Value
from chainrule.ir.builder import unbroadcast


def reverse(forward: Graph, wrt: Sequence[int], cotangent_inputs: bool = False,
            name: Optional[str] = None, rewriter: Optional[Callable] = None) -> Graph:
    """The joint graph of ``forward``: outputs are forward's outputs, then d(output)/d(input) for
    each input position in ``wrt``.

    With one scalar output the seed cotangent is 1. With ``cotangent_inputs``
    the graph gets one extra input per output (named ``d<output>``) to seed
    from, which makes it a VJP of a function of any output shape. A ``rewriter``
    rule (see ``Graph.rewriting``) is applied to every backward node as it is
    built; nodes it makes dead are left for DCE.
    """
    joint = Graph(name or f"{forward.name}_grad")
    mapping = {i: joint.add_input(forward.type(i), forward[i].name, forward[i].loc) for i in forward.inputs}
    joint.transplant(forward, (i for i in range(len(forward)) if forward[i].op != "input"), mapping,
                     verbatim=True)
    joint.carry_name_hints(forward, mapping)
    outputs = [mapping[o] for o in forward.outputs]
    forward_size = len(joint)

    with joint.rewriting(rewriter):
        gradients = _backward(joint, forward, wrt, outputs, forward_size, cotangent_inputs)
    joint.set_outputs(outputs + gradients,
                      forward.output_names + [f"d{forward[forward.inputs[p]].name}" for p in wrt])
    return joint


def _backward(joint: Graph, forward: Graph, wrt: Sequence[int], outputs: list[int], forward_size: int,
              cotangent_inputs: bool) -> list[int]:
    """Build the backward pass into ``joint``; the ids of the gradients of the ``wrt`` inputs."""
    active = _active_nodes(joint, [joint.inputs[i] for i in wrt], forward_size)
    cotangents: dict[int, list[Value]] = {}
    for position, out in enumerate(outputs):
        if cotangent_inputs:
            seed = Value(joint, joint.add_input(joint.type(out), f"d{forward.output_names[position]}"))
        else:
            seed = Value(joint, joint.const(np.ones(joint.type(out).shape, joint.type(out).dtype)))
        cotangents.setdefault(out, []).append(seed)

    for node_id in range(forward_size - 1, -1, -1):
        contributions = cotangents.pop(node_id, None)
        if contributions is None or not active[node_id]:
            continue
        node = joint[node_id]
        cotangent = _sum(joint, contributions, node, node_id)
        if node.op == "input":
            cotangents[node_id] = [cotangent]  # kept for the result
            continue
        _propagate(joint, node_id, cotangent, active, cotangents)

    gradients = []
    for position in wrt:
        input_id = joint.inputs[position]
        summed = cotangents.get(input_id)
        gradients.append(summed[0].id if summed else joint.zeros(joint.type(input_id)))
    return gradients


def _active_nodes(graph: Graph, sources: list[int], size: int) -> bytearray:
    """Nodes that depend differentiably on ``sources`` (forward sweep in id order)."""
    active = bytearray(size)
    for source in sources:
        active[source] = 1
    for node_id in range(size):
        node = graph[node_id]
        if not active[node_id] and OPS[node.op].vjp is not None and any(active[a] for a in node.args):
            active[node_id] = 1
    return active


def _sum(joint: Graph, contributions: list[Value], node, node_id: int) -> Value:
    total = contributions[0]
    if len(contributions) > 1:
        with joint.attribution(node.loc, origin=node_id):
            for extra in contributions[1:]:
                total = total + extra
    record = joint[total.id]
    if record.name is None and node.name and record.op != "input":
        record.name = f"d{node.name}"
    return total


def _propagate(joint: Graph, node_id: int, cotangent: Value, active: bytearray, cotangents: dict) -> None:
    node = joint[node_id]
    op = OPS[node.op]
    operands = [Value(joint, a) for a in node.args]
    output, attrs = Value(joint, node_id), node.params
    with joint.attribution(node.loc, origin=node_id):
        for position, operand in enumerate(operands):
            if not active[operand.id]:
                continue
            rule = op.vjp_rule(position)
            if rule is None:
                continue
            contribution = rule(cotangent, output, *operands, **attrs)
            if contribution is None:
                continue
            if contribution.shape != operand.shape:
                contribution = unbroadcast(contribution, operand.shape)
            if contribution.dtype != operand.dtype:
                contribution = F.cast(contribution, dtype=operand.dtype)
            cotangents.setdefault(operand.id, []).append(contribution)
