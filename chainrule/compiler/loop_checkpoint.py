"""Reverse mode through a loop with ``checkpoint=`` (``cr.scan``, ``cr.fori_loop``, or ``cr.grad``'s
policy reaching the loop): no tape of carries, but one ``loop_reversal`` node (``ir.reversal``) that
runs the loop again from its initial carry along a reversal schedule, keeping only the schedule's
snapshots: Revolve's binomial one (``compiler.revolve``) for a number of snapshots, a byte budget or
"optimal", Chen's segments for "sqrt". The backward body is the one the store-all backward loop
runs (``control_ad.backward_body``), reading the recomputed carry where that loop reads its tape.

    cr.grad(loss)                        # each loop keeps every carry: steps x carry bytes
    cr.grad(loss, checkpoint="sqrt")     # each loop keeps about 2 sqrt(steps) carries
    cr.scan(step, h0, xs, snapshots=10)  # this loop keeps 10, and recomputes Revolve's count
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from chainrule.compiler.control_ad import (
    Split,
    backward_body,
    constant_operands,
    tangent_loop,
    taped_loop_vjp,
    unpack_cotangent,
)
from chainrule.compiler.revolve import (
    count_advances,
    fewest_slots_for_one_extra_sweep,
    max_stored,
    revolve_schedule,
    sqrt_schedule,
)
from chainrule.errors import ArgumentError
from chainrule.ir import Graph, TensorType, Value
from chainrule.ir.control import RULES, Body, loop_leaves, pack, unpack
from chainrule.ir.reversal import Schedule, checkpoint_needed, checkpoint_spec


@functools.lru_cache(maxsize=64)
def loop_schedule(spec: tuple[Any, ...], length: int, carry_bytes: int) -> Schedule:
    """The reversal schedule a loop's ``checkpoint`` spec (``ir.reversal.checkpoint_spec``) asks for:
    Revolve with the slots given, the slots a byte budget holds, or the fewest slots reversing in
    about one extra sweep ("optimal"); or Chen's sqrt segments. One object per request, so the nodes
    built for each operand's cotangent are one node."""
    if spec[0] == "sqrt":
        actions, name = sqrt_schedule(length), "sqrt segments"
    else:
        if spec[0] == "snapshots":
            slots, name = spec[1], f"revolve, {spec[1]} snapshots"
        elif spec[0] == "bytes":
            slots = spec[1] // carry_bytes
            name = f"revolve, {slots} snapshots of {carry_bytes} bytes in a budget of {spec[1]} bytes"
            if slots < 1:
                raise ArgumentError(
                    f"a loop's checkpoint budget of {spec[1]} bytes holds no carry: one carry is {carry_bytes} bytes"
                )
        else:
            slots = fewest_slots_for_one_extra_sweep(length)
            name = f"revolve, {slots} snapshots (optimal: about one extra sweep)"
        actions = revolve_schedule(length, min(slots, length))
    return Schedule(name, spec, length, tuple(actions), max_stored(actions), count_advances(actions))


