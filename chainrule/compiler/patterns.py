"""What the simplify rules match on: constants, their values, finiteness; and ``fit``, which
broadcasts a replacement to the type of the node it replaces."""

from __future__ import annotations

import numpy as np

from chainrule.ir import Graph, Value
from chainrule.ir.types import TensorType

CONSTANTS = frozenset({"const", "zeros"})


def scalar_value(graph: Graph, node_id: int) -> float | None:
    """The value of a one-element float constant (of any shape), else None."""
    node = graph.nodes[node_id]
    if node.op not in CONSTANTS:
        return None  # the usual answer, without a look at values (rules ask for every operand)
    if node.op == "zeros":  # not built: a zeros node may stand for a large array
        return 0.0 if node.type.size == 1 and np.dtype(node.type.dtype).kind == "f" else None
    value = graph.const_value(node_id)
    if value is None or value.size != 1 or value.dtype.kind != "f":
        return None
    return float(value.reshape(()))


def is_constant(graph: Graph, node_id: int, number: float) -> bool:
    node = graph.nodes[node_id]
    if node.op == "zeros":
        return number == 0 and node.type.size > 0
    if node.op != "const":
        return False
    value = graph.constant(node_id)
    if value.size == 1:  # the usual constant, compared without a ufunc
        return bool(value.reshape(()) == number)
    return value.size > 0 and bool(np.all(value == number))


def never_inf_or_nan(graph: Graph, node_id: int) -> bool:
    """True when the value is finite whatever the inputs: booleans, integers, masks cast to float,
    finite constants, and where() between such values."""
    node = graph[node_id]
    if node.type.dtype == "bool" or np.dtype(node.type.dtype).kind in "iu":
        return True
    if node.op == "zeros":
        return True
    if node.op == "const":
        return bool(np.all(np.isfinite(graph.constant(node_id))))
    if node.op == "cast":
        return np.dtype(graph.type(node.args[0]).dtype).kind in "biu"
    if node.op == "where":
        return never_inf_or_nan(graph, node.args[1]) and never_inf_or_nan(graph, node.args[2])
    if node.op == "mul":  # a mask times a finite value: 0 or that value
        a, b = node.args
        return any(graph.type(m).dtype == "bool" and never_inf_or_nan(graph, other) for m, other in ((a, b), (b, a)))
    return False


def fit(graph: Graph, node_id: int, type: TensorType) -> int | None:
    """``node_id`` broadcast to ``type``'s shape, or None when that cannot give ``type``."""
    have = graph.type(node_id)
    if have.dtype != type.dtype:
        return None
    if have.shape == type.shape:
        return node_id
    try:
        if np.broadcast_shapes(have.shape, type.shape) != type.shape:
            return None
    except ValueError:
        return None
    return graph.add("broadcast_to", (node_id,), {"shape": type.shape})


def strip(graph: Graph, node_id: int, ops=("broadcast_to", "reshape", "stop_gradient")) -> int:
    while graph[node_id].op in ops:
        node_id = graph[node_id].args[0]
    return node_id


def op_of(graph: Graph, node_id: int) -> str:
    return graph[node_id].op


def value_of(graph: Graph, node_id: int) -> Value:
    return Value(graph, node_id)
