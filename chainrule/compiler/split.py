"""Splitting a graph in two at some of its inputs: what can run before they are known, and the rest.

``cr.vjp`` needs this: its joint graph takes the primals and the output
cotangent, but the cotangent comes later, and every call of ``vjp_fn`` should
run only the backward half. The early graph computes every value that does not
depend on the late inputs and returns the ones the late graph reads (the
residuals: the forward values the backward pass keeps); the late graph takes
the residuals and the late inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from chainrule.ir import Graph


def split(
    graph: Graph, late_inputs: Sequence[int], early_outputs: Sequence[int], late_outputs: Sequence[int]
) -> tuple[Graph, Graph, int]:
    """``(early, late, residual_count)``.

    ``early``: inputs are ``graph``'s inputs other than the positions in
    ``late_inputs``; outputs are ``graph``'s outputs at ``early_outputs`` (which
    must not depend on the late inputs), then the residuals. ``late``: inputs are
    the residuals, then the late inputs; outputs are ``graph``'s outputs at
    ``late_outputs``. Constants and views (transposes, reshapes, broadcasts) are
    copied into the late graph rather than passed.
    """
    late_positions = set(late_inputs)
    is_late = _depends_on(graph, [graph.inputs[p] for p in late_positions])
    for position in early_outputs:
        if is_late[graph.outputs[position]]:
            raise ValueError(f"output {graph.output_names[position]} depends on a late input")
    late_needed, residuals = _late_part(graph, is_late, late_outputs)

    early = Graph(f"{graph.name}_early")
    early_map = {
        i: early.add_input(graph.type(i), cast(str, graph[i].name), graph[i].loc)  # inputs are named
        for p, i in enumerate(graph.inputs)
        if p not in late_positions
    }
    early.transplant(graph, (i for i in range(len(graph)) if not is_late[i] and i not in early_map), early_map)
    early.set_outputs(
        [early_map[graph.outputs[p]] for p in early_outputs] + [early_map[r] for r in residuals],
        [graph.output_names[p] for p in early_outputs] + [_name(graph, r) for r in residuals],
    )

    late = Graph(f"{graph.name}_late")
    taken = {graph[graph.inputs[p]].name for p in late_inputs}
    late_map = {}
    for r in residuals:
        name = _name(graph, r)
        while name in taken:  # two residuals may carry the same name hint
            name += "_"
        taken.add(name)
        late_map[r] = late.add_input(graph.type(r), name, graph[r].loc)
    for position in late_inputs:
        source = graph.inputs[position]
        late_map[source] = late.add_input(graph.type(source), cast(str, graph[source].name), graph[source].loc)
    late.transplant(graph, (i for i in range(len(graph)) if late_needed[i] and i not in late_map), late_map)
    late.set_outputs([late_map[graph.outputs[p]] for p in late_outputs], [graph.output_names[p] for p in late_outputs])
    return early, late, len(residuals)


# Early values the late graph makes itself instead of receiving: constants, and views of other
# values (in NumPy a transpose or reshape costs nothing, a residual copy of W.T costs W's size).
_COPIED = frozenset({"const", "zeros", "transpose", "reshape", "broadcast_to"})


def _name(graph: Graph, node_id: int) -> str:
    node = graph[node_id]
    return node.name or f"{node.op}{node_id}"


def _depends_on(graph: Graph, sources: list[int]) -> bytearray:
    """A flag per node: does it depend on one of ``sources``? (ids are topological)"""
    flags = bytearray(len(graph))
    for source in sources:
        flags[source] = 1
    for node_id in range(len(graph)):
        if any(flags[a] for a in graph[node_id].args):
            flags[node_id] = 1
    return flags


def _late_part(graph: Graph, is_late: bytearray, late_outputs: Sequence[int]) -> tuple[bytearray, list[int]]:
    """(a flag per node the late outputs need, the early values they need: the residuals), found
    backwards from the late outputs."""
    late_needed = bytearray(len(graph))
    for position in late_outputs:
        late_needed[graph.outputs[position]] = 1
    residuals = []
    for node_id in range(len(graph) - 1, -1, -1):
        if not late_needed[node_id]:
            continue
        node = graph[node_id]
        if not is_late[node_id] and node.op not in _COPIED:
            residuals.append(node_id)
            continue
        for a in node.args:
            late_needed[a] = 1
    residuals.reverse()
    return late_needed, residuals
