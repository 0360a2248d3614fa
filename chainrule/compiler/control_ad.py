"""Reverse and forward mode through loops (``chainrule.ir.control``): the rules of the ``loop`` op.

Reverse mode: the forward loop keeps its tape (``tape_loops``: the carry each step started from),
and the backward pass is another loop, a scan the other way over the body's VJP: its carry is the
cotangent of the carry plus the sums of the cotangents of the values the body closes over, its
per-step inputs are the tape, the forward's per-step inputs and the cotangents of the per-step
outputs, and it stacks the cotangents of the per-step inputs. Each operand's rule takes its part of
that one backward loop (hash-consing makes it one node for all of them).

Forward mode: a loop over the body's JVP, carrying the tangents of the carry beside it.

Both derive their body once per forward body (``Body.derived``) with the passes that differentiate
any graph (``reverse``, ``forward``): a derived body is an ordinary graph, so its loop can be
differentiated again.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from chainrule.compiler.autodiff import reverse
from chainrule.compiler.forward import forward
from chainrule.ir import F, Graph, Value, index_regions
from chainrule.ir.control import RULES, Body, loop_leaves, pack, rebuilt, tape_loops, unpack, while_leaves
from chainrule.ir.types import TensorType


def _floats(types: Sequence[TensorType], start: int = 0) -> list[int]:
    return [start + i for i, t in enumerate(types) if t.is_float]


# ---- reverse mode ---------------------------------------------------------------------------------


class Split:
    """A loop's operands and results by role: carry, per-step inputs, closed-over values, outputs.
    ``constant`` marks operands that are constants: reverse mode leaves out their cotangents (a
    scan over a constant grid needs none), so ``float_xs`` and ``float_consts`` skip them."""

    def __init__(self, operand_types: Sequence[TensorType], attrs: dict[str, Any], constant: Sequence[bool] = ()):
        n_carry, n_xs = attrs["n_carry"], attrs["n_xs"]
        self.carry = list(operand_types[:n_carry])
        self.xs = list(operand_types[n_carry : n_carry + n_xs])
        self.consts = list(operand_types[n_carry + n_xs :])
        self.ys = attrs["body"].output_types[n_carry:]  # one step's
        self.float_carry = _floats(self.carry)
        constant = list(constant) or [False] * len(operand_types)
        self.float_xs = [i for i in _floats(self.xs) if not constant[n_carry + i]]
        self.float_consts = [i for i in _floats(self.consts) if not constant[n_carry + n_xs + i]]
        self.float_ys = _floats(self.ys)
        self.key = f"{self.float_xs} {self.float_consts}"  # what a derived backward body depends on


def constant_operands(operands: Sequence[Value]) -> list[bool]:
    graph = operands[0].graph if operands else None
    return [graph is not None and graph[o.id].op in ("const", "zeros") for o in operands]


def backward_body(body: Body, split: Split, tape_cotangents: bool = False) -> Body:
    """The step of the backward loop. Inputs: ``[t, dcarry (float carry), dconst sums (float consts),
    tape_t (carry), x_t, dy_t (float ys), dtape_t (float carry, with tape_cotangents), consts]``;
    outputs: ``[dcarry, dconst sums, dx_t (float xs)]``. A tape's cotangent (second order: the
    backward loop read the tape) joins the carry's at the step that started from that carry."""
    forward_body = tape_loops(body.graph)
    n_carry, n_xs = len(split.carry), len(split.xs)
    wrt = [1 + i for i in split.float_carry]
    wrt += [1 + n_carry + i for i in split.float_xs]
    wrt += [1 + n_carry + n_xs + i for i in split.float_consts]
    joint = reverse(forward_body, wrt, cotangent_inputs=True, name=f"{body.graph.name}_vjp")
    graph = Graph(f"{body.graph.name}_vjp")
    inputs = joint.inputs
    n_in, n_out = len(forward_body.inputs), len(forward_body.outputs)
    seeds = inputs[n_in : n_in + n_out]
    mapping = {inputs[0]: graph.add_input(joint.type(inputs[0]), "t")}
    for i in split.float_carry:
        mapping[seeds[i]] = graph.add_input(split.carry[i], f"dcarry{i}")
    sums = [graph.add_input(split.consts[i], f"dsum{i}") for i in split.float_consts]
    for i in range(n_carry + n_xs):
        mapping[inputs[1 + i]] = graph.add_input(joint.type(inputs[1 + i]), joint[inputs[1 + i]].name)
    for i in split.float_ys:
        mapping[seeds[n_carry + i]] = graph.add_input(split.ys[i], f"dy{i}")
    tapes = [graph.add_input(split.carry[i], f"dtape{i}") for i in split.float_carry] if tape_cotangents else []
    for i in range(len(split.consts)):
        node_id = inputs[1 + n_carry + n_xs + i]
        mapping[node_id] = graph.add_input(joint.type(node_id), joint[node_id].name)
    for seed in seeds:  # cotangents of integer results: zeros
        if seed not in mapping:
            mapping[seed] = graph.zeros(joint.type(seed))
    gradients = joint.outputs[n_out:]
    kept = Graph.continuing(joint)
    kept.set_outputs(gradients)
    graph.transplant(joint, [i for i in kept.live_nodes() if joint[i].op != "input"], mapping)
    n_c, n_x = len(split.float_carry), len(split.float_xs)
    d_carry = [mapping[g] for g in gradients[:n_c]]
    d_carry = [graph.add("add", (d, tape)) for d, tape in zip(d_carry, tapes)] if tapes else d_carry
    d_xs = [mapping[g] for g in gradients[n_c : n_c + n_x]]
    d_consts = [graph.add("add", (s, mapping[g])) for s, g in zip(sums, gradients[n_c + n_x :])]
    graph.set_outputs(d_carry + d_consts + d_xs)
    return Body(graph)


