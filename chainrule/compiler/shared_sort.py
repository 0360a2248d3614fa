"""One sort where a graph needs both the sorted values and the permutation that sorts them.

``np.sort`` is the ``sort`` primitive (NumPy's own sort of the values); its derivative rules read
the permutation, the stable ``argsort`` of the same array along the same axis. A function compiled
alone (``jit``), or a gradient that does not need the sorted values, sorts once. A graph holding
both (a value and its gradient, forward mode's primal and tangent, a user's ``np.sort(x)`` beside
``np.argsort(x)``) would sort twice; this pass takes the values through the permutation instead
(``np.take_along_axis(x, order, axis)``, a gather: a fraction of a sort's cost). The stable order
and NumPy's default sort agree on every value (equal values are equal; only 0.0 and -0.0 may
trade places), so the result does not depend on whether the pass ran.

It runs with the other late rewrites (after checkpointing, before fusion); bodies of loops and
branches keep their sorts.
"""

from __future__ import annotations

from chainrule.ir import Graph
from chainrule.ir.builder import Value, apply
from chainrule.ir.scans import along_permutation


def _shared(graph: Graph) -> set[int]:
    """The live sorts whose operand the graph also argsorts, along the same axis."""
    live = graph.live_nodes()
    ordered = {(graph[i].args[0], graph[i].params["axis"]) for i in live if graph[i].op == "argsort"}
    return {i for i in live if graph[i].op == "sort" and (graph[i].args[0], graph[i].params["axis"]) in ordered}


def share_sorts(graph: Graph) -> Graph:
    """``graph`` with each ``sort`` whose permutation the graph also computes taken through that
    permutation (``graph`` itself when there is none)."""
    targets = _shared(graph)
    if not targets:
        return graph
    result = Graph(graph.name)
    mapping = {i: result.add_input(graph.type(i), graph[i].name, graph[i].loc) for i in graph.inputs}
    for node_id in graph.live_nodes():
        node = graph[node_id]
        if node.op == "input":
            continue
        args = tuple([mapping[a] for a in node.args])
        origin = mapping.get(node.origin) if node.origin is not None else None
        if node_id not in targets or node.recomputed:
            # the argsort (and arange constants) a gather built before may be this node already
            found = None if node.recomputed else result.find(node.op, args, node.attrs)
            mapping[node_id] = result.append_copy(node, args, origin) if found is None else found
            continue
        # the argsort may come after the sort in the walk (both read only the operand): built here then
        order = Value(result, result.add("argsort", [args[0]], {"axis": node.params["axis"]}))
        index, arrays = along_permutation(order, node.params["axis"])
        mapping[node_id] = apply("getitem", Value(result, args[0]), *arrays, index=index).id
    result.set_outputs([mapping[o] for o in graph.outputs], graph.output_names)
    result.carry_name_hints(graph, mapping)
    return result
