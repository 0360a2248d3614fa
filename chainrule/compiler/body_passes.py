"""The optimizing passes on the bodies of control nodes (loop, while, switch, their derivatives).

A control node's body (``ir.control.Body``: a loop's step, a branch, a while loop's condition, the
VJP body reverse mode derives) is a graph of its own, traced or built by differentiation, and
run once per step: it needs simplification, fusion and a schedule as much as the top-level graph,
more when it runs ten thousand times. ``optimize_bodies`` gives each body of each control node of
a graph the same passes the top level gets (simplify, fuse, schedule), innermost bodies first
(a body holding a loop has that loop's bodies optimized before its own), and rebuilds the nodes
with the new Bodies: a node's attrs are part of its identity, so the node is added again, never
edited.

What a runner relies on is kept: the body's inputs (all of them, unused ones too: they are its
signature) and its outputs, in their order and of their types (loop: ``[t, carry..., x_t...,
consts...] -> [carry'..., y...]``; a VJP body's tape outputs; a branch's operands). The passes
only ever replace a value by an equal one of the same type, drop dead nodes and reorder.

A Body shared by several nodes (one Body object) is optimized once: the optimized Body is kept
on the original (``Body.derived``), so it lives exactly as long as the original, and compiling
the same traced graph again reuses it. An optimized Body is never optimized again.
"""

from __future__ import annotations

import os
import weakref
from typing import Any

from chainrule.compiler.fuse import fuse
from chainrule.compiler.rewrite import copy_replacing
from chainrule.compiler.schedule import schedule
from chainrule.compiler.simplify import simplify
from chainrule.ir import Graph
from chainrule.ir.control import Body

# Bodies this pass made: already optimized (weak, so a dropped compilation frees them).
_OPTIMIZED: weakref.WeakSet[Body] = weakref.WeakSet()


def optimize_body_graph(graph: Graph) -> Graph:
    """A body's graph through the optimizing stages (its own bodies first), same signature."""
    graph = optimize_bodies(graph)
    return schedule(fuse(simplify(graph)), reorder=True)


def optimized(body: Body) -> Body:
    """``body`` with an optimized graph (made once per Body; ``body`` itself when nothing changed)."""
    if body in _OPTIMIZED:
        return body
    result: Body = body.derived("optimized", lambda: _make_optimized(body))
    return result


def _make_optimized(body: Body) -> Body:
    graph = optimize_body_graph(body.graph)
    _check_signature(body.graph, graph)
    if os.environ.get("CHAINRULE_VERIFY") == "1":  # as the pipeline verifies the top-level graph
        graph.verify()
    if graph is body.graph:
        _OPTIMIZED.add(body)
        return body
    result = Body(graph)
    _OPTIMIZED.add(result)
    return result


def _check_signature(traced: Graph, optimized_graph: Graph) -> None:
    """The runners index a body's inputs and outputs by position: they must not have moved."""
    assert [traced.type(i) for i in traced.inputs] == [optimized_graph.type(i) for i in optimized_graph.inputs]
    assert [traced.type(o) for o in traced.outputs] == [optimized_graph.type(o) for o in optimized_graph.outputs], (
        f"optimizing body {traced.name} changed its outputs"
    )


def _optimized_attr(value: Any) -> Any:
    """An attr value with its Bodies optimized (a Body, or a tuple of them: a switch's branches)."""
    if isinstance(value, Body):
        return optimized(value)
    if isinstance(value, tuple) and value and all(isinstance(item, Body) for item in value):
        return tuple(optimized(item) for item in value)
    return value


def _new_attrs(attrs: tuple) -> dict[str, Any] | None:
    """The node's attrs with optimized bodies, or None when it has no body that changed."""
    changed = False
    result = {}
    for key, value in attrs:
        new = _optimized_attr(value)
        changed = changed or new is not value
        result[key] = new
    return result if changed else None


def optimize_bodies(graph: Graph) -> Graph:
    """``graph`` with every control node's bodies optimized (``graph`` itself when it has none).

    >>> graph = cr.grad(f).graph(x, stage="grad")  # doctest: +SKIP
    >>> optimize_bodies(graph)  # the same nodes; each loop's body simplified, fused, scheduled  # doctest: +SKIP
    """
    replaced = {}
    for node_id in graph.live_nodes():
        attrs = graph[node_id].attrs
        if attrs and any(isinstance(v, Body | tuple) for _, v in attrs):
            new = _new_attrs(attrs)
            if new is not None:
                replaced[node_id] = new
    if not replaced:
        return graph
    return copy_replacing(graph, lambda i: (graph[i].op, replaced[i]) if i in replaced else None)
