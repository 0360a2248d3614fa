"""Building a checkpointed graph: the forward pass of a joint graph as the backward pass sees it
(its values, those the backward pass reads, its chain of stages; see ``compiler/checkpoint.py``),
and the graph in which chosen forward values are computed again for the backward pass, one by one
(``with_recomputation``) or a chain's stages by a Revolve schedule (``with_revolve``).

A recomputed value is a copy (``Graph.add_recomputed``) placed just before its first backward use.
"""

from __future__ import annotations

from collections import ChainMap
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import cast

from chainrule.compiler.revolve import revolve_schedule
from chainrule.ir import Graph

_SOURCES = frozenset({"input", "const", "zeros"})


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
        # inputs are named (add_input takes a str)
        self.mapping = {
            i: self.new.add_input(graph.type(i), cast(str, graph[i].name), graph[i].loc) for i in graph.inputs
        }
        self.new.name_hints = dict(graph.name_hints)

    def copy_original(self, node_id: int) -> None:
        self.new.transplant(self.old, (node_id,), self.mapping, verbatim=True)

    def recompute(self, node_id: int, operand: Callable[[int], int]) -> int:
        """A recomputed copy of ``node_id`` whose operands are ``operand(a)``."""
        node = self.old[node_id]
        return self.new.add_recomputed(
            node.op, tuple(operand(a) for a in node.args), node.params, loc=node.loc, name=node.name
        )

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
            # a ChainMap: the copy's operands over the shared mapping, which stays unchanged
            # (transplant only reads and adds entries: graph.py's dict annotation is narrower than it needs)
            overlay = ChainMap(operands, mapping)
            mapping[node_id] = new.transplant(old, (node_id,), overlay, verbatim=True)[node_id]  # type: ignore[arg-type]
        new.set_outputs([mapping[o] for o in old.outputs], old.output_names)
        # forward nodes every reader of which now reads a recomputation are dead: drop them
        result = Graph(new.name)
        live = {i: result.add_input(new.type(i), cast(str, new[i].name), new[i].loc) for i in new.inputs}
        result.transplant(new, (i for i in new.live_nodes() if new[i].op != "input"), live, verbatim=True)
        result.set_outputs([live[o] for o in new.outputs], new.output_names)
        result.name_hints = new.name_hints
        return result, {old_id: live[i] for old_id, i in mapping.items() if i in live}


def with_recomputation(
    graph: Graph, recompute: set[int], forward: ForwardPass | None = None
) -> tuple[Graph, dict[int, int]]:
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
    replay = _RevolveReplay(graph, forward, revolve_schedule(forward.stages, slots))
    return replay.builder.build(replay.provide, forward)


class _RevolveReplay:
    """A Revolve schedule run as far as the backward nodes built so far need: ``provide`` gives the
    id of a forward value a backward node reads, running the schedule up to that stage's turn."""

    def __init__(self, graph: Graph, forward: ForwardPass, actions: list[tuple[str, int]]):
        self.graph = graph
        self.forward = forward
        self.actions = actions
        self.steps = forward.stages
        self.builder = _Builder(graph)
        self.separators = forward.separators
        self.position = {node_id: s for s, node_id in enumerate(self.separators)}
        self.members: list[set[int]] = [set() for _ in range(self.steps)]
        for node_id in forward.nodes:
            self.members[forward.stage_of[node_id]].add(node_id)
        # i -> the id of x_i in a slot; x_0 is the inputs, None here and as ``current``
        self.state: dict[int, int | None] = {}
        self.turn_base: dict[int, int | None] = {}  # stage -> the id of its input state at its turn
        # stage -> recomputed copies made at its turn (None: the forward nodes themselves)
        self.tape: dict[int, dict[int, int] | None] = {}
        self.next_action = 0
        self.current: int | None = None  # the id of the current state
        self.originals = True  # the first sweep, which the forward pass itself computes

    def operands_of(self, stage: int, base: int | None, made: dict[int, int]) -> Callable[[int], int]:
        """Operands for a copy of stage ``stage`` computed from ``base`` (its input state): a stage
        reads only the previous separator, its own nodes and sources."""
        mapping = self.builder.mapping
        if stage == 0 or base is None:  # stage 0 reads x_0, the inputs, which no copy replaces
            return lambda a: made[a] if a in made else mapping[a]
        previous = self.separators[stage - 1]
        return lambda a: base if a == previous else made[a] if a in made else mapping[a]

    def advance(self, stage: int) -> None:
        """Step ``stage``: x_(stage+1) computed from the current state."""
        if self.originals:  # the forward pass computes it: x_(stage+1) is the forward node
            self.current = self.builder.mapping[self.separators[stage]]
            return
        made: dict[int, int] = {}
        operand = self.operands_of(stage, self.current, made)
        for node_id in _ancestors_within(self.graph, self.separators[stage], self.members[stage]):
            made[node_id] = self.builder.recompute(node_id, operand)
        self.current = made[self.separators[stage]]

    def run_until_turn(self, stage: int) -> None:
        """Run the schedule's actions until ``stage`` has had its turn."""
        while stage not in self.turn_base and self.next_action < len(self.actions):
            action, i = self.actions[self.next_action]
            self.next_action += 1
            if action == "advance":
                self.advance(i)
            elif action == "store":
                self.state[i] = self.current
            elif action == "free":
                self.state.pop(i, None)
            elif action == "restore":
                self.current = self.state[i]
            else:  # turn
                self.turn_base[i] = self.current
                self.tape[i] = {}
                if self.originals and i == self.steps - 1:
                    self.tape[i] = None  # the last stage's intermediates are the forward nodes themselves
                self.originals = False
                self.current = None

    def provide(self, value: int) -> int:
        """The id a backward node reads forward value ``value`` by: kept, or recomputed at its turn."""
        position, steps = self.position, self.steps
        if value in position and position[value] + 1 < steps:
            self.run_until_turn(position[value] + 1)  # x_(s+1) is where the next stage's turn starts
            base = self.turn_base[position[value] + 1]
            return base if base is not None else self.builder.mapping[value]
        stage = self.forward.stage_of[value]
        self.run_until_turn(stage)
        made = self.tape.get(stage)
        if made is None:
            return self.builder.mapping[value]
        if value not in made:
            operand = self.operands_of(stage, self.turn_base[stage], made)
            for node_id in _ancestors_within(self.graph, value, self.members[stage], made):
                made[node_id] = self.builder.recompute(node_id, operand)
        return made[value]


def _ancestors_within(graph: Graph, node_id: int, allowed: set[int], done: Collection[int] = ()) -> list[int]:
    """``node_id`` and its ancestors in ``allowed`` but not ``done``, walking only through those, in
    id order (a topological order)."""
    found: set[int] = set()
    stack = [node_id]
    while stack:
        current = stack.pop()
        if current in allowed and current not in found and current not in done:
            found.add(current)
            stack.extend(graph[current].args)
    return sorted(found)