def _cotangents(g: Value, y: Value, operands: Sequence[Value], attrs: dict[str, Any]) -> list[Value | None]:
    """The cotangent of each operand of a taped loop, from the cotangent ``g`` of its result ``y``."""
    types = [o.type for o in operands]
    split = Split(types, attrs, constant_operands(operands))
    body: Body = attrs["body"]
    n_carry, n_ys = len(split.carry), len(split.ys)
    leaves = loop_leaves(types, attrs)
    tape_start = sum(t.size for t in leaves[: n_carry + n_ys])
    tape_cotangents = not _slice_is_zero(g, tape_start, g.type.size)
    kind = f"vjp {split.key}" + (" with tape cotangents" if tape_cotangents else "")
    step_vjp = body.derived(kind, lambda: backward_body(body, split, tape_cotangents))
    g_leaves = unpack_cotangent(g, leaves)
    tape = unpack(y, leaves)[n_carry + n_ys :]
    graph = g.graph
    carry = [g_leaves[i] for i in split.float_carry]
    sums = [Value(graph, graph.zeros(split.consts[i])) for i in split.float_consts]
    xs = tape + list(operands[n_carry : n_carry + len(split.xs)])
    xs += [g_leaves[n_carry + i] for i in split.float_ys]
    xs += [g_leaves[n_carry + n_ys + i] for i in split.float_carry] if tape_cotangents else []
    consts = list(operands[n_carry + len(split.xs) :])
    loop_attrs = {
        "body": step_vjp,
        "length": attrs["length"],
        "reverse": not attrs["reverse"],
        "tape": False,
        "n_carry": len(carry) + len(sums),
        "n_xs": len(xs),
    }
    backward_operands = carry + sums + xs + consts
    backward_types = [v.type for v in backward_operands]
    packed = Value(graph, graph.add("loop", [v.id for v in backward_operands], loop_attrs))
    results = unpack(packed, loop_leaves(backward_types, loop_attrs))
    cotangents: list[Value | None] = [None] * len(operands)
    n_c, n_k = len(split.float_carry), len(split.float_consts)
    for i, result in zip(split.float_carry, results[:n_c]):
        cotangents[i] = result
    for i, result in zip(split.float_consts, results[n_c : n_c + n_k]):
        cotangents[n_carry + len(split.xs) + i] = result
    for i, result in zip(split.float_xs, results[n_c + n_k :]):
        cotangents[n_carry + i] = result
    return cotangents