def _reversal_cotangents(g: Value, operands: Sequence[Value], attrs: dict[str, Any]) -> list[Value | None]:
    """The cotangent of each operand of a checkpointed loop: one ``loop_reversal`` node, which runs
    the loop again from its initial carry along a schedule instead of reading a tape."""
    types = [o.type for o in operands]
    split = Split(types, attrs, constant_operands(operands))
    body: Body = attrs["body"]
    n_carry, n_xs = len(split.carry), len(split.xs)
    backward = body.derived(f"vjp {split.key}", lambda: backward_body(body, split))
    graph = g.graph
    g_leaves = unpack_cotangent(g, loop_leaves(types, attrs))
    seeds = [g_leaves[i] for i in split.float_carry]
    seeds += [Value(graph, graph.zeros(split.consts[i])) for i in split.float_consts]
    dys = [g_leaves[n_carry + i] for i in split.float_ys]
    reversal_operands = [*seeds, *operands[: n_carry + n_xs], *dys, *operands[n_carry + n_xs :]]
    schedule = loop_schedule(attrs["checkpoint"], attrs["length"], sum(t.nbytes for t in split.carry))
    reversal_attrs = {"body": body, "backward": backward, "schedule": schedule, "reverse": attrs["reverse"]}
    reversal_attrs.update(n_backward=len(seeds), n_carry=n_carry, n_xs=n_xs)
    packed = Value(graph, graph.add("loop_reversal", [v.id for v in reversal_operands], reversal_attrs))
    stacked = [TensorType((attrs["length"],) + t.shape, t.dtype) for t in backward.output_types[len(seeds) :]]
    results = unpack(packed, backward.output_types[: len(seeds)] + stacked)
    cotangents: list[Value | None] = [None] * len(operands)
    n_c, n_k = len(split.float_carry), len(split.float_consts)
    for i, result in zip(split.float_carry, results[:n_c]):
        cotangents[i] = result
    for i, result in zip(split.float_consts, results[n_c : n_c + n_k]):
        cotangents[n_carry + n_xs + i] = result
    for i, result in zip(split.float_xs, results[n_c + n_k :]):
        cotangents[n_carry + i] = result
    return cotangents


@dataclass(frozen=True)
class LoopCheckpoint:
    """What a checkpointed loop's backward pass holds and recomputes (for the memory report)."""

    node: int  # the loop_reversal node
    steps: int
    schedule: str
    slots: int  # carries held at once at most, the initial one included
    carry_bytes: int
    advances: int  # forward steps computed again

    @property
    def snapshot_bytes(self) -> int:
        return self.slots * self.carry_bytes

    def __str__(self) -> str:
        return (
            f"%{self.node:<6} {self.steps} steps, {self.schedule}: at most {self.slots} carries "
            f"({self.snapshot_bytes} B), {self.advances} steps recomputed"
        )


def loop_checkpoints(graph: Graph) -> list[LoopCheckpoint]:
    """The checkpointed loops of ``graph``: their backward passes' snapshots and recomputation."""
    found = []
    for node_id in graph.live_nodes():
        node = graph[node_id]
        if node.op == "loop_reversal":
            schedule: Schedule = node.params["schedule"]
            n_backward, n_carry = node.params["n_backward"], node.params["n_carry"]
            carry_bytes = sum(graph.type(a).nbytes for a in node.args[n_backward : n_backward + n_carry])
            found.append(
                LoopCheckpoint(node_id, schedule.steps, schedule.name, schedule.slots, carry_bytes, schedule.advances)
            )
    return found


def checkpoint_loops(graph: Graph, policy: Any) -> Graph:
    """``graph`` with ``grad``'s checkpoint ``policy`` ("sqrt", "optimal", a budget in bytes) given to
    each loop that has none of its own (a budget bounds each loop's snapshots); ``graph`` itself when
    nothing changes. Loops nested in bodies keep theirs."""
    if callable(policy) or (isinstance(policy, str) and policy not in ("sqrt", "optimal")):
        return graph
    spec = checkpoint_spec(policy)

    def wanted(node_id: int) -> bool:
        node = graph[node_id]
        if node.op != "loop" or node.params.get("checkpoint") or node.params["tape"]:
            return False
        return checkpoint_needed(
            spec, node.params["length"], [graph.type(a) for a in node.args[: node.params["n_carry"]]]
        )

    if not any(wanted(i) for i in range(len(graph))):
        return graph
    result = Graph(graph.name)
    mapping: dict[int, int] = {}
    for node_id, node in enumerate(graph.nodes):
        if node.op == "input":
            mapping[node_id] = result.add_input(node.type, node.name, node.loc)
            continue
        params = {**node.params, "checkpoint": spec} if wanted(node_id) else node.params
        mapping[node_id] = result.add(node.op, [mapping[a] for a in node.args], params, loc=node.loc, name=node.name)
    result.set_outputs([mapping[o] for o in graph.outputs], graph.output_names)
    return result


