"""What a pass changed, shown the way a reader wants it: op counts, and a diff of the IR text.

Node ids are positions and most passes rebuild the graph, so one value has a
different ``%id`` before and after a pass: a diff of the raw text would mark
every line after the first removed node as changed. So the diffed text names
each node by *what* it is, not where it is:

- a node with a name hint the graph gives no other value (``Z1``, ``A1``,
  ``dZ2``: the user's variables and their cotangents, which passes carry
  along) is ``%Z1``;
- any other node is ``%<op>.<hash>``, where the hash covers its op,
  attributes, type and its operands' names (a Merkle hash): two nodes get the
  same name exactly when they compute the same expression of the same named
  values, whatever their ids.

Named values are anchors where the hash stops. A rewrite inside the
expression of ``dZ2`` changes the lines of ``dZ2`` and of the unnamed nodes
between the rewrite and ``dZ2``, but not ``dW2 = matmul dZ2, ...`` further
down: the diff shows what the pass did and little else. Lines keep the
graph's order, so a pass that only reorders (the scheduler) shows as moves.
"""

from __future__ import annotations

import difflib
import hashlib
import re
from collections import Counter

from chainrule.ir.fused import FusedBody
from chainrule.ir.graph import ConstArray, Graph
from chainrule.ir.printer import format_node

_HASH_BYTES = 3  # six hex digits: collisions within one graph are unlikely, names stay short
_ID = re.compile(r"%(\d+)\b")
_COMMENT_COLUMN = 52


def _attr_identity(value: object) -> str:
    """The part of an attribute that makes a node what it is (a constant's bytes, not its short repr)."""
    if isinstance(value, ConstArray):
        array = value.array
        return f"{array.dtype.str}{array.shape}{hashlib.blake2b(array.tobytes(), digest_size=8).hexdigest()}"
    if isinstance(value, FusedBody):
        return repr(value.steps)
    return repr(value)


def canonical_names(graph: Graph) -> dict[int, str]:
    """For every node, a name that depends on what it computes and not on its id (see the module doc)."""
    counts = Counter(graph[i].name for i in range(len(graph)) if graph[i].name)
    names: dict[int, str] = {}
    for node_id in range(len(graph)):  # ids are a topological order: operands are named first
        node = graph[node_id]
        if node.op == "input":
            names[node_id] = node.name or f"%{node_id}"
        elif node.name and counts[node.name] == 1:
            names[node_id] = f"%{node.name}"
        else:
            identity = repr(
                (
                    node.op,
                    [(k, _attr_identity(v)) for k, v in node.attrs],
                    str(node.type),
                    [names[a] for a in node.args],
                )
            )
            digest = hashlib.blake2b(identity.encode(), digest_size=_HASH_BYTES).hexdigest()
            names[node_id] = f"%{node.op}.{digest}"
    return names


def canonical_text(graph: Graph) -> list[str]:
    """The graph's text format with every ``%id`` (definitions, operands, origins) canonically named."""
    names = canonical_names(graph)

    def rename(text: str) -> str:
        return _ID.sub(lambda match: names[int(match.group(1))], text)

    lines = [rename(f"def {graph.name}(...)")]
    for node_id in range(len(graph)):
        if graph[node_id].op == "input":
            continue
        code, _, comment = rename(format_node(graph, node_id, names)).partition(" # ")
        lines.append(f"{code.rstrip().ljust(_COMMENT_COLUMN)} # {comment}" if comment else code.rstrip())
    lines.append("  return " + ", ".join(names[o] for o in graph.outputs))
    return lines


def op_counts(graph: Graph) -> Counter[str]:
    """How many nodes of each op the graph has, inputs not counted."""
    return Counter(graph[i].op for i in range(len(graph)) if graph[i].op != "input")


def op_count_delta(before: Graph, after: Graph) -> str:
    """``-4 mul, -2 add, +1 fused``: removals first, then additions, most first; '' when equal."""
    old, new = op_counts(before), op_counts(after)
    changes = {op: new[op] - old[op] for op in old.keys() | new.keys() if new[op] != old[op]}
    ordered = sorted(changes.items(), key=lambda item: (item[1] > 0, -abs(item[1]), item[0]))
    return ", ".join(f"{change:+d} {op}" for op, change in ordered)


def text_diff(before: Graph, after: Graph, context: int = 1) -> list[str]:
    """A unified diff of the canonical texts; empty when the pass changed nothing visible."""
    lines = difflib.unified_diff(
        canonical_text(before), canonical_text(after), "before", "after", n=context, lineterm=""
    )
    return list(lines)


__all__ = ["canonical_names", "canonical_text", "op_count_delta", "op_counts", "text_diff"]