def unpack_cotangent(g: Value, leaves: Sequence[TensorType]) -> list[Value]:
    """``unpack(g, leaves)`` for the cotangent of a packed result, read through the sum of slice
    scatters reverse mode builds for it when each leaf's cotangent is scattered into zeros: then
    the leaves' own cotangents, and the packed zeros (as large as a loop's whole tape) are never
    made."""
    graph = g.graph
    ranges: dict[tuple[int, int], int] = {}
    start = 0
    for position, leaf in enumerate(leaves):
        ranges[(start, start + leaf.size)] = position
        start += leaf.size
    parts: list[list[int]] = [[] for _ in leaves]
    pending = [g.id]
    while pending:
        node = graph[pending.pop()]
        if node.op == "add" and node.type == g.type:
            pending.extend(node.args)
        elif node.op == "scatter_add" and node.type == g.type and len(node.params["index"]) == 1:
            kind, begin, end, step = node.params["index"][0]
            leaf_at = ranges.get((begin, end)) if kind == "slice" and step is None else None
            value_type = graph.type(node.args[0])
            if leaf_at is None or value_type.ndim > 1 or value_type.size not in (1, leaves[leaf_at].size):
                return unpack(g, leaves)
            parts[leaf_at].append(node.args[0])
        elif node.op != "zeros":
            return unpack(g, leaves)
    values = []
    for leaf, contributions in zip(leaves, parts):
        if not contributions:
            values.append(Value(graph, graph.zeros(TensorType(leaf.shape, g.dtype))))
            continue
        total = Value(graph, contributions[0])
        for extra in contributions[1:]:
            total = total + Value(graph, extra)
        flat = total if total.type.size == leaf.size else F.broadcast_to(total, shape=(leaf.size,))
        values.append(F.reshape(flat, shape=leaf.shape))
    return [v if v.dtype == leaf.dtype else F.cast(v, dtype=leaf.dtype) for v, leaf in zip(values, leaves)]


def _slice_is_zero(packed: Value, start: int, stop: int) -> bool:
    """Is ``packed[start:stop]`` zero by construction (a sum of zeros and of scatters elsewhere)? The
    cotangent of a loop's tape is, unless the tape itself was read (by a backward loop)."""
    if start >= stop:
        return True
    graph = packed.graph
    pending = [packed.id]
    while pending:
        node = graph[pending.pop()]
        if node.op == "add":
            pending.extend(node.args)
        elif node.op == "scatter_add":
            written = index_regions.intervals(node.params["index"], node.type.shape)
            if written is None or not index_regions.misses(written, [(start, stop, False)]):
                return False
        elif node.op != "zeros":
            return False
    return True


def taped_loop_vjp(position: int, g: Value, y: Value, *operands: Value, **attrs: Any) -> Value | None:
    """The cotangent of operand ``position`` of a loop (see the module doc); a loop with a
    ``checkpoint`` takes ``compiler.loop_checkpoint``'s rule instead."""
    if not attrs["tape"]:  # reverse mode tapes loops first; a loop reached otherwise runs again, taped
        taped = {**attrs, "tape": True}
        graph = y.graph
        y = Value(graph, graph.add("loop", [o.id for o in operands], taped))
        g = pack(unpack(g, loop_leaves([o.type for o in operands], attrs)) + _zero_tape(y, operands, attrs), y.dtype)
        attrs = taped
    return _cotangents(g, y, operands, attrs)[position]


def _zero_tape(y: Value, operands: Sequence[Value], attrs: dict[str, Any]) -> list[Value]:
    graph = y.graph
    length = attrs["length"]
    return [
        Value(graph, graph.zeros(TensorType((length,) + o.type.shape, o.type.dtype)))
        for o in operands[: attrs["n_carry"]]
    ]


RULES["loop_vjp"] = taped_loop_vjp  # compiler.loop_checkpoint puts its own in front


# ---- forward mode ---------------------------------------------------------------------------------


