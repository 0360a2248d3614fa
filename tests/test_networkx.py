"""The networkx view of the IR: every node's facts on a DiGraph, and back to the identical Graph,
in memory and through a GraphML file, for every golden function at every stage."""

import base64
import functools
import json
import pickle
import struct

import networkx as nx
import numpy as np
import pytest
from golden_functions import CASES

import chainrule as cr
from chainrule.compiler.checkpoint import SegmentLoc
from chainrule.compiler.pipeline import STAGES
from chainrule.errors import ChainruleError, GraphFormatError, Loc
from chainrule.ir import ConstArray, Graph, TensorType, networkx_view
from chainrule.ir.fused import FusedBody
from chainrule.ir.networkx_view import decode_json, encode_json


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


# ---- a DiGraph that is no chainrule graph: a GraphFormatError naming the node -------------------


def small_digraph() -> nx.DiGraph:
    """x -> exp -> mul(exp, x), as to_networkx gives it."""
    graph = Graph("f")
    x = graph.add_input(TensorType((3,), "float64"), "x")
    e = graph.add("exp", (x,))
    graph.set_outputs([graph.add("mul", (e, x))], ["y"])
    return graph.to_networkx()


def refused(g: nx.DiGraph, message: str) -> None:
    with pytest.raises(GraphFormatError, match=message):
        Graph.from_networkx(g)


def test_ids_that_are_not_a_topological_numbering_are_refused():
    graph = Graph("f")
    x = graph.add_input(TensorType((), "float64"), "x")
    graph.set_outputs([graph.add("sin", (x,))])
    refused(nx.relabel_nodes(graph.to_networkx(), {0: 5}), "node 5: .* ids are the ints 0..1, a topological order")
    swapped = nx.relabel_nodes(graph.to_networkx(), {0: 1, 1: 0})
    swapped.graph.update(inputs=[1], outputs=[0])
    refused(swapped, r"node 0 \(sin\): the edge from node 1 comes from a later node: .* topological order")
    refused(nx.relabel_nodes(graph.to_networkx(), str), r"node '0'.*read GraphML with Graph.read_graphml")


def test_a_node_without_an_op_or_with_an_unknown_one_is_named():
    g = small_digraph()
    del g.nodes[1]["op"]
    refused(g, "node 1 has no 'op'")
    g = small_digraph()
    g.nodes[2]["op"] = "frobnicate"
    refused(g, "node 2: unknown op 'frobnicate'")


def test_operand_positions_must_be_0_to_k_minus_1_each_filled_once():
    g = small_digraph()
    g.edges[0, 2]["positions"] = (2,)
    refused(g, r"node 2 \(mul\): its edges fill operand positions \[0, 2\], not 0..k-1")
    g = small_digraph()
    g.edges[0, 2]["positions"] = (0,)
    refused(g, r"node 2 \(mul\): the edge from node [01] fills operand position 0, which node [01] fills")
    g = small_digraph()
    del g.edges[0, 1]["positions"]
    refused(g, r"node 1 \(exp\): the edge from node 0 must carry 'positions'")
    g = small_digraph()
    g.remove_edge(0, 2)
    refused(g, r"node 2 \(mul\): mul takes 2 operands, its edges give 1")


def test_a_cycle_is_named_by_its_nodes():
    g = small_digraph()
    g.add_edge(2, 1, positions=(1,))
    refused(g, r"node 1 \(exp\): the edge from node 2 closes a cycle: 2 -> 1 -> 2")
    g = small_digraph()
    g.add_edge(1, 1, positions=(1,))
    refused(g, r"node 1 \(exp\): the edge from node 1 closes a cycle: 1 -> 1")


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("shape", (4,), r"node 1 \(exp\): stored type f64\[4\], but its operands and attrs give f64\[3\]"),
        ("shape", "3", r"node 1 \(exp\): 'shape' must be a tuple of dimensions"),
        ("shape", (-3,), r"node 1 \(exp\): 'shape' must be a tuple of dimensions"),
        ("dtype", None, r"node 1 \(exp\): 'dtype' must be a NumPy dtype name"),
        ("dtype", "frob", r"node 1 \(exp\): 'dtype' must be a NumPy dtype name"),
        ("dtype", "float32", r"node 1 \(exp\): stored type f32\[3\], but its operands and attrs give f64\[3\]"),
        ("attrs", [("axis", 0)], r"node 1 \(exp\): 'attrs' must be a dict"),
        ("loc", "model.py:3", r"node 1 \(exp\): 'loc' must be a chainrule.errors.Loc or None"),
        ("name", 7, r"node 1 \(exp\): 'name' must be a string or None"),
        ("origin", 9, r"node 1 \(exp\): 'origin' must be a node id or None"),
        ("recomputed", "yes", r"node 1 \(exp\): 'recomputed' must be a bool"),
    ],
)
def test_a_malformed_node_field_is_named_with_its_node(key, value, message):
    g = small_digraph()
    g.nodes[1][key] = value
    refused(g, message)


