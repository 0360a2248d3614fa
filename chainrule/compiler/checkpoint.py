"""Checkpoint placement: which forward values the backward pass keeps, and which it computes again.

Training keeps every intermediate the backward pass reads (seed 000, "Memory
Consumption"); recomputing some of them in the backward pass trades time for
memory (seed 003, 5.5 and 7.5). The policies:

- ``"all"``: keep everything (the graph is unchanged).
- ``"sqrt"``: Chen et al. 2016. The forward pass is cut into segments holding
  about 1/sqrt(n) of the bytes the backward pass reads; only the values at the
  segment boundaries are kept, and each segment is computed once more when the
  backward pass reaches it: at most one extra forward pass.
- ``"optimal"``: on a chain (see below), Griewank's binomial checkpointing as
  Revolve schedules it: the fewest forward advances for a given number of kept
  states, with the fewest slots that need at most about one extra forward
  sweep (repetition number r <= 2). On a graph that is not a chain, the
  min-cut over bytes of PyTorch's AOTAutograd partitioner: keep the cheapest
  set of values from which everything the backward pass reads can be
  recomputed, never recomputing a matmul (``BANNED``).
- an ``int``: a memory budget in bytes, met by the least recomputation found
  (Revolve with the most slots whose estimated peak fits, on chains).
- a callable ``(node) -> "save" | "recompute"``, asked about every forward value.
- ``chainrule.checkpoint(fn)`` markers: what ``fn`` computes is recomputed (as
  ``jax.checkpoint`` does), under any string or callable policy.

A *chain* is read off the forward pass: a *separator* is a forward value after
which nothing computed before it is used again (inputs and constants are always
at hand). Separators the backward pass reads cut the forward pass into stages,
each a function of the previous stage's last value: stage i maps state x_i to
x_(i+1). A 100-layer tanh MLP is a chain of 100 stages (matmul, add, tanh); a
residual block is one stage.

Recomputed values are copies (``Graph.add_recomputed``, never hash-consed, so
no later pass merges them back) placed in the backward pass just before their
first use, where fusion can merge them into the backward kernels.
"""

from __future__ import annotations

import math
from collections import ChainMap
from dataclasses import dataclass, field
from typing import Callable, Optional

import networkx as nx
import numpy as np

from chainrule.compiler.revolve import fewest_slots_for_one_extra_sweep, griewank_advances, revolve_schedule
from chainrule.errors import ArgumentError, ChainruleError, Loc
from chainrule.ir import Graph

POLICIES = ("all", "sqrt", "optimal")
# Never recomputed by the min-cut: a matmul costs far more to compute than its result costs to keep.
# (chainrule has no random-draw op to ban: a dropout mask is an input, drawn by the caller.)
BANNED = frozenset({"matmul"})
_SOURCES = frozenset({"input", "const", "zeros"})
_MIN_CHAIN_STAGES = 4  # fewer stages than this is a DAG for "optimal": the min-cut decides


# ---- the forward pass as the backward pass sees it -------------------------------------------------


@dataclass
class ForwardPass:
    """The forward values of a joint graph, what the backward pass reads, and the chain of stages."""

    nodes: list[int]  # live forward nodes that compute something (not inputs, constants, zeros)
    read_by_backward: set[int]  # forward values some backward node takes as an operand
    separators: list[int]  # the last node of each stage, in order
    stage_of: dict[int, int] = field(default_factory=dict)  # forward node -> its stage

    @property
    def stages(self) -> int:
        return len(self.separators)


def forward_pass(graph: Graph) -> ForwardPass:
    """Find the forward values, those the backward pass reads, and the separators (one linear walk)."""
    live = graph.live_nodes()
    nodes = [i for i in live if not graph[i].is_backward and graph[i].op not in _SOURCES]
    position = {node_id: p for p, node_id in enumerate(nodes)}
    last_reader = list(range(len(nodes)))  # position of each node's last forward reader
    read_by_backward = set()
    for node_id in live:
        node = graph[node_id]
        for a in node.args:
            if a in position:
                if node.is_backward:
                    read_by_backward.add(a)
                elif node_id in position:
                    last_reader[position[a]] = max(last_reader[position[a]], position[node_id])
    # A stage ends at a separator the backward pass reads (a state worth keeping: h, not h @ W),
    # and the last stage at the last forward node.
    separators, reach = [], -1
    for p, node_id in enumerate(nodes):
        if reach <= p and (node_id in read_by_backward or p == len(nodes) - 1):
            separators.append(node_id)  # nothing before this node is read after it
        reach = max(reach, last_reader[p])
    stage_of, stage = {}, 0
    boundary = {node_id: s for s, node_id in enumerate(separators)}
    for node_id in nodes:
        stage_of[node_id] = stage
        if node_id in boundary:
            stage = boundary[node_id] + 1
    return ForwardPass(nodes, read_by_backward, separators, stage_of)