def _tangent_body(body: Body, split: Split, tangent_xs: list[int], tangent_consts: list[int]) -> Body:
    """The step of the tangent loop. Inputs ``[t, carry, tcarry (float carry), x, tx, consts,
    tconsts]``; outputs ``[carry', tcarry', y, ty (float ys)]``."""
    n_c, n_x, n_k = len(split.carry), len(split.xs), len(split.consts)
    wrt = [1 + i for i in split.float_carry] + [1 + n_c + i for i in tangent_xs]
    wrt += [1 + n_c + n_x + i for i in tangent_consts]
    of = split.float_carry + [n_c + i for i in split.float_ys]
    jvp = forward(body.graph, wrt, of=of, name=f"{body.graph.name}_jvp")
    n_in, n_fc, n_tx = 1 + n_c + n_x + n_k, len(split.float_carry), len(tangent_xs)
    inputs = [0, *range(1, 1 + n_c), *range(n_in, n_in + n_fc), *range(1 + n_c, 1 + n_c + n_x)]
    inputs += [
        *range(n_in + n_fc, n_in + n_fc + n_tx),
        *range(1 + n_c + n_x, n_in),
        *range(n_in + n_fc + n_tx, len(wrt) + n_in),
    ]
    n_out = n_c + len(split.ys)
    outputs = [*range(n_c), *range(n_out, n_out + n_fc), *range(n_c, n_out), *range(n_out + n_fc, n_out + len(of))]
    return Body(rebuilt(jvp, inputs, outputs, f"{body.graph.name}_jvp"))


def tangent_loop(
    tangents: Sequence[Value | None], operands: Sequence[Value], attrs: dict[str, Any]
) -> tuple[Value, list[Value], dict[str, Any], Split]:
    """The loop over the body's JVP of a loop of ``operands`` (node, operands, attributes, and the
    loop's split): operands ``[carry, tcarry (float carry), xs, txs, consts, tconsts]`` (a float
    carry's missing tangent zero, only the xs and consts with a tangent getting one), results
    ``[carry, tcarry, ys, tys (float ys)]`` and the tape if the loop keeps one."""
    split = Split([o.type for o in operands], attrs)
    n_c, n_x = len(split.carry), len(split.xs)
    tangent_xs = [i for i in split.float_xs if tangents[n_c + i] is not None]
    tangent_consts = [i for i in split.float_consts if tangents[n_c + n_x + i] is not None]
    body: Body = attrs["body"]
    key = f"jvp {tangent_xs} {tangent_consts}"
    tangent_body = body.derived(key, lambda: _tangent_body(body, split, tangent_xs, tangent_consts))
    graph = operands[0].graph

    def tangent_or_zero(position: int) -> Value:
        tangent = tangents[position]
        return tangent if tangent is not None else Value(graph, graph.zeros(operands[position].type))

    carry, xs, consts = operands[:n_c], operands[n_c : n_c + n_x], operands[n_c + n_x :]
    new_operands = [*carry, *[tangent_or_zero(i) for i in split.float_carry]]
    new_operands += [*xs, *[tangent_or_zero(n_c + i) for i in tangent_xs]]
    new_operands += [*consts, *[tangent_or_zero(n_c + n_x + i) for i in tangent_consts]]
    loop_attrs = {**attrs, "body": tangent_body, "n_carry": n_c + len(split.float_carry)}
    loop_attrs["n_xs"] = n_x + len(tangent_xs)
    packed = Value(graph, graph.add("loop", [v.id for v in new_operands], loop_attrs))
    return packed, new_operands, loop_attrs, split


def loop_jvp(tangents: list[Value | None], y: Value, *operands: Value, **attrs: Any) -> Value:
    """The tangent of a loop's result: a loop over the body's JVP, the carry's tangent carried along."""
    packed, new_operands, loop_attrs, split = tangent_loop(tangents, operands, attrs)
    graph, n_c = y.graph, len(split.carry)
    results = unpack(packed, loop_leaves([v.type for v in new_operands], loop_attrs))
    n_fc, n_y = len(split.float_carry), len(split.ys)
    tangent_carry = results[n_c : n_c + n_fc]
    tangent_ys = results[n_c + n_fc + n_y : n_c + n_fc + n_y + len(split.float_ys)]
    tangent_tape = results[n_c + n_fc + n_y + len(split.float_ys) + n_c :]
    leaves = loop_leaves([o.type for o in operands], attrs)
    parts = _spread(tangent_carry, split.float_carry, leaves[:n_c], graph)
    parts += _spread(tangent_ys, split.float_ys, leaves[n_c : n_c + n_y], graph)
    if attrs["tape"]:
        parts += _spread(tangent_tape, split.float_carry, leaves[n_c + n_y :], graph)
    return pack(parts, y.dtype)


