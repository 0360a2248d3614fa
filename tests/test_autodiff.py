"""Reverse mode's recorded rules: an elementwise rule runs once per signature (op, operand types,
attributes) on placeholders, and each node of that signature replays what it built. The replay
must build exactly the nodes the rule builds when run on the node itself."""

from __future__ import annotations

import pytest

from chainrule.compiler.autodiff import _contribution, _record
from chainrule.compiler.simplify import simplify_rule
from chainrule.ir import OPS, Graph, TensorType, Value
from chainrule.ir.diff import canonical_text

ELEMENTWISE = sorted(
    name
    for name, op in OPS.items()
    if op.is_elementwise and op.vjp is not None and any(rule is not None for rule in op.vjp)
)
F64, F32 = "float64", "float32"
# (operand shapes, dtypes): equal shapes, broadcasting both ways, a scalar, mixed precision
SIGNATURES = [
    ([(3,)] * 3, [F64] * 3),
    ([(2, 3), (3,), (1, 3)], [F64] * 3),
    ([(), (2, 1), (2, 3)], [F64] * 3),
    ([(3,)] * 3, [F32, F64, F32]),
]


def _node(op_name: str, shapes, dtypes):
    """A graph holding ``op(inputs)`` (attributes for the ops that take them), or None if ill-typed."""
    graph = Graph("f")
    arity = OPS[op_name].arity
    inputs = [graph.add_input(TensorType(s, d), f"x{i}") for i, (s, d) in enumerate(zip(shapes[:arity], dtypes))]
    if op_name == "where":
        inputs[0] = graph.add("gt", (inputs[0], inputs[1]))
    attrs = {"dtype": F32 if dtypes[0] == F64 else F64} if op_name == "cast" else None
    try:
        return graph, graph.add(op_name, inputs, attrs)
    except Exception:
        return None


@pytest.mark.parametrize("op_name", ELEMENTWISE)
@pytest.mark.parametrize("rewriting", [False, True], ids=["raw", "simplifying"])
def test_a_replayed_rule_builds_what_the_rule_builds(op_name, rewriting):
    op = OPS[op_name]
    checked = 0
    for shapes, dtypes in SIGNATURES:
        built = []
        for replayed in (False, True):
            made = _node(op_name, shapes, dtypes)
            if made is None:
                break
            graph, node_id = made
            node = graph[node_id]
            cotangent = graph.add_input(node.type, "g")
            with graph.rewriting(simplify_rule if rewriting else None):
                for position in range(len(node.args)):
                    if op.refuses_gradient(position):
                        continue  # it raises (no closed form): test_table_elementwise checks that it does
                    if replayed:
                        signature = (
                            op_name,
                            position,
                            node.attrs,
                            graph.type(cotangent),
                            node.type,
                            tuple(graph.type(a) for a in node.args),
                        )
                        replay = _record(op, signature)
                        result = None if replay is None else replay(graph.add, cotangent, node_id, *node.args)
                    else:
                        value = _contribution(
                            op,
                            position,
                            Value(graph, cotangent),
                            Value(graph, node_id),
                            [Value(graph, a) for a in node.args],
                            node.params,
                        )
                        result = None if value is None else value.id
                    if result is not None:
                        assert graph.type(result) == graph.type(node.args[position])
                        graph.outputs.append(result)
            graph.set_outputs(graph.outputs)
            built.append(canonical_text(graph))
        if len(built) == 2:
            assert built[1] == built[0]
            checked += 1
    assert checked > 0


def test_reverse_mode_shares_the_forward_nodes_but_never_renames_them():
    # d/dx (x * sin z) is sin z itself, a forward value: the joint graph names it dx, and the
    # forward graph, whose node records the joint graph shares, keeps it unnamed
    import numpy as np

    import chainrule as cr
    from chainrule.compiler.autodiff import reverse

    forward = cr.trace(lambda x, z: x * np.sin(z), np.float64(1.0), np.float64(2.0))
    sine = next(i for i in range(len(forward)) if forward[i].op == "sin")
    joint = reverse(forward, [0])
    assert joint.outputs[1] == sine and joint[sine].name == "dx"
    assert forward[sine].name is None
    assert joint[0] is forward[0]  # the other records are shared, not copied