# ---- second order: the backward pass L'(p)ᵀ(s, dys) of a checkpointed loop L -----------------------
# As for while loops (control_ad): <ō, L'ᵀs> = <L'ō, s>, so the seeds' cotangent is the tangent
# loop's tangent, and the derivative with respect to the loop's inputs p is reverse mode through the
# tangent loop seeded with s: a checkpointed loop too, so second order keeps the checkpoint.


def _reversal_parts(
    operands: Sequence[Value], attrs: dict[str, Any]
) -> tuple[list[Value], list[Value], list[Value], dict[str, Any], Split]:
    """A ``loop_reversal`` node's operands as its seeds, the loop's operands and the cotangents of
    its per-step outputs, with the loop's attributes and split."""
    body: Body = attrs["body"]
    n_seeds, n_carry, n_xs = attrs["n_backward"], attrs["n_carry"], attrs["n_xs"]
    n_consts = len(body.input_types) - 1 - n_carry - n_xs
    schedule: Schedule = attrs["schedule"]
    end = len(operands) - n_consts
    loop_operands = [*operands[n_seeds : n_seeds + n_carry + n_xs], *operands[end:]]
    loop_attrs = {"body": body, "length": schedule.steps, "reverse": attrs["reverse"], "tape": False}
    loop_attrs.update(n_carry=n_carry, n_xs=n_xs, checkpoint=schedule.spec)
    split = Split([o.type for o in loop_operands], loop_attrs, constant_operands(loop_operands))
    return list(operands[:n_seeds]), loop_operands, list(operands[n_seeds + n_carry + n_xs : end]), loop_attrs, split


def _directions(parts: Sequence[Value], loop_operands: list[Value], split: Split) -> list[Value | None]:
    """A reversal's result layout ``[float carry, float consts, float xs]`` as one tangent per loop operand."""
    n_carry, n_xs, n_fc, n_fk = len(split.carry), len(split.xs), len(split.float_carry), len(split.float_consts)
    directions: list[Value | None] = [None] * len(loop_operands)
    for i, part in zip(split.float_carry, parts[:n_fc]):
        directions[i] = part
    for k, part in zip(split.float_consts, parts[n_fc : n_fc + n_fk]):
        directions[n_carry + n_xs + k] = part
    for i, part in zip(split.float_xs, parts[n_fc + n_fk :]):
        directions[n_carry + i] = part
    return directions


def _tangent_outputs(
    directions: list[Value | None], loop_operands: list[Value], loop_attrs: dict[str, Any]
) -> list[Value]:
    """The tangent loop's tangents of the float carry and the float ys."""
    packed, new_operands, attrs, split = tangent_loop(directions, loop_operands, loop_attrs)
    results = unpack(packed, loop_leaves([v.type for v in new_operands], attrs))
    n_c, n_fc, n_y = len(split.carry), len(split.float_carry), len(split.ys)
    return results[n_c : n_c + n_fc] + results[n_c + n_fc + n_y : n_c + n_fc + n_y + len(split.float_ys)]


def _second_order(
    directions: list[Value | None],
    seeds: Sequence[Value],
    dys: Sequence[Value],
    loop_operands: list[Value],
    loop_attrs: dict[str, Any],
) -> list[Value | None]:
    """d(L'ᵀ(s, dys))/dp applied to ``directions``, per loop operand: reverse mode through the tangent
    loop, the seeds on its tangent outputs."""
    packed, new_operands, attrs, split = tangent_loop(directions, loop_operands, loop_attrs)
    graph = packed.graph
    leaves = loop_leaves([v.type for v in new_operands], attrs)
    n_c, n_fc, n_y = len(split.carry), len(split.float_carry), len(split.ys)
    seeded = dict(zip(range(n_c, n_c + n_fc), seeds))
    seeded.update(zip(range(n_c + n_fc + n_y, n_c + n_fc + n_y + len(split.float_ys)), dys))
    g = pack([seeded.get(i) or Value(graph, graph.zeros(t)) for i, t in enumerate(leaves)], packed.dtype)
    cotangents = _reversal_cotangents(g, new_operands, attrs)
    n_x, n_tangent_xs = len(split.xs), attrs["n_xs"] - len(split.xs)
    positions = [*range(n_c), *range(n_c + n_fc, n_c + n_fc + n_x)]
    positions += range(n_c + n_fc + n_x + n_tangent_xs, n_c + n_fc + n_x + n_tangent_xs + len(split.consts))
    return [cotangents[p] for p in positions]


