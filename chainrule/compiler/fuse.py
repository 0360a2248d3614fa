"""Operator fusion: elementwise regions (and an elementwise prologue into a reduction) become
``fused`` nodes.

A region grows backwards from its root, its last node: a node joins the
region of its users when *all* its users are in that one region, it has the
region's shape (so the body is one loop over one shape; smaller operands are
region inputs, read by broadcasting), it is not a graph output, and it belongs
to the same pass (forward or backward, where a checkpoint's recomputation is
backward) as the root. Because every member but the root is used only inside
the region, no path leaves the region and comes back: the region is convex,
and replacing it by one node keeps the graph a DAG.
A reduction (sum, max, min) can be a root, taking the elementwise region that
feeds it as its prologue; it never sits inside a region.

One walk in reverse topological order assigns regions, one forward walk
builds the new graph: linear in the graph's size.
"""

from __future__ import annotations

import functools

from chainrule.ir import OPS, Graph
from chainrule.ir.fused import FusedBody

MAX_REGION_STEPS = 256  # keeps kernels small enough for a compiler's register allocator


def find_regions(graph: Graph, min_elements: int = 2) -> list[int]:
    """For each node, the id of the root of its region, or -1 when it is not fused.
    Nodes of fewer than ``min_elements`` elements stay out (fusing scalar arithmetic gains nothing)."""
    return regions_and_sizes(graph, min_elements)[0]


def regions_and_sizes(graph: Graph, min_elements: int = 2) -> tuple[list[int], dict[int, int]]:
    """``find_regions``, and the number of nodes in each region (by root)."""
    nodes = graph.nodes
    region = [-1] * len(nodes)
    # per region root: [its shape, its step count, whether it runs in the backward pass]
    region_facts: dict[int, list] = {}
    outputs = set(graph.outputs)
    users_of = graph.users_index()
    fusible_ops, reduction_ops = _fusible_ops(len(OPS)), _reduction_ops(len(OPS))
    for node_id in range(len(nodes) - 1, -1, -1):
        node = nodes[node_id]
        value_type = node.type
        fusible = node.op in fusible_ops and value_type.size >= min_elements
        is_reduction_root = not fusible and node.op in reduction_ops and value_type.is_float
        if not (fusible or is_reduction_root):
            continue
        is_backward = node.origin is not None or node.recomputed  # node.is_backward, spelled out
        if fusible and node_id not in outputs:
            users = users_of[node_id]
            root = region[users[0]] if users else -1
            if root >= 0:
                shape, steps, root_is_backward = facts = region_facts[root]
                if (
                    shape == value_type.shape
                    and steps < MAX_REGION_STEPS
                    and root_is_backward == is_backward
                    and (len(users) == 1 or all(region[u] == root for u in users))
                ):
                    region[node_id] = root
                    facts[1] = steps + 1
                    continue
        region[node_id] = node_id
        shape = nodes[node.args[0]].type.shape if is_reduction_root else value_type.shape
        region_facts[node_id] = [shape, 1, is_backward]
    return region, {root: facts[1] for root, facts in region_facts.items()}


@functools.lru_cache(maxsize=1)
def _fusible_ops(op_count: int) -> frozenset:
    """The elementwise ops, but those whose result is a view of their operand (stop_gradient): the
    identity by now, fusing it would only copy. Worked out again when an op is registered."""
    return frozenset(name for name, op in OPS.items() if op.is_elementwise and not op.view)


@functools.lru_cache(maxsize=1)
def _reduction_ops(op_count: int) -> frozenset:
    return frozenset(name for name, op in OPS.items() if op.is_reduction)


def fuse(graph: Graph) -> Graph:
    """``graph`` with each region of two or more nodes replaced by one fused node."""
    region = find_regions(graph)
    members: dict[int, list[int]] = {}
    for node_id, root in enumerate(region):
        if root >= 0:
            members.setdefault(root, []).append(node_id)
    if all(len(nodes) < 2 for nodes in members.values()):
        return graph
    result = Graph(graph.name)
    mapping = {i: result.add_input(graph.type(i), graph[i].name, graph[i].loc) for i in graph.inputs}
    for node_id, node in enumerate(graph.nodes):
        root = region[node_id]
        if node.op == "input" or (root >= 0 and root != node_id):
            continue  # an inner node: built as a step of its root
        # a forward node that was fused away is represented by its region's root
        origin = mapping.get(node.origin, mapping.get(region[node.origin])) if node.origin is not None else None
        nodes = members.get(node_id, ())
        if len(nodes) < 2:  # unchanged: copied as it is
            mapping[node_id] = result.append_copy(node, tuple([mapping[a] for a in node.args]), origin)
            continue
        body, inputs = _body(graph, nodes)
        operands = tuple(mapping[i] for i in inputs)
        attrs = {"body": body}
        # a region holding a checkpoint's recomputation stays a copy, never merged with its forward
        # twin; any other is added with the type its root has (verify infers it from the steps again)
        if any(graph[n].recomputed for n in nodes):
            mapping[node_id] = result.add_recomputed(
                "fused", operands, attrs, loc=node.loc, name=node.name, origin=origin
            )
        else:
            mapping[node_id] = result.add(
                "fused", operands, attrs, loc=node.loc, name=node.name, origin=origin, known_type=node.type
            )
    result.set_outputs([mapping[o] for o in graph.outputs], graph.output_names)
    return result


def _describe(graph: Graph, origin):
    """A step's origin as (op, name, loc): ids would go stale when later passes renumber."""
    if origin is None:
        return None
    forward = graph[origin]
    return forward.op, forward.name, forward.loc


def _body(graph: Graph, nodes: list[int]) -> tuple[FusedBody, list[int]]:
    """The region's steps (``nodes`` in topological order) and its inputs, in order of first use."""
    step_of = {node_id: index for index, node_id in enumerate(nodes)}
    inputs: list[int] = []
    input_position: dict[int, int] = {}
    steps = []
    for node_id in nodes:
        node = graph[node_id]
        operands = []
        for a in node.args:
            if a in step_of:
                operands.append(step_of[a])
                continue
            if a not in input_position:
                input_position[a] = len(inputs)
                inputs.append(a)
            operands.append(-input_position[a] - 1)
        steps.append((node.op, tuple(operands), node.attrs, node.type))
    meta = tuple((graph[n].name, graph[n].loc, _describe(graph, graph[n].origin)) for n in nodes)
    return FusedBody(tuple(steps), meta), inputs
