"""A Graph as a ``networkx.DiGraph`` and back, and as GraphML.

``to_networkx(graph)`` gives one networkx node per IR node (keyed by its id) carrying ``op``,
``shape`` (a tuple), ``dtype``, ``name``, ``attrs`` (a dict), ``loc`` (the user's source line,
an ``errors.Loc`` or None), ``source`` (that line as text, "model.py:5"), ``origin`` and
``recomputed``; the graph's own ``name``, ``inputs``, ``outputs`` and ``output_names`` are in
``g.graph``. An edge runs from operand to user and carries ``positions``, the operand positions
it fills: ``x * x`` is one edge with positions (0, 1), since a DiGraph holds one edge per pair.
``from_networkx(g)`` rebuilds the identical Graph (same ids, operand order, attributes, types,
names, locations), so a user can analyse or edit the graph with networkx and come back.

GraphML holds only strings and numbers, so ``write_graphml`` stores beside each node's readable
fields an exact encoding of what they cannot say (``attrs`` and ``loc``, pickled and base64'd:
constants are arrays, a fused node's body is a program); ``read_graphml`` decodes it.

    >>> import networkx as nx
    >>> g = graph.to_networkx()                      # doctest: +SKIP
    >>> nx.dag_longest_path_length(g)                # the graph's depth, in ops  # doctest: +SKIP
"""

from __future__ import annotations

import base64
import json
import pickle
from typing import TYPE_CHECKING, Any

import networkx as nx

from chainrule.ir.node import Node, freeze_attrs
from chainrule.ir.types import TensorType

if TYPE_CHECKING:
    from chainrule.ir.graph import Graph

_GRAPH_FIELDS = ("name", "inputs", "outputs", "output_names")


def to_networkx(graph: Graph) -> nx.DiGraph:
    """``graph`` as a networkx DiGraph (see the module docstring for what nodes and edges carry)."""
    g = nx.DiGraph(
        name=graph.name, inputs=list(graph.inputs), outputs=list(graph.outputs), output_names=list(graph.output_names)
    )
    g.add_nodes_from(
        (
            node_id,
            {
                "op": node.op,
                "shape": node.type.shape,
                "dtype": node.type.dtype,
                "name": node.name,
                "attrs": dict(node.attrs),
                "loc": node.loc,
                "source": str(node.loc) if node.loc else "",
                "origin": node.origin,
                "recomputed": node.recomputed,
            },
        )
        for node_id, node in enumerate(graph.nodes)
    )
    for node_id, node in enumerate(graph.nodes):
        positions: dict[int, list[int]] = {}
        for position, operand in enumerate(node.args):
            positions.setdefault(operand, []).append(position)
        g.add_edges_from((operand, node_id, {"positions": tuple(p)}) for operand, p in positions.items())
    return g


def from_networkx(g: nx.DiGraph, graph_class: type[Graph]) -> Graph:
    """The Graph ``g`` describes: the inverse of ``to_networkx``."""
    graph = graph_class(g.graph["name"])
    for node_id in sorted(g.nodes):
        if node_id != len(graph.nodes):
            raise ValueError(
                f"node ids must be 0, 1, 2, ... (a topological order); found {node_id} after {len(graph.nodes) - 1}"
            )
        data = g.nodes[node_id]
        args: list[int] = []
        for operand, _, edge in g.in_edges(node_id, data=True):
            for position in edge["positions"]:
                args.extend([-1] * (position + 1 - len(args)))
                args[position] = operand
        node = Node(
            data["op"],
            tuple(args),
            freeze_attrs(data["attrs"]),
            TensorType(tuple(data["shape"]), data["dtype"]),
            data["loc"],
            data["name"],
            data["origin"],
            data["recomputed"],
        )
        graph.append_copy(node, node.args, node.origin)
    graph.inputs = list(g.graph["inputs"])
    graph.set_outputs(g.graph["outputs"], g.graph["output_names"])
    return graph


def write_graphml(graph: Graph, path: str) -> None:
    """Write ``graph`` as GraphML: readable fields as they are, the rest encoded exactly."""
    g = to_networkx(graph)
    for _, data in g.nodes(data=True):
        data["shape"] = "x".join(map(str, data["shape"]))
        data["name"] = data["name"] or ""
        data["origin"] = -1 if data["origin"] is None else data["origin"]
        data["attrs_text"] = ", ".join(f"{k}={v!r}" for k, v in data["attrs"].items())
        data["encoded"] = _encode((data.pop("attrs"), data.pop("loc")))
    for _, _, data in g.edges(data=True):
        data["positions"] = ",".join(map(str, data["positions"]))
    for field in _GRAPH_FIELDS:
        g.graph[field] = json.dumps(g.graph[field])
    nx.write_graphml(g, path)


def read_graphml(path: str, graph_class: type[Graph]) -> Graph:
    """The Graph ``write_graphml`` wrote to ``path`` (``Graph.read_graphml``)."""
    g = nx.read_graphml(path, node_type=int)
    for _, data in g.nodes(data=True):
        data["shape"] = tuple(int(d) for d in data["shape"].split("x")) if data["shape"] else ()
        data["name"] = data["name"] or None
        data["origin"] = None if data["origin"] < 0 else data["origin"]
        data["attrs"], data["loc"] = _decode(data.pop("encoded"))
    for _, _, data in g.edges(data=True):
        data["positions"] = tuple(int(p) for p in str(data["positions"]).split(","))
    for field in _GRAPH_FIELDS:
        g.graph[field] = json.loads(g.graph[field])
    return from_networkx(g, graph_class)


def _encode(value: Any) -> str:
    return base64.b64encode(pickle.dumps(value)).decode("ascii")


def _decode(text: str) -> Any:
    # Only for files chainrule wrote: unpickling runs code the file names, as any pickle does.
    return pickle.loads(base64.b64decode(text))