# ---- building the checkpointed graph ---------------------------------------------------------------


class _Builder:
    """Copies a joint graph, giving each backward node the forward operands a ``provider`` chooses.

    The provider returns an id in the new graph for a forward value a backward node reads: the
    forward node's own copy (kept) or a recomputed copy. Forward nodes whose every reader now reads
    a recomputation die (dropped at the end).
    """

    def __init__(self, graph: Graph):
        self.old = graph
        self.new = Graph(graph.name)
        self.mapping = {i: self.new.add_input(graph.type(i), graph[i].name, graph[i].loc) for i in graph.inputs}
        self.new.name_hints = dict(graph.name_hints)

    def copy_original(self, node_id: int) -> None:
        self.new.transplant(self.old, (node_id,), self.mapping, verbatim=True)

    def recompute(self, node_id: int, operand: Callable[[int], int]) -> int:
        """A recomputed copy of ``node_id`` whose operands are ``operand(a)``."""
        node = self.old[node_id]
        return self.new.add_recomputed(node.op, tuple(operand(a) for a in node.args), node.params,
                                       loc=node.loc, name=node.name)

    def build(self, provide: Callable[[int], int], forward: ForwardPass) -> tuple[Graph, dict[int, int]]:
        """The new graph, and where the old graph's nodes that are still live went."""
        old, new, mapping = self.old, self.new, self.mapping
        for node_id in old.live_nodes():
            node = old[node_id]
            if node.op == "input":
                continue
            if not node.is_backward:
                self.copy_original(node_id)
                continue
            operands = {a: provide(a) for a in node.args if a in forward.stage_of}
            mapping[node_id] = new.transplant(old, (node_id,), ChainMap(operands, mapping), verbatim=True)[node_id]
        new.set_outputs([mapping[o] for o in old.outputs], old.output_names)
        # forward nodes every reader of which now reads a recomputation are dead: drop them
        result = Graph(new.name)
        live = {i: result.add_input(new.type(i), new[i].name, new[i].loc) for i in new.inputs}
        result.transplant(new, (i for i in new.live_nodes() if new[i].op != "input"), live, verbatim=True)
        result.set_outputs([live[o] for o in new.outputs], new.output_names)
        result.name_hints = new.name_hints
        return result, {old_id: live[i] for old_id, i in mapping.items() if i in live}


def with_recomputation(graph: Graph, recompute: set[int],
                       forward: Optional[ForwardPass] = None) -> tuple[Graph, dict[int, int]]:
    """``graph`` where each backward read of a value in ``recompute`` reads a copy computed just
    before its first backward use (each value recomputed once; its operands outside ``recompute``
    are kept), and where the live nodes of ``graph`` went."""
    forward = forward or forward_pass(graph)
    builder = _Builder(graph)
    copies: dict[int, int] = {}

    def operand(a: int) -> int:
        return copies[a] if a in copies else builder.mapping[a]

    def provide(value: int) -> int:
        if value not in recompute:
            return builder.mapping[value]
        if value not in copies:
            needed, stack = set(), [value]
            while stack:
                node_id = stack.pop()
                if node_id not in needed and node_id not in copies:
                    needed.add(node_id)
                    stack.extend(a for a in graph[node_id].args if a in recompute)
            for node_id in sorted(needed):  # ids are a topological order
                copies[node_id] = builder.recompute(node_id, operand)
        return copies[value]

    return builder.build(provide, forward)


