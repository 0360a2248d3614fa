"""Human-readable dumps of a Graph: the text format and Graphviz DOT."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from chainrule.ir.structural import render_index
from chainrule.ir.types import TensorType

if TYPE_CHECKING:
    from chainrule.ir.graph import Graph, Node

_COMMENT_COLUMN = 52


def operand_names(graph: Graph) -> dict[int, str]:
    """How each node is referred to: inputs by their name, everything else as %id."""
    return {node_id: graph[node_id].name or f"%{node_id}" for node_id in graph.inputs}


def _format_attr_value(key: str, value: Any, node: Node, names: dict[int, str]) -> str:
    if key == "index":
        return "[" + render_index(value, [names.get(a, f"%{a}") for a in node.args[1:]]) + "]"
    return str(value)


def _operand(graph: Graph, node_id: int, names: dict[int, str]) -> str:
    """How a fused body shows an operand: a scalar constant by its value, else its name or %id."""
    value = graph.const_value(node_id) if graph[node_id].op == "const" else None
    if value is not None and value.size == 1:
        return repr(value.reshape(()).item())
    return names.get(node_id, f"%{node_id}")


def format_node(graph: Graph, node_id: int, names: dict[int, str] | None = None) -> str:
    """One line of the text format: ``%id: type = op[attrs] operands``, then a comment."""
    names = names if names is not None else operand_names(graph)
    node = graph[node_id]
    params = node.params
    if node.op == "const":
        head = f"const {params['value']!r}"
    elif node.op == "zeros":
        head = "zeros"
    elif node.op == "fused":
        head = "fused { " + params["body"].expression([_operand(graph, a, names) for a in node.args]) + " }"
    else:
        shown = {k: v for k, v in params.items() if k not in ("dtype",) or node.op == "cast"}
        attrs = ", ".join(f"{k}={_format_attr_value(k, v, node, names)}" for k, v in shown.items())
        head = node.op + (f"[{attrs}]" if attrs else "")
        head += " " + ", ".join(names.get(a, f"%{a}") for a in node.args) if node.args else ""
    line = f"  %{node_id}: {node.type} = {head}"
    comment = node_comment(graph, node)
    if comment:
        line = f"{line.ljust(_COMMENT_COLUMN)} # {comment}"
    return line


def node_comment(graph: Graph, node: Node) -> str:
    """What a node is to the user: its name, the forward op it differentiates, its source line."""
    parts = ["recomputed"] if node.recomputed else []
    if node.name and node.op != "input":
        parts.append(node.name)
    if node.origin is not None:
        forward = graph[node.origin]
        op = forward.params["body"].root[0] if forward.op == "fused" else forward.op
        subject = forward.name if forward.op == "input" and forward.name else f"%{node.origin}"
        parts.append(f"d {op} {subject}")
    if node.loc is not None:
        parts.append(str(node.loc))
    return ", ".join(parts)


def format_graph(graph: Graph, node_ids: Iterable[int] | None = None) -> str:
    """The whole function in the text format (see DESIGN, "The IR")."""
    names = operand_names(graph)
    signature = ", ".join(f"{graph[i].name}: {graph[i].type}" for i in graph.inputs)
    results = ", ".join(str(graph.type(o)) for o in graph.outputs)
    results = results if len(graph.outputs) == 1 else f"({results})"
    lines = [f"def {graph.name}({signature}) -> {results}:"]
    body = node_ids if node_ids is not None else range(len(graph))
    for i in body:
        if graph[i].op != "input":
            lines.append(format_node(graph, i, names))
            for inner in subgraphs(graph[i].params):  # a loop's body, a switch's branches: nested
                lines += ["    " + line for line in format_graph(inner).splitlines()]
    returned = ", ".join(names.get(o, f"%{o}") for o in graph.outputs)
    lines.append(f"  return {returned}")
    return "\n".join(lines)


def subgraphs(params: dict[str, Any]) -> list[Graph]:
    """The graphs an op's attributes hold (a loop's ``body``, a switch's ``branches``)."""
    found = []
    for value in params.values():
        for item in value if isinstance(value, tuple) else (value,):
            inner = getattr(item, "graph", None)
            if inner is not None and hasattr(inner, "nodes"):
                found.append(inner)
    return found


# Graphviz's escapes: quotes and backslashes always; braces, bars and angle brackets only matter in
# record-shaped nodes, but escaped they print as themselves in a box too.
_DOT_ESCAPES = str.maketrans({c: "\\" + c for c in '\\"{}|<>'})


def _dot_label(graph: Graph, node_id: int, names: dict[int, str]) -> str:
    """A box's text: the op (a fused node's body, one binding a line; a constant's value), then the
    type, after the value's name if it has one (``dZ1: f64[3,1]``)."""
    node = graph[node_id]
    if node.op == "input":
        lines = [node.name or f"%{node_id}"]
    elif node.op == "fused":
        expression = node.params["body"].expression([_operand(graph, a, names) for a in node.args])
        lines = [f"%{node_id} fused"] + expression.split("; ")
    elif node.op == "const":
        lines = [f"%{node_id} const", repr(node.params["value"])]
    else:
        lines = [f"%{node_id} {node.op}"]
    typed = f"{node.name}: {node.type}" if node.name and node.op != "input" else str(node.type)
    return "\\n".join(line.translate(_DOT_ESCAPES) for line in lines + [typed])


def format_dot(graph: Graph) -> str:
    """Graphviz DOT text: one box per node (op and type; a fused node shows its body), edges labelled
    by operand position. Inputs are blue, nodes of the backward pass (those with an origin) red."""
    names = operand_names(graph)
    lines = [
        f'digraph "{graph.name.translate(_DOT_ESCAPES)}" {{',
        "  rankdir=TB;",
        '  node [shape=box, fontname="monospace"];',
    ]
    for node_id in graph.live_nodes():
        node = graph[node_id]
        style = ', style=filled, fillcolor="#e8f0fe"' if node.op == "input" else ""
        style = ', style=filled, fillcolor="#fdecea"' if node.origin is not None else style
        lines.append(f'  n{node_id} [label="{_dot_label(graph, node_id, names)}"{style}];')
        for position, arg in enumerate(node.args):
            edge_label = f' [label="{position}"]' if len(node.args) > 1 else ""
            lines.append(f"  n{arg} -> n{node_id}{edge_label};")
    for position, out in enumerate(graph.outputs):
        lines.append(
            f'  out{position} [label="{graph.output_names[position].translate(_DOT_ESCAPES)}", shape=ellipse];'
        )
        lines.append(f"  n{out} -> out{position};")
    lines.append("}")
    return "\n".join(lines)


__all__ = ["TensorType", "format_dot", "format_graph", "format_node"]
