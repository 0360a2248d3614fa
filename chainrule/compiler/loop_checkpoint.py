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

from chainrule.compiler.control_ad import Split, backward_body, constant_operands, taped_loop_vjp
from chainrule.compiler.revolve import (
    count_advances,
    fewest_slots_for_one_extra_sweep,
    max_stored,
    revolve_schedule,
    sqrt_schedule,
)
from chainrule.errors import ArgumentError
from chainrule.ir import Graph, TensorType, Value
from chainrule.ir.control import RULES, Body, loop_leaves, unpack
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
    return Schedule(name, length, tuple(actions), max_stored(actions), count_advances(actions))


def _reversal_cotangents(g: Value, operands: Sequence[Value], attrs: dict[str, Any]) -> list[Value | None]:
    """The cotangent of each operand of a checkpointed loop: one ``loop_reversal`` node, which runs
    the loop again from its initial carry along a schedule instead of reading a tape."""
    types = [o.type for o in operands]
    split = Split(types, attrs, constant_operands(operands))
    body: Body = attrs["body"]
    n_carry, n_xs = len(split.carry), len(split.xs)
    backward = body.derived(f"vjp {split.key}", lambda: backward_body(body, split))
    graph = g.graph
    g_leaves = unpack(g, loop_leaves(types, attrs))
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


def loop_vjp(position: int, g: Value, y: Value, *operands: Value, **attrs: Any) -> Value | None:
    """The cotangent of operand ``position`` of a loop: through a ``loop_reversal`` node when the loop
    has a ``checkpoint``, else from its tape (``control_ad``)."""
    if attrs.get("checkpoint"):
        return _reversal_cotangents(g, operands, attrs)[position]
    return taped_loop_vjp(position, g, y, *operands, **attrs)


RULES["loop_vjp"] = loop_vjp