def with_revolve(graph: Graph, forward: ForwardPass, slots: int) -> tuple[Graph, dict[int, int]]:
    """``graph`` with its chain of stages reversed by ``revolve_schedule(stages, slots)``, and where
    its live nodes went.

    The forward pass itself is the schedule's first sweep and the last stage's turn. Later
    advances copy the stage's path to its last value; a turn copies, on demand, only the
    intermediates the stage's backward nodes read.
    """
    steps = forward.stages
    actions = revolve_schedule(steps, slots)
    builder = _Builder(graph)
    separators = forward.separators
    position = {node_id: s for s, node_id in enumerate(separators)}
    members: list[set[int]] = [set() for _ in range(steps)]
    for node_id in forward.nodes:
        members[forward.stage_of[node_id]].add(node_id)
    state: dict[int, int] = {}  # i -> the id of x_i in a slot or current (x_0 is the inputs: absent)
    turn_base: dict[int, Optional[int]] = {}  # stage -> the id of its input state at its turn
    tape: dict[int, dict[int, int]] = {}  # stage -> recomputed copies made at its turn
    cursor = {"action": 0, "current": None, "originals": True}

    def operands_of(stage: int, base: Optional[int], made: dict[int, int]) -> Callable[[int], int]:
        """Operands for a copy of stage ``stage`` computed from ``base`` (its input state): a stage
        reads only the previous separator, its own nodes and sources."""
        previous = separators[stage - 1] if stage > 0 else None
        return lambda a: base if a == previous else made[a] if a in made else builder.mapping[a]

    def advance(stage: int) -> None:
        if cursor["originals"]:  # the forward pass computes it: x_(stage+1) is the forward node
            cursor["current"] = builder.mapping[separators[stage]]
            return
        made: dict[int, int] = {}
        operand = operands_of(stage, cursor["current"], made)
        for node_id in _ancestors_within(graph, separators[stage], members[stage]):
            made[node_id] = builder.recompute(node_id, operand)
        cursor["current"] = made[separators[stage]]

    def run_until_turn(stage: int) -> None:
        while stage not in turn_base and cursor["action"] < len(actions):
            action, i = actions[cursor["action"]]
            cursor["action"] += 1
            if action == "advance":
                advance(i)
            elif action == "store":
                state[i] = cursor["current"]
            elif action == "free":
                state.pop(i, None)
            elif action == "restore":
                cursor["current"] = state[i]
            else:  # turn
                turn_base[i] = cursor["current"]
                tape[i] = {}
                if cursor["originals"] and i == steps - 1:
                    tape[i] = None  # the last stage's intermediates are the forward nodes themselves
                cursor["originals"] = False
                cursor["current"] = None

    def provide(value: int) -> int:
        if value in position and position[value] + 1 < steps:
            run_until_turn(position[value] + 1)  # x_(s+1) is where the next stage's turn starts
            base = turn_base[position[value] + 1]
            return base if base is not None else builder.mapping[value]
        stage = forward.stage_of[value]
        run_until_turn(stage)
        if tape.get(stage) is None:
            return builder.mapping[value]
        made = tape[stage]
        if value not in made:
            operand = operands_of(stage, turn_base[stage], made)
            for node_id in _ancestors_within(graph, value, members[stage], made):
                made[node_id] = builder.recompute(node_id, operand)
        return made[value]

    return builder.build(provide, forward)


def _ancestors_within(graph: Graph, node_id: int, allowed: set[int], done=()) -> list[int]:
    """``node_id`` and its ancestors in ``allowed`` but not ``done``, walking only through those, in
    id order (a topological order)."""
    found, stack = set(), [node_id]
    while stack:
        current = stack.pop()
        if current in allowed and current not in found and current not in done:
            found.add(current)
            stack.extend(graph[current].args)
    return sorted(found)


# ---- the policies ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SegmentLoc(Loc):
    """The source line of a value computed inside a ``chainrule.checkpoint(fn)`` segment: the
    backward pass recomputes it. Passes carry ``loc`` along, so the mark survives them."""

    segment: int = 0


@dataclass
class Placement:
    """A policy's decision before it is built: what to recompute, and why each kept value is kept."""

    recompute: set[int]
    reasons: dict[int, str]  # forward node -> why it is kept
    default_reason: str
    revolve_slots: Optional[int] = None  # chains reversed by Revolve instead of ``recompute``


def marked(graph: Graph, forward: ForwardPass) -> set[int]:
    """Forward values computed inside ``chainrule.checkpoint`` segments."""
    return {i for i in forward.nodes if isinstance(graph[i].loc, SegmentLoc)}


def keep_all(graph: Graph, forward: ForwardPass) -> Placement:
    return Placement(set(), {}, "read by the backward pass")


def sqrt_segments(graph: Graph, forward: ForwardPass) -> Placement:
    """Chen et al. 2016: stages grouped into segments holding about total/sqrt(n) of the bytes the
    backward pass reads; the last value of each segment is kept, the rest recomputed. The last
    segment is still live when the backward pass starts, so it is kept as it is."""
    read_bytes = [0] * forward.stages
    count = 0
    for node_id in forward.read_by_backward:
        read_bytes[forward.stage_of[node_id]] += graph[node_id].type.nbytes
        count += 1
    total = sum(read_bytes)
    if count < 4 or total == 0:
        return keep_all(graph, forward)
    per_segment = total / math.sqrt(count)
    boundaries, gathered = [], 0
    for stage, stage_bytes in enumerate(read_bytes):
        gathered += stage_bytes
        if gathered >= per_segment:
            boundaries.append(stage)
            gathered = 0
    if not boundaries:
        return keep_all(graph, forward)
    last = boundaries[-1]
    kept = {forward.separators[s] for s in boundaries}
    recompute = {i for i in forward.nodes if forward.stage_of[i] <= last and i not in kept}
    reasons = {i: f"sqrt: last value of segment {k + 1} of {len(boundaries)}" for k, i in
               enumerate(forward.separators[s] for s in boundaries)}
    return Placement(recompute, reasons, "sqrt: in the last segment, live when the backward pass starts")


