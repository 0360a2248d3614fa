"""Dead-code elimination: a copy of the graph with only what the outputs need."""

from __future__ import annotations

import numpy as np

from chainrule.ir import OPS, Graph


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


# Work that shares the gradient's loops (dropping the value there would add a loop of its own: the
# zero's copy); a value-only node of any other kind (a factorization, a product, a transform, a
# loop) is a call of its own that grad would run for nothing
_SHARES_LOOPS = frozenset({"elementwise", "fused", "reduction", "source", "shape", "index"})


def without_value(graph: Graph) -> Graph | None:
    """``graph`` with its first output (the value of ``grad``, which returns the gradients alone)
    a zero of its type, and what only the value needed gone: the gradient of ``slogdet`` computes
    no LU factorization for the log-determinant. None when the value needs nothing of its own but
    elementwise work and reductions, which run in the gradient's loops."""
    value = graph.type(graph.outputs[0])
    kept = graph.live_nodes(graph.outputs[1:])
    value_only = set(graph.live_nodes()).difference(kept)
    if value.dtype not in ("float64", "float32") or all(OPS[graph[i].op].kind in _SHARES_LOOPS for i in value_only):
        return None
    result = Graph(graph.name)
    mapping = {i: result.add_input(graph.type(i), graph[i].name, graph[i].loc) for i in graph.inputs}
    result.transplant(graph, (i for i in kept if graph[i].op != "input"), mapping, verbatim=True)
    zero = result.const(np.zeros(value.shape, value.dtype))
    result.set_outputs([zero, *(mapping[o] for o in graph.outputs[1:])], graph.output_names)
    result.carry_name_hints(graph, mapping)
    return result
