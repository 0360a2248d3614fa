"""Vectorization: a graph run on a batch of values for some inputs, as one graph.

``vectorize(graph, batched, size)`` gives the graph whose inputs at positions
``batched`` carry a new leading axis of length ``size``; every value that
depends on them carries it too, and every op is rewritten to act on each batch
element independently (JAX's vmap, on the IR). A Jacobian then takes one call
of one program instead of n calls: the JVP graph vectorized over its tangent
inputs, fed the identity's rows, gives all n columns at once.

Each op kind has one batching rule: elementwise ops line a batched operand's
axes up with the output's (NumPy broadcasts from the right, so the batch axis
must lead); reductions, transposes and concatenations shift their axes by one;
reshapes and broadcasts prepend the batch length; indexing prepends a full
slice; matmul treats the batch axis as one more batch dimension. An op no rule
covers raises ``UnsupportedError``, and callers fall back to one call per
batch element.
"""

from __future__ import annotations

from typing import Optional, Sequence

from chainrule.errors import UnsupportedError
from chainrule.ir import OPS, F, Graph, TensorType, Value
from chainrule.ir.builder import apply

_FULL_SLICE = ("slice", None, None, None)


def vectorize(graph: Graph, batched: Sequence[int], size: int, name: Optional[str] = None) -> Graph:
    """``graph`` with a leading axis of length ``size`` on the inputs at positions ``batched`` and
    on every output (an output that does not depend on them is broadcast along it)."""
    result = Graph(name or graph.name)
    mapping: dict[int, int] = {}
    is_batched: set[int] = set()
    batched_positions = set(batched)
    for position, input_id in enumerate(graph.inputs):
        input_type = graph.type(input_id)
        if position in batched_positions:
            input_type = TensorType((size,) + input_type.shape, input_type.dtype)
        mapping[input_id] = result.add_input(input_type, graph[input_id].name, graph[input_id].loc)
        if position in batched_positions:
            is_batched.add(mapping[input_id])

    for node_id in range(len(graph)):
        node = graph[node_id]
        if node.op == "input":
            continue
        args = [mapping[a] for a in node.args]
        origin = mapping.get(node.origin) if node.origin is not None else None
        if not any(a in is_batched for a in args):
            mapping[node_id] = result.add(node.op, args, node.params, loc=node.loc, name=node.name, origin=origin)
            continue
        logical = [graph.type(a) for a in node.args]
        with result.attribution(node.loc, origin=origin):
            value = _batched(result, node.op, [Value(result, a) for a in args], [a in is_batched for a in args],
                             logical, node.type, node.params, size)
        expected = TensorType((size,) + node.type.shape, node.type.dtype)
        if value.type != expected:
            raise UnsupportedError(f"vectorizing {node.op} gave {value.type}, not {expected}")
        if result[value.id].name is None and node.name and result[value.id].op != "input":
            result[value.id].name = node.name
        mapping[node_id] = value.id
        is_batched.add(value.id)

    outputs = []
    for out in graph.outputs:
        new = mapping[out]
        if new not in is_batched:
            new = result.add("broadcast_to", (new,), {"shape": (size,) + graph.type(out).shape})
        outputs.append(new)
    result.set_outputs(outputs, graph.output_names)
    return result


def _aligned(value: Value, is_batched: bool, logical: TensorType, rank: int) -> Value:
    """A batched value with size-1 axes after the batch axis, so its logical axes end where a
    rank-``rank`` result's do (NumPy broadcasting lines axes up from the right)."""
    if not is_batched or logical.ndim == rank:
        return value
    return F.reshape(value, shape=(value.shape[0],) + (1,) * (rank - logical.ndim) + logical.shape)


def _batched(graph: Graph, op_name: str, operands: list, batched: list, logical: list, out_type: TensorType,
             attrs: dict, size: int) -> Value:
    op = OPS[op_name]
    if op.is_elementwise:
        lined_up = [_aligned(v, b, t, out_type.ndim) for v, b, t in zip(operands, batched, logical)]
        return apply(op_name, *lined_up, **attrs)
    if op.kind == "reduction":
        return apply(op_name, operands[0], axis=tuple(a + 1 for a in attrs["axis"]), keepdims=attrs["keepdims"])
    if op_name == "transpose":
        return F.transpose(operands[0], axes=(0,) + tuple(a + 1 for a in attrs["axes"]))
    if op_name == "reshape":
        return F.reshape(operands[0], shape=(size,) + tuple(attrs["shape"]))
    if op_name == "broadcast_to":
        shape = tuple(attrs["shape"])
        return F.broadcast_to(_aligned(operands[0], True, logical[0], len(shape)), shape=(size,) + shape)
    if op_name == "concatenate":
        parts = [v if b else F.broadcast_to(v, shape=(size,) + t.shape) for v, b, t in zip(operands, batched, logical)]
        return F.concatenate(*parts, axis=attrs["axis"] + 1)
    if op_name == "matmul":
        return _batched_matmul(operands, batched, logical, out_type, size)
    if op_name in ("getitem", "scatter_add"):
        if any(batched[1:]):
            raise UnsupportedError(f"{op_name} with batched index arrays")
        index = (_FULL_SLICE,) + tuple(attrs["index"])
        if op_name == "getitem":
            return F.getitem(*operands, index=index)
        values = operands[0] if batched[0] else F.broadcast_to(operands[0], shape=(size,) + logical[0].shape)
        return F.scatter_add(values, *operands[1:], index=index, shape=(size,) + tuple(attrs["shape"]),
                             dtype=attrs["dtype"], unique=attrs["unique"])
    raise UnsupportedError(f"no batching rule for the op {op_name!r}")


def _batched_matmul(operands: list, batched: list, logical: list, out_type: TensorType, size: int) -> Value:
    # 1-D operands become matrices as NumPy makes them (a row, b a column); batched ones get their
    # batch axis in front of broadcastable batch dimensions of the other operand's rank.
    (a, b), (a_type, b_type) = operands, logical
    a_matrix = (1,) + a_type.shape if a_type.ndim == 1 else a_type.shape
    b_matrix = b_type.shape + (1,) if b_type.ndim == 1 else b_type.shape
    batch_rank = max(len(a_matrix), len(b_matrix)) - 2
    shaped = []
    for value, is_batched, matrix in [(a, batched[0], a_matrix), (b, batched[1], b_matrix)]:
        if is_batched:
            shaped.append(F.reshape(value, shape=(size,) + (1,) * (batch_rank + 2 - len(matrix)) + matrix))
        else:
            shaped.append(value if len(matrix) == value.ndim else F.reshape(value, shape=matrix))
    return F.reshape(shaped[0] @ shaped[1], shape=(size,) + out_type.shape)
