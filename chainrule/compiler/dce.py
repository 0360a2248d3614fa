"""Dead-code elimination: a copy of the graph with only what the outputs need."""

from __future__ import annotations

from chainrule.ir import Graph


def dce(graph: Graph) -> Graph:
    """The live part of ``graph``, renumbered densely (``graph`` itself when all of it is live).
    Every input is kept: it is the signature."""
    live = graph.live_nodes()
    if len(live) == len(graph):
        return graph
    result = Graph(graph.name)
    mapping = {i: result.add_input(graph.type(i), graph[i].name, graph[i].loc) for i in graph.inputs}
    result.transplant(graph, (i for i in live if graph[i].op != "input"), mapping, verbatim=True)
    result.set_outputs([mapping[o] for o in graph.outputs], graph.output_names)
    result.carry_name_hints(graph, mapping)
    return result
