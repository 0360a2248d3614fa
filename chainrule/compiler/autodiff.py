"""Reverse mode: a graph-to-graph transform giving one joint forward+backward graph.

The forward nodes are copied first; then one walk over them in reverse
topological order (a loop, never recursion) applies each op's VJP rules from
the op table. Cotangents of a value used several times are summed (seed 003,
5.4); a rule's broadcast-shaped result is summed back to its operand's shape.
Inputs that do not affect the output get an explicit symbolic zero.
The result is an ordinary graph, so it can be differentiated again.

Elementwise rules depend on nothing but their operands' types and attributes,
so each is run once per such signature, on placeholder values, and the nodes
it built are recorded as a small straight-line function of ``Graph.add`` calls;
every node of that signature replays it (so hash-consing and the rewrite rule
see each node as if the rule had built it). A deep chain repeats a handful of
signatures, and replaying costs a fraction of running the rule through
``Value`` operators.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from chainrule.ir import OPS, F, Graph, Value
from chainrule.ir.builder import unbroadcast
from chainrule.ir.control import tape_loops
from chainrule.ir.custom import inline_consumed
from chainrule.ir.ops import cancels_itself
from chainrule.ir.structural_zeros import StructuralZeros, away_from_zeros, needs_guard, structural_zeros


def reverse(
    forward: Graph,
    wrt: Sequence[int],
    cotangent_inputs: bool = False,
    name: str | None = None,
    rewriter: Callable | None = None,
) -> Graph:
    """The joint graph of ``forward``: outputs are forward's outputs, then d(output)/d(input) for
    each input position in ``wrt``.

    With one scalar output the seed cotangent is 1. With ``cotangent_inputs``
    the graph gets one extra input per output (named ``d<output>``) to seed
    from, which makes it a VJP of a function of any output shape. A ``rewriter``
    rule (see ``Graph.rewriting``) is applied to every backward node as it is
    built; nodes it makes dead are left for DCE.
    """
    forward = tape_loops(forward)  # a loop keeps the carries its backward loop reads
    joint = Graph.continuing(forward, name or f"{forward.name}_grad")
    outputs = list(forward.outputs)
    forward_size = len(joint)

    with joint.rewriting(rewriter):
        gradients = _backward(joint, forward, wrt, outputs, forward_size, cotangent_inputs)
    joint.set_outputs(outputs + gradients, forward.output_names + [f"d{forward[forward.inputs[p]].name}" for p in wrt])
    return inline_consumed(joint, rewriter, [joint.inputs[p] for p in wrt])  # used rules become primal ops


def _backward(
    joint: Graph, forward: Graph, wrt: Sequence[int], outputs: list[int], forward_size: int, cotangent_inputs: bool
) -> list[int]:
    """Build the backward pass into ``joint``; the ids of the gradients of the ``wrt`` inputs."""
    active = _active_nodes(joint, [joint.inputs[i] for i in wrt], forward_size)
    zeros = structural_zeros(joint, forward_size)  # elements constant at 0 (x - x, unwritten np.zeros)
    cotangents: dict[int, list[int]] = {}
    for position, out in enumerate(outputs):
        if cotangent_inputs:
            seed = joint.add_input(joint.type(out), f"d{forward.output_names[position]}")
        else:
            seed = joint.const(np.ones(joint.type(out).shape, joint.type(out).dtype))
        cotangents.setdefault(out, []).append(seed)

    nodes = joint.nodes
    for node_id in range(forward_size - 1, -1, -1):
        contributions = cotangents.pop(node_id, None)
        if contributions is None or not active[node_id]:
            continue
        node = nodes[node_id]
        cotangent = contributions[0] if len(contributions) == 1 else _sum(joint, contributions, node, node_id)
        if node.name:
            _name_cotangent(joint, cotangent, node.name)
        if node.op == "input":
            cotangents[node_id] = [cotangent]  # kept for the result
            continue
        _propagate(joint, node_id, cotangent, active, cotangents, zeros)

    gradients = []
    for position in wrt:
        input_id = joint.inputs[position]
        summed = cotangents.get(input_id)
        gradients.append(summed[0] if summed else joint.zeros(joint.type(input_id)))
    return gradients


def _active_nodes(graph: Graph, sources: list[int], size: int) -> bytearray:
    """Nodes that depend differentiably on ``sources`` (forward sweep in id order): through an
    operand whose rule is not None (``stop_gradient(x)`` is inactive, so an operand it feeds asks
    no rule, not even one that refuses, ``special_functions.refused_rule``)."""
    active = bytearray(size)
    for source in sources:
        active[source] = 1
    nodes = graph.nodes
    for node_id in range(size):
        if active[node_id]:
            continue
        node = nodes[node_id]
        op = OPS[node.op]
        if op.vjp is None:
            continue
        active[node_id] = any(active[a] and op.vjp_rule(position) is not None for position, a in enumerate(node.args))
    return active


def _sum(joint: Graph, contributions: list[int], node, node_id: int) -> int:
    """The cotangent of a value used several times: the sum of what each use sends back."""
    total = contributions[0]
    with joint.attribution(node.loc, origin=node_id):
        for extra in contributions[1:]:
            total = joint.add("add", (total, extra))
    return total


def _name_cotangent(joint: Graph, cotangent: int, name: str) -> None:
    """The cotangent of the user's ``A`` reads ``dA``, unless it has a name already."""
    record = joint.nodes[cotangent]
    if record.name is None and record.op != "input":
        joint.name_node(cotangent, f"d{name}")