def min_cut(graph: Graph, forward: ForwardPass, banned: frozenset = BANNED) -> Placement:
    """The cheapest set of values (in bytes) from which everything the backward pass reads can be
    recomputed without recomputing a ``banned`` op: a minimum s-t cut, as AOTAutograd's partitioner.

    Each forward value v is an edge v_in -> v_out whose capacity is its bytes (keeping it); data
    dependencies are uncuttable; inputs and constants need no edge (they are at hand); banned ops
    hang on the source (they are computed in the forward pass only); values the backward pass
    reads hang on the sink. The values whose edge is cut are kept; the sink side is recomputed.
    """
    flow = nx.DiGraph()
    source, sink = "source", "sink"
    flow.add_node(source)  # with no banned op nothing hangs on it: everything is recomputed from the inputs
    for node_id in forward.nodes:
        node = graph[node_id]
        flow.add_edge((node_id, "in"), (node_id, "out"), capacity=node.type.nbytes)
        if node.op in banned:
            flow.add_edge(source, (node_id, "in"))  # no capacity attribute: infinite
        for a in node.args:  # inputs, constants and zeros are at hand in the backward pass: no edge
            if a in forward.stage_of:
                flow.add_edge((a, "out"), (node_id, "in"))
        if node_id in forward.read_by_backward:
            flow.add_edge((node_id, "out"), sink)
    if not forward.read_by_backward:
        return keep_all(graph, forward)
    _, (reachable, _) = nx.minimum_cut(flow, source, sink)
    kept = {node_id for node_id in forward.nodes
            if (node_id, "in") in reachable and (node_id, "out") not in reachable}
    recompute = {node_id for node_id in forward.nodes if (node_id, "out") not in reachable} - kept
    reasons = {i: ("min-cut: a matmul, not recomputed" if graph[i].op in banned else "min-cut: cheapest to keep")
               for i in kept}
    return Placement(recompute, reasons, "read by the backward pass")


def revolve(graph: Graph, forward: ForwardPass, slots: int) -> Placement:
    return Placement(set(), {}, f"optimal: a chain state in one of {slots} Revolve slots", revolve_slots=slots)


def user_policy(graph: Graph, forward: ForwardPass, decide: Callable) -> Placement:
    """A callable ``(node) -> "save" | "recompute"`` asked about every forward value."""
    recompute = set()
    for node_id in forward.nodes:
        answer = decide(graph[node_id])
        if answer not in ("save", "recompute"):
            raise ArgumentError(f"the checkpoint policy {getattr(decide, '__name__', decide)!r} returned {answer!r} "
                                f"for {graph[node_id].op} %{node_id}; it must return 'save' or 'recompute'")
        if answer == "recompute":
            recompute.add(node_id)
    return Placement(recompute, {}, "the policy function said 'save'")


# ---- the pass ---------------------------------------------------------------------------------------


@dataclass
class CheckpointInfo:
    """What the checkpoint pass decided, attached to the graph it made as ``graph.checkpoint_info``."""

    policy: str
    reasons: dict[int, str]  # kept forward value (id in this graph) -> why
    default_reason: str


def describe_policy(policy) -> str:
    if callable(policy):
        return f"callable {getattr(policy, '__name__', repr(policy))}"
    return repr(policy)


def validate_policy(policy) -> None:
    """Raise ArgumentError for a checkpoint argument that is no policy."""
    if isinstance(policy, str):
        if policy not in POLICIES:
            raise ArgumentError(f"unknown checkpoint policy {policy!r}; use one of {', '.join(map(repr, POLICIES))}, "
                                "a memory budget in bytes (int) or a function (node) -> 'save' | 'recompute'")
    elif isinstance(policy, (int, np.integer)) and not isinstance(policy, bool):
        if policy <= 0:
            raise ArgumentError(f"a checkpoint memory budget must be a positive number of bytes, got {policy}")
    elif not callable(policy):
        raise ArgumentError(f"checkpoint must be 'all', 'sqrt', 'optimal', a budget in bytes (int) or a function "
                            f"(node) -> 'save' | 'recompute', got {type(policy).__name__} {policy!r}")