def test_attributes_an_ops_rule_cannot_read_are_named():
    graph = Graph("f")
    x = graph.add_input(TensorType((3, 2), "float64"), "x")
    graph.set_outputs([graph.add("sum", (x,), {"axis": (0,), "keepdims": False})])
    g = graph.to_networkx()
    del g.nodes[1]["attrs"]["axis"]
    refused(g, r"node 1 \(sum\): its attrs do not fit the op \(KeyError: 'axis'\)")
    g.nodes[1]["attrs"]["axis"] = (5,)
    refused(g, r"node 1 \(sum\): .*axis")


def test_the_graphs_inputs_and_outputs_must_name_its_nodes():
    g = small_digraph()
    g.graph["inputs"] = [1]
    refused(g, "the graph's inputs name 1, which is not an input node")
    g = small_digraph()
    g.graph["outputs"] = [7]
    refused(g, "the graph's outputs name 7, which is not a node")
    g = small_digraph()
    g.graph["output_names"] = []
    refused(g, "output_names must be one string per output")
    g = small_digraph()
    del g.graph["inputs"]
    refused(g, "the graph's 'inputs' .* must be a list, got None")


def test_numpy_integer_ids_are_read_as_ints():
    g = nx.relabel_nodes(small_digraph(), {i: np.int64(i) for i in range(3)})
    g.graph.update(inputs=[np.int64(0)], outputs=[np.int64(2)])
    assert {type(n) for n in g.nodes} == {np.int64}
    rebuilt = Graph.from_networkx(g)
    assert records(rebuilt) == records(Graph.from_networkx(small_digraph()))
    assert {type(i) for node in rebuilt.nodes for i in node.args} | {type(i) for i in rebuilt.inputs} == {int}


def test_only_a_digraph_is_read():
    refused(nx.MultiDiGraph(small_digraph()), "takes a networkx.DiGraph .*not a MultiDiGraph")
    refused(nx.Graph(small_digraph()), "takes a networkx.DiGraph .*not a Graph")
    assert issubclass(GraphFormatError, ChainruleError)


# ---- GraphML: exact, and never unpickled ---------------------------------------------------------


def nan_with_payload() -> float:
    return struct.unpack(">d", bytes.fromhex("7ff8000000000123"))[0]


def test_graphml_keeps_constants_bit_for_bit(tmp_path):
    values = [
        np.array([-0.0, np.nan, nan_with_payload(), np.inf, -np.inf, 5e-324, 1e-300, 1 / 3, 2.0**53 + 2]),
        np.arange(6, dtype=np.int32).reshape(2, 3),
        np.array([2**63 - 1, -(2**63)], dtype=np.int64),
        np.array([True, False]),
        np.float32(2.5),
        np.array(7, dtype=np.uint8),
        np.array([1 + 2j, complex(np.nan, -np.inf)]),
        np.zeros((0, 3)),
        np.arange(12.0).reshape(3, 4).T,  # not contiguous
    ]
    graph = Graph("constants")
    ids = [graph.const(value) for value in values]
    graph.set_outputs(ids, [f"c{i}" for i in range(len(ids))])
    graph.write_graphml(tmp_path / "c.graphml")
    rebuilt = Graph.read_graphml(tmp_path / "c.graphml")
    assert records(rebuilt) == records(graph)
    for node_id, value in zip(ids, values):
        array = rebuilt[node_id].params["value"].array
        assert array.dtype == np.asarray(value).dtype and array.shape == np.shape(value)
        assert array.tobytes() == np.ascontiguousarray(value).tobytes()


ATTRIBUTE_VALUES = [
    None,
    True,
    False,
    0,
    -(2**70),
    1.5,
    -0.0,
    float("inf"),
    float("-inf"),
    1 / 3,
    5e-324,
    "dW1",
    "",
    (),
    (0, (1, None)),
    [1, [2.5, "a"]],
    {"a": 1, 2: (3,)},
    1 - 2j,
    complex(float("nan"), 0.0),
    np.float64(0.1),
    np.int32(-4),
    np.bool_(True),
    np.complex64(1j),
    np.dtype("float32"),
    slice(1, None, -2),
    TensorType((400, 16), "float32"),
    Loc("model.py", 5, "loss"),
    ConstArray(np.array([[1.0, np.nan]])),
    np.arange(3, dtype=np.int16),
    ("slice", None, 3, None),
    (("int", 2), ("none",), ("array", 0)),
]


@pytest.mark.parametrize("value", ATTRIBUTE_VALUES, ids=repr)
def test_the_json_codec_gives_back_an_equal_value_of_the_same_type(value):
    text = encode_json(value)
    json.loads(text)  # plain JSON: no NaN or Infinity literals
    assert "NaN" not in text and "Infinity" not in text
    decoded = decode_json(text)
    assert type(decoded) is type(value)
    assert repr(decoded) == repr(value)
    if isinstance(value, (float, complex, np.generic, np.ndarray)):
        assert np.asarray(decoded).tobytes() == np.asarray(value).tobytes()
    elif not isinstance(value, np.ndarray):
        assert decoded == value or value != value


def test_nan_payloads_survive_the_codec_bit_for_bit():
    value = nan_with_payload()
    assert struct.pack(">d", decode_json(encode_json(value))) == struct.pack(">d", value)