def _spread(values: list[Value], positions: list[int], types: list[TensorType], graph: Graph) -> list[Value]:
    """``values`` at ``positions`` among ``types``, zeros elsewhere."""
    by_position = dict(zip(positions, values))
    return [by_position.get(i) or Value(graph, graph.zeros(t)) for i, t in enumerate(types)]


RULES["loop_jvp"] = loop_jvp


# ---- switch ---------------------------------------------------------------------------------------


def _branch_vjp(branch: Body, float_inputs: list[int]) -> Body:
    """A branch's VJP: inputs ``[operands..., cotangents of its outputs...]``, outputs the cotangents
    of the float operands."""
    joint = reverse(tape_loops(branch.graph), float_inputs, cotangent_inputs=True)
    n_out = len(branch.graph.outputs)
    gradients = range(n_out, n_out + len(float_inputs))
    return Body(rebuilt(joint, range(len(joint.inputs)), gradients, f"{branch.graph.name}_vjp"))


def switch_vjp(position: int, g: Value, y: Value, *operands: Value, branches: tuple[Body, ...]) -> Value | None:
    """The cotangent of a switch's operand: the same switch over the branches' VJPs (the branch
    taken gets the gradient)."""
    types = [o.type for o in operands[1:]]
    float_inputs = _floats(types)
    if position == 0 or position - 1 not in float_inputs:
        return None
    backward = tuple(b.derived("vjp", functools.partial(_branch_vjp, b, float_inputs)) for b in branches)
    graph = y.graph
    g_leaves = unpack(g, branches[0].output_types)
    new_operands = [*operands, *g_leaves]
    packed = Value(graph, graph.add("switch", [v.id for v in new_operands], {"branches": backward}))
    results = unpack(packed, backward[0].output_types)
    return results[float_inputs.index(position - 1)]


def _branch_jvp(branch: Body, tangent_inputs: list[int]) -> Body:
    """A branch's JVP: inputs ``[operands..., tangents of tangent_inputs]``, outputs ``[results...,
    tangents of the float results]``."""
    of = _floats(branch.output_types)
    return Body(forward(branch.graph, tangent_inputs, of=of, name=f"{branch.graph.name}_jvp"))


def switch_jvp(tangents: list[Value | None], y: Value, *operands: Value, branches: tuple[Body, ...]) -> Value:
    """The tangent of a switch's result: the same switch over the branches' JVPs."""
    tangent_inputs = [p - 1 for p in range(1, len(operands)) if tangents[p] is not None and operands[p].type.is_float]
    key = f"jvp {tangent_inputs}"
    forward_branches = tuple(b.derived(key, functools.partial(_branch_jvp, b, tangent_inputs)) for b in branches)
    graph = y.graph
    new_operands = [*operands, *[tangents[p + 1] for p in tangent_inputs]]
    packed = Value(
        graph, graph.add("switch", [v.id for v in new_operands if v is not None], {"branches": forward_branches})
    )
    out_types = branches[0].output_types
    float_outputs = _floats(out_types)
    results = unpack(packed, forward_branches[0].output_types)
    return pack(_spread(results[len(out_types) :], float_outputs, out_types, graph), y.dtype)


# ---- while ----------------------------------------------------------------------------------------


def while_vjp(
    position: int, g: Value, y: Value, *operands: Value, cond: Body, body: Body, n_carry: int
) -> Value | None:
    """The cotangent of a while loop's operand: the steps run again for the recorded trip count,
    keeping their carries, and a backward loop over the body's VJP (``run_while_vjp``)."""
    types = [o.type for o in operands]
    if not types[position].is_float:
        return None
    split = Split(types, {"n_carry": n_carry, "n_xs": 0, "body": body}, constant_operands(operands))
    backward = body.derived(f"vjp {split.key}", lambda: backward_body(body, split))
    graph = y.graph
    leaves = while_leaves(types, {"n_carry": n_carry})
    g_carry = unpack_cotangent(g, leaves)[:n_carry]
    count = unpack(y, leaves)[-1]
    seeds = [g_carry[i] for i in split.float_carry]
    seeds += [Value(graph, graph.zeros(split.consts[i])) for i in split.float_consts]
    new_operands = [*seeds, count, *operands]
    attrs = {"cond": cond, "body": body, "backward": backward}
    packed = Value(graph, graph.add("while_vjp", [v.id for v in new_operands], attrs))
    results = unpack(packed, backward.output_types)
    if position < n_carry:
        return results[split.float_carry.index(position)]
    return results[len(split.float_carry) + split.float_consts.index(position - n_carry)]


