"""The one mechanism the optimizing passes share: rebuild a graph, offering each node to a rule.

A rule sees a node of the old graph together with its operands' ids in the new
graph (already rewritten, since ids are a topological order) and returns the
id of an equal value in the new graph, or None to copy the node as it is.
Copies go through ``Graph.add``, so they are hash-consed (that is CSE) and
only live nodes are copied (that is DCE). Passes that rewrite until nothing
changes call ``rebuild`` in a loop: each round is one linear walk.
"""

from __future__ import annotations

from typing import Callable, Optional

from chainrule.ir import Graph
from chainrule.ir.graph import Node

# (new graph, old node, operand ids in the new graph) -> an id in the new graph, or None
Rule = Callable[[Graph, Node, tuple], Optional[int]]


def rebuild(graph: Graph, rule: Optional[Rule] = None) -> tuple[Graph, int]:
    """A copy of ``graph``'s live part with ``rule`` applied to every node, and how often it fired."""
    result = Graph(graph.name)
    mapping = {i: result.add_input(graph.type(i), graph[i].name, graph[i].loc) for i in graph.inputs}
    fired = 0
    for node_id in graph.live_nodes():
        node = graph[node_id]
        if node.op == "input":
            continue
        args = tuple(mapping[a] for a in node.args)
        origin = mapping.get(node.origin) if node.origin is not None else None
        if node.recomputed:  # a checkpoint's copy: no rule or CSE may merge it back into its original
            mapping[node_id] = result.add_recomputed(node.op, args, node.params, loc=node.loc, name=node.name,
                                                     origin=origin)
            continue
        replacement = None
        if rule is not None:
            # nodes a rule builds carry the rewritten node's source line and origin
            with result.attribution(node.loc, origin):
                replacement = rule(result, node, args)
        if replacement is None:
            mapping[node_id] = result.add(node.op, args, node.params, loc=node.loc, name=node.name, origin=origin)
            continue
        fired += 1
        assert result.type(replacement) == node.type, \
            f"rewrite of %{node_id} {node.op} changed its type {node.type} to {result.type(replacement)}"
        kept = result[replacement]
        if kept.name is None and node.name and kept.op not in ("input", "const"):
            kept.name = node.name
        mapping[node_id] = replacement
    result.set_outputs([mapping[o] for o in graph.outputs], graph.output_names)
    result.carry_name_hints(graph, mapping)
    return result, fired


def rewrite_to_fixed_point(graph: Graph, rule: Rule, max_rounds: int = 20) -> Graph:
    """Rebuild with ``rule`` until a round changes nothing (or ``max_rounds``, a guard against a
    pair of rules that undo each other, which would be a bug)."""
    for _ in range(max_rounds):
        graph, fired = rebuild(graph, rule)
        if not fired:
            return graph
    return graph


def dispatch(rules_by_op: dict[str, list[Rule]]) -> Rule:
    """One rule that tries the rules registered for the node's op, in order, until one fires."""
    def rule(graph: Graph, node: Node, args: tuple) -> Optional[int]:
        for candidate in rules_by_op.get(node.op, ()):
            replacement = candidate(graph, node, args)
            if replacement is not None:
                return replacement
        return None
    return rule
