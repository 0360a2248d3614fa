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
first use, where fusion can merge them into the backward kernels. This module
chooses what to keep; ``compiler/recompute.py`` finds the forward pass and its
chain and builds the graph a choice describes.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable
from dataclasses import dataclass

import networkx as nx
import numpy as np

from chainrule.compiler.recompute import ForwardPass, forward_pass, with_recomputation, with_revolve
from chainrule.compiler.revolve import fewest_slots_for_one_extra_sweep, griewank_advances
from chainrule.errors import ArgumentError, ChainruleError, Loc
from chainrule.ir import Graph

POLICIES = ("all", "sqrt", "optimal")
# Never recomputed by the min-cut: a matmul costs far more to compute than its result costs to keep.
# (chainrule has no random-draw op to ban: a dropout mask is an input, drawn by the caller.)
BANNED = frozenset({"matmul"})
_MIN_CHAIN_STAGES = 4  # fewer stages than this is a DAG for "optimal": the min-cut decides


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
    revolve_slots: int | None = None  # chains reversed by Revolve instead of ``recompute``


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
    reasons = {
        i: f"sqrt: last value of segment {k + 1} of {len(boundaries)}"
        for k, i in enumerate(forward.separators[s] for s in boundaries)
    }
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
    kept = {node_id for node_id in forward.nodes if (node_id, "in") in reachable and (node_id, "out") not in reachable}
    recompute = {node_id for node_id in forward.nodes if (node_id, "out") not in reachable} - kept
    reasons = {
        i: ("min-cut: a matmul, not recomputed" if graph[i].op in banned else "min-cut: cheapest to keep") for i in kept
    }
    return Placement(recompute, reasons, "read by the backward pass")


def revolve(graph: Graph, forward: ForwardPass, slots: int) -> Placement:
    return Placement(set(), {}, f"optimal: a chain state in one of {slots} Revolve slots", revolve_slots=slots)


def user_policy(graph: Graph, forward: ForwardPass, decide: Callable) -> Placement:
    """A callable ``(node) -> "save" | "recompute"`` asked about every forward value."""
    recompute = set()
    for node_id in forward.nodes:
        answer = decide(graph[node_id])
        if answer not in ("save", "recompute"):
            raise ArgumentError(
                f"the checkpoint policy {getattr(decide, '__name__', decide)!r} returned {answer!r} "
                f"for {graph[node_id].op} %{node_id}; it must return 'save' or 'recompute'"
            )
        if answer == "recompute":
            recompute.add(node_id)
    return Placement(recompute, {}, "the policy function said 'save'")


# ---- the pass ---------------------------------------------------------------------------------------


@dataclass
class CheckpointInfo:
    """What the checkpoint pass decided for the graph it made (see ``checkpoint_info``)."""

    policy: str
    reasons: dict[int, str]  # kept forward value (id in this graph) -> why
    default_reason: str


# The checkpoint pass's decisions, by the graph it returned: kept beside the graph, not on it (a Graph
# has no such field), and dropped with it.
_CHECKPOINT_INFO: weakref.WeakKeyDictionary[Graph, CheckpointInfo] = weakref.WeakKeyDictionary()


def checkpoint_info(graph: Graph) -> CheckpointInfo | None:
    """What the checkpoint pass decided for ``graph``, a graph it returned; None for any other graph."""
    return _CHECKPOINT_INFO.get(graph)


def describe_policy(policy) -> str:
    if callable(policy):
        return f"callable {getattr(policy, '__name__', repr(policy))}"
    return repr(policy)


def validate_policy(policy) -> None:
    """Raise ArgumentError for a checkpoint argument that is no policy."""
    if isinstance(policy, str):
        if policy not in POLICIES:
            raise ArgumentError(
                f"unknown checkpoint policy {policy!r}; use one of {', '.join(map(repr, POLICIES))}, "
                "a memory budget in bytes (int) or a function (node) -> 'save' | 'recompute'"
            )
    elif isinstance(policy, (int, np.integer)) and not isinstance(policy, bool):
        if policy <= 0:
            raise ArgumentError(f"a checkpoint memory budget must be a positive number of bytes, got {policy}")
    elif not callable(policy):
        raise ArgumentError(
            f"checkpoint must be 'all', 'sqrt', 'optimal', a budget in bytes (int) or a function "
            f"(node) -> 'save' | 'recompute', got {type(policy).__name__} {policy!r}"
        )


def place(graph: Graph, placement: Placement, forward: ForwardPass, policy_name: str) -> Graph:
    """Build the checkpointed graph a placement describes, with its ``checkpoint_info``."""
    recompute = placement.recompute | marked(graph, forward)
    if placement.revolve_slots is not None:
        result, mapping = with_revolve(graph, forward, placement.revolve_slots)
    else:
        result, mapping = with_recomputation(graph, recompute, forward)
    reasons = {mapping[i]: reason for i, reason in placement.reasons.items() if i in mapping}
    _CHECKPOINT_INFO[result] = CheckpointInfo(policy_name, reasons, placement.default_reason)
    return result


def checkpoint(graph: Graph, policy="all", estimate: Callable[[Graph], int] | None = None) -> Graph:
    """The checkpoint pass: ``graph`` (a joint forward + backward graph) with the recomputation
    ``policy`` asks for (see the module docstring). A budget policy compares placements by
    ``estimate(graph)``, their peak bytes (default: fused and scheduled, as the pipeline does)."""
    validate_policy(policy)
    name = describe_policy(policy)
    if (
        isinstance(policy, str)
        and policy == "all"
        and not any(isinstance(node.loc, SegmentLoc) for node in graph.nodes)
    ):
        _CHECKPOINT_INFO[graph] = CheckpointInfo(name, {}, "read by the backward pass")
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
    from chainrule.compiler.schedule import peak_bytes, schedule

    return peak_bytes(schedule(fuse(graph)))


def recompute_flops(graph: Graph) -> int:
    """The FLOPs of ``graph``'s recomputed nodes: the price of the memory saved."""
    from chainrule.compiler.cost import node_cost

    return sum(node_cost(graph, i).flops for i in range(len(graph)) if graph[i].recomputed)


def within_budget(
    graph: Graph, forward: ForwardPass, budget: int, estimate: Callable[[Graph], int] = _default_estimate
) -> Graph:
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
        raise ChainruleError(
            f"no checkpoint placement fits the memory budget of {budget} bytes: the lowest "
            f"estimated peak found is {least[0]} bytes ({least[3]}); raise the budget to at "
            f"least {least[0]}"
        )
    return min(fitting, key=lambda t: (t[1], t[0]))[2]
