"""Vectorization: a graph run on a batch of values for some inputs, as one graph.

``vectorize(graph, batched, size)`` gives the graph whose inputs at positions
``batched`` carry a new leading axis of length ``size``; every value that
depends on them carries it too, and every op is rewritten to act on each batch
element independently (JAX's vmap, on the IR). A Jacobian then takes one call
of one program instead of n calls: the JVP graph vectorized over its tangent
inputs, fed the identity's rows, gives all n columns at once.

Each op's batching rule is declared on its entry (``Op.batch``, in
``chainrule.ir.structural``): reductions, transposes and concatenations shift
their axes by one; reshapes and broadcasts prepend the batch length; indexing
prepends a full slice; matmul treats the batch axis as one more batch
dimension. Elementwise ops share one rule (``ir.elementwise.batch_elementwise``):
line a batched operand's axes up with the output's (NumPy broadcasts from the
right, so the batch axis must lead). Indexing with index arrays that differ per
example indexes the batch axis too (``ir.batch_index``); loops and branches
vectorize their bodies (``compiler.control_batch``). An op without a rule raises
``UnsupportedError``, and callers fall back to one call per batch element.
``cr.vmap`` (``transforms.vmap``) is this transformation made public.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

from chainrule.errors import UnsupportedError
from chainrule.ir import OPS, Graph, Op, TensorType, Value
from chainrule.ir.elementwise import batch_elementwise


def vectorize(graph: Graph, batched: Sequence[int], size: int, name: str | None = None) -> Graph:
    """``graph`` with a leading axis of length ``size`` on the inputs at positions ``batched`` and
    on every output (an output that does not depend on them is broadcast along it)."""
    result, outputs_batched = vectorize_graph(graph, batched, size, name)
    outputs = []
    for out, is_batched in zip(result.outputs, outputs_batched):
        if not is_batched:
            out = result.add("broadcast_to", (out,), {"shape": (size,) + result.type(out).shape})
        outputs.append(out)
    result.set_outputs(outputs, graph.output_names)
    return result


def vectorize_graph(
    graph: Graph,
    batched: Sequence[int],
    size: int,
    name: str | None = None,
    axes: Sequence[int] | None = None,
) -> tuple[Graph, list[bool]]:
    """``graph`` vectorized as ``vectorize`` does, but its outputs that do not depend on the batched
    inputs are left as they are; with, per output, whether it carries the batch axis (vmap's
    ``out_axes=None`` needs an output that does not).

    ``axes`` (one per position in ``batched``, non-negative) puts an input's batch axis elsewhere
    than in front: the graph takes it there and moves it to the front with one transpose.
    """
    result = Graph(name or graph.name)
    mapping: dict[int, int] = {}
    is_batched: set[int] = set()
    axis_of = dict(zip(batched, axes if axes is not None else [0] * len(batched)))
    for position, input_id in enumerate(graph.inputs):
        input_type, axis = graph.type(input_id), axis_of.get(position)
        if axis is not None:
            shape = input_type.shape[:axis] + (size,) + input_type.shape[axis:]
            input_type = TensorType(shape, input_type.dtype)
        new_input = result.add_input(input_type, graph[input_id].name, graph[input_id].loc)
        if axis:
            order = (axis,) + tuple(a for a in range(input_type.ndim) if a != axis)
            new_input = result.add("transpose", (new_input,), {"axes": order})
        mapping[input_id] = new_input
        if axis is not None:
            is_batched.add(new_input)

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
            value = batching_rule(OPS[node.op])(
                [Value(result, a) for a in args], [a in is_batched for a in args], logical, node.type, node.params, size
            )
        expected = TensorType((size,) + node.type.shape, node.type.dtype)
        if value.type != expected:
            raise UnsupportedError(f"vectorizing {node.op} gave {value.type}, not {expected}")
        if result[value.id].name is None and node.name and result[value.id].op != "input":
            result[value.id].name = node.name
        mapping[node_id] = value.id
        is_batched.add(value.id)

    outputs = [mapping[out] for out in graph.outputs]
    result.set_outputs(outputs, graph.output_names)
    return result, [out in is_batched for out in outputs]


def batching_rule(op: Op) -> Callable:
    """The op's batching rule: its ``batch``, or for an elementwise op the one they share.

    An op with neither (``fused``: vectorize runs before fusion; sources, which have no
    operand to batch, never reach a rule) raises ``UnsupportedError``, and callers fall
    back to one call per batch element.
    """
    if op.batch is not None:
        return op.batch
    if op.is_elementwise:
        return functools.partial(batch_elementwise, op.name)
    raise UnsupportedError(f"no batching rule for the op {op.name!r}")