def test_a_fused_body_keeps_its_steps_names_and_locations():
    step_type = TensorType((3,), "float64")
    body = FusedBody(
        (("exp", (-1,), (), step_type), ("mul", (0, -2), (), step_type)),
        (("e", Loc("m.py", 2, "f"), None), (None, None, ("exp", "e", Loc("m.py", 2, "f")))),
    )
    decoded = decode_json(encode_json(body))
    assert decoded == body and decoded.meta == body.meta


def test_recomputed_nodes_origins_names_and_a_checkpoint_segment_survive_graphml(tmp_path):
    graph = Graph("g")
    x = graph.add_input(TensorType((4,), "float64"), "x")
    y = graph.add("exp", (x,), loc=SegmentLoc("model.py", 3, "f", 2), name="y")
    again = graph.add_recomputed("exp", (x,), loc=Loc("model.py", 3, "f"), origin=y)
    named = graph.add("sin", (again,), name="")
    graph.set_outputs([y, named], ["y", "z"])
    graph.write_graphml(tmp_path / "g.graphml")
    rebuilt = Graph.read_graphml(tmp_path / "g.graphml")
    assert records(rebuilt) == records(graph)
    assert type(rebuilt[y].loc) is SegmentLoc and rebuilt[y].loc.segment == 2
    assert rebuilt[again].recomputed and rebuilt[again].origin == y and rebuilt[named].name == ""


def test_an_attribute_graphml_cannot_hold_is_refused_with_its_node(tmp_path):
    graph = Graph("f")
    graph.set_outputs([graph.add("const", (), {"value": ConstArray(np.ones(2))})])
    graph.nodes[0].attrs = (("value", object()),)  # as a buggy pass might leave it
    with pytest.raises(GraphFormatError, match=r"node 0 \(const\): GraphML cannot encode a value of type object"):
        graph.write_graphml(tmp_path / "f.graphml")


def old_pickled_graphml(path, payload: bytes) -> None:
    """A file as the first GraphML writer wrote it: attrs and loc pickled into ``encoded``."""
    g = small_digraph()
    for _, data in g.nodes(data=True):
        data.update(shape="3", name="", origin=-1, encoded=base64.b64encode(payload).decode("ascii"))
        del data["attrs"], data["loc"]
    for _, _, data in g.edges(data=True):
        data["positions"] = ",".join(map(str, data["positions"]))
    for key in ("inputs", "outputs", "output_names"):
        g.graph[key] = json.dumps(g.graph[key])
    nx.write_graphml(g, path)


class Marker:
    """Unpickling this creates the file ``path``: the test's witness that code ran."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


def test_a_graphml_file_with_a_pickle_payload_is_refused_and_not_unpickled(tmp_path):
    witness = tmp_path / "unpickled"
    path = tmp_path / "old.graphml"
    old_pickled_graphml(path, pickle.dumps(({}, Marker(witness))))
    with pytest.raises(GraphFormatError, match="pickled, and chainrule does not unpickle"):
        Graph.read_graphml(path)
    assert not witness.exists()
    assert not hasattr(networkx_view, "pickle")


def test_a_pickle_or_an_unknown_tag_in_the_json_fields_is_refused(tmp_path):
    graph = Graph("f")
    x = graph.add_input(TensorType((3,), "float64"), "x")
    graph.set_outputs([graph.add("exp", (x,))])
    path = tmp_path / "f.graphml"
    graph.write_graphml(path)
    text = path.read_text()
    witness = tmp_path / "unpickled"
    payload = base64.b64encode(pickle.dumps(Marker(witness))).decode("ascii")
    for attrs, message in [
        (payload, "not JSON chainrule wrote"),
        (json.dumps({"tuple": [1, 2]}), r"not a list of \[name, value\] pairs"),
        (json.dumps([["value", {"pickle": payload}]]), "not a chainrule value"),
        (json.dumps([["value", {"array": ["|O", [1], payload]}]]), "only numeric arrays are read"),
        (json.dumps([["value", {"loc": ["m.py", 1, "f", "os.system", []]}]]), "kind 'os.system', which is not loaded"),
    ]:
        g = nx.read_graphml(path, node_type=int)
        g.nodes[1]["attrs"] = attrs
        nx.write_graphml(g, tmp_path / "bad.graphml")
        with pytest.raises(GraphFormatError, match=rf"node 1 \(exp\): unreadable 'attrs' or 'loc': .*{message}"):
            Graph.read_graphml(tmp_path / "bad.graphml")
    assert not witness.exists() and "exp" in text


def test_reading_a_file_that_is_not_graphml_gets_a_chainrule_error(tmp_path):
    path = tmp_path / "notes.graphml"
    path.write_text("not xml at all")
    with pytest.raises(GraphFormatError, match=r"cannot read .*notes\.graphml as GraphML"):
        Graph.read_graphml(path)
    plain = nx.DiGraph()
    plain.add_edge(0, 1)
    nx.write_graphml(plain, path)
    with pytest.raises(GraphFormatError, match="not a chainrule GraphML file"):
        Graph.read_graphml(path)
