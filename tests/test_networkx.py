"""The networkx view of the IR: every node's facts on a DiGraph, and back to the identical Graph,
in memory and through a GraphML file, for every golden function at every stage."""

import functools

import networkx as nx
import numpy as np
import pytest
from golden_functions import CASES

import chainrule as cr
from chainrule.compiler.pipeline import STAGES
from chainrule.ir import Graph, TensorType


@functools.cache
def stage_graphs(case: str) -> dict:
    function, arguments, argnums = CASES[case]
    compiled = cr.value_and_grad(function, argnums)
    return {stage: compiled.graph(*arguments, stage=stage) for stage in STAGES}


def records(graph: Graph) -> tuple:
    """Everything a Graph is: each node's record, its inputs, outputs and their names."""
    nodes = [(n.op, n.args, repr(n.attrs), n.type, n.loc, n.name, n.origin, n.recomputed) for n in graph.nodes]
    return graph.name, nodes, graph.inputs, graph.outputs, graph.output_names


CASE_STAGES = [(case, stage) for case in sorted(CASES) for stage in STAGES]


@pytest.mark.parametrize("case, stage", CASE_STAGES)
def test_to_networkx_and_back_gives_the_identical_graph(case, stage):
    graph = stage_graphs(case)[stage]
    rebuilt = Graph.from_networkx(graph.to_networkx())
    assert records(rebuilt) == records(graph)
    assert str(rebuilt) == str(graph)
    rebuilt.verify()


@pytest.mark.parametrize("case, stage", CASE_STAGES)
def test_graphml_file_round_trip_gives_the_identical_graph(case, stage, tmp_path):
    graph = stage_graphs(case)[stage]
    path = tmp_path / "graph.graphml"
    graph.write_graphml(str(path))
    assert records(Graph.read_graphml(str(path))) == records(graph)
    plain = nx.read_graphml(str(path))  # any GraphML reader sees the readable fields
    ops = {data["op"] for _, data in plain.nodes(data=True)}
    assert ops == {node.op for node in graph.nodes}


def test_nodes_carry_op_shape_dtype_name_attrs_and_source_line():
    def loss(w, x):
        hidden = np.tanh(x @ w)
        return np.sum(hidden, axis=1, keepdims=True).mean()

    graph = cr.trace(loss, np.ones((3, 4)), np.ones((5, 3)))
    g = graph.to_networkx()
    (tanh_id,) = [n for n, data in g.nodes(data=True) if data["op"] == "tanh"]
    tanh = g.nodes[tanh_id]
    assert (tanh["shape"], tanh["dtype"], tanh["name"]) == ((5, 4), "float64", "hidden")
    assert tanh["source"].startswith("test_networkx.py:") and tanh["loc"].function == "loss"
    sums = [data["attrs"] for _, data in g.nodes(data=True) if data["op"] == "sum"]
    assert {"axis": (1,), "keepdims": True} in sums
    assert g.graph["inputs"] == graph.inputs and g.graph["outputs"] == graph.outputs


def test_an_operand_used_twice_is_one_edge_with_both_positions():
    graph = Graph("square")
    x = graph.add_input(TensorType((3,), "float64"), "x")
    y = graph.add("mul", (x, x))
    z = graph.add("sub", (y, x))
    graph.set_outputs([z])
    g = graph.to_networkx()
    assert g.edges[x, y]["positions"] == (0, 1)
    assert g.edges[x, z]["positions"] == (1,) and g.edges[y, z]["positions"] == (0,)
    assert records(Graph.from_networkx(g)) == records(graph)


def test_a_chain_of_100000_nodes_converts_without_recursion():
    graph = Graph("chain")
    value = graph.add_input(TensorType((), "float64"), "x")
    for step in range(100_000):
        value = graph.add("sin" if step % 2 else "cos", (value,))
    graph.set_outputs([value])
    g = graph.to_networkx()
    assert nx.dag_longest_path_length(g) == 100_000
    assert len(Graph.from_networkx(g)) == len(graph)


def test_ids_that_are_not_a_topological_numbering_are_refused():
    graph = Graph("f")
    x = graph.add_input(TensorType((), "float64"), "x")
    graph.set_outputs([graph.add("sin", (x,))])
    g = nx.relabel_nodes(graph.to_networkx(), {0: 5})
    with pytest.raises(ValueError, match="topological"):
        Graph.from_networkx(g)
