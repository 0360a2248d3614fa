"""The one mechanism the optimizing passes share: rebuild a graph, offering each node to a rule.

A rule sees a node about to be built (its operands already rewritten) and
returns the id of an equal value in the graph being built, or None to build
the node as it is. The rule is installed on the new graph with
``Graph.rewriting``, so it also sees every node the rule itself builds: a
replacement is rewritten in turn, and since operands are built before their
users, one walk reaches the rule's fixed point. Copies go through
``Graph.add``, so they are hash-consed (that is CSE), and only live nodes are
copied and kept (that is DCE). The same rule can be installed while a pass builds new
nodes (reverse mode does), which then come out already simplified.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chainrule.compiler.dce import dce
from chainrule.ir import Graph
from chainrule.ir.graph import Node

# (graph being built, node about to be built, its operand ids) -> an id in that graph, or None
Rule = Callable[[Graph, Node, tuple], int | None]


def rebuild(graph: Graph, rule: Rule | None = None) -> tuple[Graph, int]:
    """A copy of ``graph``'s live part with ``rule`` applied to every node, and how often it fired
    (``graph`` itself when the copy would be the same graph)."""
    if rule is not None and _at_fixed_point(graph, rule):
        return graph, 0
    result = Graph(graph.name)
    mapping = {i: result.add_input(graph.type(i), graph[i].name, graph[i].loc) for i in graph.inputs}
    add, nodes = result.add, graph.nodes
    with result.rewriting(rule):
        for node_id in graph.live_nodes():
            node = nodes[node_id]
            if node.op == "input":
                continue
            args = tuple([mapping[a] for a in node.args])
            origin = mapping.get(node.origin) if node.origin is not None else None
            if node.recomputed:  # a checkpoint's copy: no rule or CSE may merge it back into its original
                mapping[node_id] = result.add_recomputed(
                    node.op, args, node.params, loc=node.loc, name=node.name, origin=origin
                )
                continue
            mapping[node_id] = add(
                node.op, args, dict(node.attrs) if node.attrs else None, loc=node.loc, name=node.name, origin=origin
            )
    result.set_outputs([mapping[o] for o in graph.outputs], graph.output_names)
    result.carry_name_hints(graph, mapping)
    # nodes a rule built and then rewrote further, or replaced, are left dead
    return (dce(result) if result.rewrites else result), result.rewrites


def copy_replacing(graph: Graph, replacement: Callable[[int], tuple[str, dict[str, Any]] | None]) -> Graph:
    """A copy of ``graph``'s live part in which each node ``replacement`` answers for (by its id in
    ``graph``) is added as that ``(op, attrs)`` on its copied operands; the rest are copied as they are.
    For passes that change chosen nodes by what the whole graph says of them (their readers, their
    bodies), which a rule, seeing one node at a time, cannot know."""
    result = Graph(graph.name)
    mapping = {i: result.add_input(graph.type(i), graph[i].name, graph[i].loc) for i in graph.inputs}
    for node_id in graph.live_nodes():
        node = graph[node_id]
        if node.op == "input":
            continue
        args = tuple([mapping[a] for a in node.args])
        origin = mapping.get(node.origin) if node.origin is not None else None
        replaced = replacement(node_id)
        if replaced is None:
            mapping[node_id] = result.append_copy(node, args, origin)
            continue
        add = result.add_recomputed if node.recomputed else result.add
        op, attrs = replaced
        mapping[node_id] = add(op, args, attrs, loc=node.loc, name=node.name, origin=origin)
    result.set_outputs([mapping[o] for o in graph.outputs], graph.output_names)
    result.carry_name_hints(graph, mapping)
    return result


def _at_fixed_point(graph: Graph, rule: Rule) -> bool:
    """Would a rebuild with ``rule`` give ``graph`` back? Yes when every node is live and the rule
    rewrites none of them: the graph was built by ``Graph.add``, so it is already hash-consed and
    canonical. Asking the rule is cheaper than building the copy (a traced forward graph is often
    at the fixed point already). The rule is asked on a scratch copy, which takes whatever it builds
    on the way; a replacement it would build is only ever rewritten to one of the same type, so
    not installing the rule on the copy does not change whether it fires."""
    if len(graph.live_nodes()) != len(graph):
        return False
    scratch = graph.scratch_copy()
    for node in graph.nodes:
        if node.op != "input" and not node.recomputed and rule(scratch, node, node.args) is not None:
            return False
    return True