def reversal_jvp(tangents: list[Value | None], y: Value, *operands: Value, **attrs: Any) -> Value:
    """The tangent of a ``loop_reversal`` result (forward over reverse, as hvp): the reversal of the
    seeds' tangents, plus the second-order term."""
    seeds, loop_operands, dys, loop_attrs, split = _reversal_parts(operands, attrs)
    graph, n_seeds, n_cx = y.graph, len(seeds), attrs["n_carry"] + attrs["n_xs"]
    n_consts = len(loop_operands) - n_cx

    def tangent_or_zero(position: int) -> Value:
        tangent = tangents[position]
        return tangent if tangent is not None else Value(graph, graph.zeros(operands[position].type))

    first = [tangent_or_zero(i) for i in range(n_seeds)] + list(operands[n_seeds : n_seeds + n_cx])
    first += [tangent_or_zero(n_seeds + n_cx + j) for j in range(len(dys))] + loop_operands[n_cx:]
    total = Value(graph, graph.add("loop_reversal", [v.id for v in first], attrs))
    directions = list(tangents[n_seeds : n_seeds + n_cx]) + list(tangents[len(operands) - n_consts :])
    if any(d is not None for d in directions):
        terms = _second_order(directions, seeds[: len(split.float_carry)], dys, loop_operands, loop_attrs)
        wanted = [
            *split.float_carry,
            *[n_cx + k for k in split.float_consts],
            *[len(split.carry) + i for i in split.float_xs],
        ]
        total = total + pack([terms[p] or Value(graph, graph.zeros(loop_operands[p].type)) for p in wanted], y.dtype)
    return total


def reversal_vjp(position: int, g: Value, y: Value, *operands: Value, **attrs: Any) -> Value | None:
    """The cotangent of a ``loop_reversal`` operand (reverse over reverse)."""
    seeds, loop_operands, dys, loop_attrs, split = _reversal_parts(operands, attrs)
    if not operands[position].type.is_float:
        return None
    n_seeds, n_fc, n_cx = len(seeds), len(split.float_carry), attrs["n_carry"] + attrs["n_xs"]
    backward: Body = attrs["backward"]
    stacked = [TensorType((loop_attrs["length"],) + t.shape, t.dtype) for t in backward.output_types[n_seeds:]]
    parts = unpack(g, backward.output_types[:n_seeds] + stacked)
    directions = _directions(parts, loop_operands, split)
    if position < n_fc:  # a seed of the carry: the tangent loop's final tangent
        return _tangent_outputs(directions, loop_operands, loop_attrs)[position]
    if position < n_seeds:  # a seed of a const's sum joins the result as it is
        return parts[position]
    dys_start, consts_start = n_seeds + n_cx, n_seeds + n_cx + len(dys)
    if dys_start <= position < consts_start:  # the cotangent of a per-step output: its tangent
        return _tangent_outputs(directions, loop_operands, loop_attrs)[n_fc + position - dys_start]
    loop_position = position - n_seeds if position < dys_start else n_cx + position - consts_start
    return _second_order(directions, seeds[:n_fc], dys, loop_operands, loop_attrs)[loop_position]


RULES.update(loop_reversal_vjp=reversal_vjp, loop_reversal_jvp=reversal_jvp)


def loop_vjp(position: int, g: Value, y: Value, *operands: Value, **attrs: Any) -> Value | None:
    """The cotangent of operand ``position`` of a loop: through a ``loop_reversal`` node when the loop
    has a ``checkpoint``, else from its tape (``control_ad``)."""
    if attrs.get("checkpoint"):
        return _reversal_cotangents(g, operands, attrs)[position]
    return taped_loop_vjp(position, g, y, *operands, **attrs)


RULES["loop_vjp"] = loop_vjp