def _tangent_while(
    cond: Body, body: Body, types: list[TensorType], n_carry: int, tangent_consts: list[int]
) -> tuple[Body, Body]:
    """The condition and body of the tangent while loop, whose carry is ``[carry, tcarry]`` and
    closed-over values ``[consts, tconsts]``."""
    n_k, float_carry = len(types) - n_carry, _floats(types[:n_carry])
    wrt = [1 + i for i in float_carry] + [1 + n_carry + k for k in tangent_consts]
    jvp = forward(body.graph, wrt, of=float_carry, name=f"{body.graph.name}_jvp")
    n_in = 1 + n_carry + n_k
    order = [0, *range(1, 1 + n_carry), *range(n_in, n_in + len(float_carry)), *range(1 + n_carry, n_in)]
    order += range(n_in + len(float_carry), n_in + len(wrt))
    tangent_body = Body(rebuilt(jvp, order, name=jvp.name))
    layout: list[int | TensorType] = [*range(n_carry), *[types[i] for i in float_carry], *range(n_carry, n_carry + n_k)]
    layout += [types[n_carry + k] for k in tangent_consts]
    return Body(rebuilt(cond.graph, layout, name=f"{cond.graph.name}_jvp")), tangent_body


def tangent_while_node(
    tangents: Sequence[Value | None], operands: Sequence[Value], cond: Body, body: Body, n_carry: int
) -> tuple[Value, list[Value], dict[str, Any]]:
    """The tangent while loop of a while loop of ``operands`` (its node, operands and attributes):
    its carry is ``[carry, tcarry]`` and its closed-over values ``[consts, tconsts]``, a float
    carry's missing tangent zero and only the consts with a tangent getting one."""
    types = [o.type for o in operands]
    float_carry = _floats(types[:n_carry])
    tangent_consts = [k for k in _floats(types[n_carry:]) if tangents[n_carry + k] is not None]
    key = f"jvp {tangent_consts}"
    new_cond, new_body = body.derived(key, lambda: _tangent_while(cond, body, types, n_carry, tangent_consts))
    graph = operands[0].graph

    def tangent_or_zero(position: int) -> Value:
        tangent = tangents[position]
        return tangent if tangent is not None else Value(graph, graph.zeros(types[position]))

    new_operands = [*operands[:n_carry], *[tangent_or_zero(i) for i in float_carry], *operands[n_carry:]]
    new_operands += [tangent_or_zero(n_carry + k) for k in tangent_consts]
    attrs = {"cond": new_cond, "body": new_body, "n_carry": n_carry + len(float_carry)}
    return Value(graph, graph.add("while", [v.id for v in new_operands], attrs)), new_operands, attrs


def while_jvp(tangents: list[Value | None], y: Value, *operands: Value, cond: Body, body: Body, n_carry: int) -> Value:
    """The tangent of a while loop's result: a while loop over the body's JVP, the tangent of the
    carry carried beside it (the condition reads the primal carry only)."""
    types = [o.type for o in operands]
    float_carry = _floats(types[:n_carry])
    packed, new_operands, attrs = tangent_while_node(tangents, operands, cond, body, n_carry)
    results = unpack(packed, while_leaves([v.type for v in new_operands], attrs))
    leaves = while_leaves(types, {"n_carry": n_carry})
    parts = _spread(results[n_carry : n_carry + len(float_carry)], float_carry, leaves[:n_carry], y.graph)
    return pack([*parts, Value(y.graph, y.graph.zeros(leaves[-1]))], y.dtype)


RULES.update(switch_vjp=switch_vjp, switch_jvp=switch_jvp, while_vjp=while_vjp, while_jvp=while_jvp)