def place(graph: Graph, placement: Placement, forward: ForwardPass, policy_name: str) -> Graph:
    """Build the checkpointed graph a placement describes, with its ``checkpoint_info``."""
    recompute = placement.recompute | marked(graph, forward)
    if placement.revolve_slots is not None:
        result, mapping = with_revolve(graph, forward, placement.revolve_slots)
    else:
        result, mapping = with_recomputation(graph, recompute, forward)
    reasons = {mapping[i]: reason for i, reason in placement.reasons.items() if i in mapping}
    result.checkpoint_info = CheckpointInfo(policy_name, reasons, placement.default_reason)
    return result


def checkpoint(graph: Graph, policy="all", estimate: Optional[Callable[[Graph], int]] = None) -> Graph:
    """The checkpoint pass: ``graph`` (a joint forward + backward graph) with the recomputation
    ``policy`` asks for (see the module docstring). A budget policy compares placements by
    ``estimate(graph)``, their peak bytes (default: fused and scheduled, as the pipeline does)."""
    validate_policy(policy)
    name = describe_policy(policy)
    if isinstance(policy, str) and policy == "all" \
            and not any(isinstance(node.loc, SegmentLoc) for node in graph.nodes):
        graph.checkpoint_info = CheckpointInfo(name, {}, "read by the backward pass")
        return graph  # nothing to do, and no walk of a 100,000-node graph to find that out
    forward = forward_pass(graph)
    if isinstance(policy, str):
        placement = _string_placement(graph, forward, policy)
        return place(graph, placement, forward, name)
    if callable(policy):
        return place(graph, user_policy(graph, forward, policy), forward, name)
    return within_budget(graph, forward, int(policy), estimate or _default_estimate)


def _string_placement(graph: Graph, forward: ForwardPass, policy: str) -> Placement:
    if policy == "all":
        return keep_all(graph, forward)
    if policy == "sqrt":
        return sqrt_segments(graph, forward)
    if forward.stages >= _MIN_CHAIN_STAGES:
        return revolve(graph, forward, fewest_slots_for_one_extra_sweep(forward.stages))
    return min_cut(graph, forward)


def _default_estimate(graph: Graph) -> int:
    from chainrule.compiler.fuse import fuse
    from chainrule.compiler.schedule import schedule

    return schedule(fuse(graph)).memory_plan.peak_bytes


def recompute_flops(graph: Graph) -> int:
    """The FLOPs of ``graph``'s recomputed nodes: the price of the memory saved."""
    from chainrule.compiler.cost import node_cost

    return sum(node_cost(graph, i).flops for i in range(len(graph)) if graph[i].recomputed)


def within_budget(graph: Graph, forward: ForwardPass, budget: int,
                  estimate: Callable[[Graph], int] = _default_estimate) -> Graph:
    """The placement with the least recomputation (FLOPs) whose estimated peak is at most ``budget``
    bytes, among: keeping everything; Revolve with the most slots that fit (chains); sqrt; min-cut.
    ``estimate`` gives a checkpointed graph's peak (the pipeline passes the rest of itself)."""
    name = f"budget {budget} bytes"
    tried = []  # (peak, recompute FLOPs, graph, description)

    def attempt(placement: Placement, description: str) -> bool:
        built = place(graph, placement, forward, f"{name}: {description}")
        peak = estimate(built)
        tried.append((peak, recompute_flops(built), built, description))
        return peak <= budget

    if attempt(keep_all(graph, forward), "keep all"):
        return tried[-1][2]
    if forward.stages >= 2:
        # the fewest slots considered: a schedule costing more than ~20 forward passes is no answer
        low, high = 1, forward.stages + 1
        while griewank_advances(forward.stages, low) > max(20 * forward.stages, 10_000):
            low += 1
        if attempt(revolve(graph, forward, low), f"Revolve, {low} slots"):
            while high - low > 1:  # the most slots that fit: the peak grows with the slots
                middle = (low + high) // 2
                if attempt(revolve(graph, forward, middle), f"Revolve, {middle} slots"):
                    low = middle
                else:
                    high = middle
    attempt(sqrt_segments(graph, forward), "sqrt segments")
    attempt(min_cut(graph, forward), "min-cut")
    fitting = [t for t in tried if t[0] <= budget]
    if not fitting:
        least = min(tried, key=lambda t: t[0])
        raise ChainruleError(f"no checkpoint placement fits the memory budget of {budget} bytes: the lowest "
                             f"estimated peak found is {least[0]} bytes ({least[3]}); raise the budget to at "
                             f"least {least[0]}")
    return min(fitting, key=lambda t: (t[1], t[0]))[2]