def _propagate(
    joint: Graph, node_id: int, cotangent: int, active: bytearray, cotangents: dict, zeros: StructuralZeros
) -> None:
    nodes = joint.nodes
    node = nodes[node_id]
    op = OPS[node.op]
    args = node.args
    elementwise = op.kind == "elementwise"
    if (elementwise and cancels_itself(node.op, args)) or node_id in zeros.vanishing:
        return  # x - x, x / x, x * (x - x): no gradient flows (see ir.ops.SELF_CANCELLING)
    guarded = bool(zeros.partial) and elementwise and needs_guard(node)
    if elementwise:
        operand_types = tuple([nodes[a].type for a in args])
    with joint.attribution(node.loc, origin=node_id):
        for position, operand in enumerate(args):
            if not active[operand]:
                continue
            if elementwise:
                signature = (node.op, position, node.attrs, nodes[cotangent].type, node.type, operand_types)
                try:
                    recording = _RECORDINGS[signature]
                except KeyError:  # a signature not seen yet (None is a recording: no gradient flows)
                    recording = _record_now(op, signature)
                rule_output, rule_args = node_id, args
                if guarded and operand in zeros.partial:  # no 0 / 0 for NumPy to warn of (see the guard)
                    rule_output, rule_args = away_from_zeros(joint, node, args, {position: zeros.partial[operand]})
                contribution = None if recording is None else recording(joint.add, cotangent, rule_output, *rule_args)
            else:
                result = _contribution(
                    op,
                    position,
                    Value(joint, cotangent),
                    Value(joint, node_id),
                    [Value(joint, a) for a in args],
                    dict(node.attrs),
                )
                contribution = None if result is None else result.id
            if contribution is not None and guarded and operand in zeros.partial:
                # sqrt'(0) * 0 at an element constant at 0: the operand's derivative there is 0
                mask = joint.const(zeros.partial[operand])
                contribution = joint.add("where", (mask, joint.zeros(nodes[operand].type), contribution))
            if contribution is not None:
                cotangents.setdefault(operand, []).append(contribution)


def _contribution(
    op, position: int, cotangent: Value, output: Value, operands: list[Value], attrs: dict
) -> Value | None:
    """What operand ``position`` of ``output = op(*operands)`` gets of the cotangent: the op's rule,
    summed back to the operand's shape and cast to its dtype; None when no gradient flows there."""
    rule = op.vjp_rule(position)
    if rule is None:
        return None
    contribution = rule(cotangent, output, *operands, **attrs)
    if contribution is None:
        return None
    operand = operands[position]
    have, want = contribution.type, operand.type
    if have is not want:  # types are interned: equal types are usually one object
        if have.shape != want.shape:
            contribution = unbroadcast(contribution, want.shape)
        if contribution.dtype != want.dtype:
            contribution = F.cast(contribution, dtype=want.dtype)
    return contribution


# (op, operand position, attrs, cotangent type, output type, operand types) -> its recording
_RECORDINGS: dict[tuple, Recording] = {}
_RECORDINGS_MAX = 1 << 14

# A recording: a function ``replay(add, cotangent, output, *operands) -> id`` that builds, with
# ``add`` (the joint graph's), the nodes a rule built for one signature; None when no gradient flows.
Recording = Callable[..., int] | None


def _record_now(op, signature: tuple) -> Recording:
    """Record ``signature``'s rule (on its first use) and remember the recording."""
    if len(_RECORDINGS) >= _RECORDINGS_MAX:
        _RECORDINGS.clear()
    recording = _RECORDINGS[signature] = _record(op, signature)
    return recording


def _record(op, signature: tuple) -> Recording:
    """Run an elementwise rule on placeholders of the signature's types and keep what it built, as
    straight-line Python: one ``add`` per node, each with its result type (``replay.source``)."""
    name, position, attrs, cotangent_type, output_type, operand_types = signature
    scratch = Graph("rule")
    placeholders = [
        Value(scratch, scratch.add_input(t, f"p{i}"))
        for i, t in enumerate((cotangent_type, output_type) + operand_types)
    ]
    result = _contribution(op, position, placeholders[0], placeholders[1], placeholders[2:], dict(attrs))
    if result is None:
        return None
    scratch.set_outputs([result.id])
    values = {p.id: f"v{index}" for index, p in enumerate(placeholders)}
    lines = [f"def replay(add, {', '.join(values.values())}):"]
    constants: dict[str, Any] = {}
    for node_id in scratch.live_nodes():  # only what the result needs: a rewritten-away constant stays behind
        node = scratch[node_id]
        if node.op == "input":
            continue
        values[node_id] = value = f"v{len(values)}"
        operands = ", ".join(values[a] for a in node.args) + ("," if len(node.args) == 1 else "")
        constants[f"type_{value}"] = node.type
        attrs_name = "None"
        if node.attrs:
            attrs_name = f"attrs_{value}"
            constants[attrs_name] = node.params
        lines.append(f"    {value} = add({node.op!r}, ({operands}), {attrs_name}, known_type=type_{value})")
    lines.append(f"    return {values[result.id]}")
    source = "\n".join(lines) + "\n"
    exec(compile(source, f"<recorded rule: {name} operand {position}>", "exec"), constants)
    replay = constants["replay"]
    replay.source = source
    return replay
