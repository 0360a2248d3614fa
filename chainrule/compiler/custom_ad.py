"""The rules of user-defined derivatives (``chainrule.ir.custom``) that need passes: reverse mode of
a ``custom_jvp`` node and the batching rules of both.

Reverse mode of ``custom_jvp``: the user's rule ``(x, t) -> (y, ty)`` is linear in the tangents
``t``, ``ty = J(x) t``, so its transpose ``g -> J(x)^T g`` is the VJP of ``ty`` with respect to
``t``, at any ``t``: reverse mode of the rule's graph, seeded with ``g`` on ``ty`` and zero on
``y``, evaluated at ``t = 0`` (JAX linearizes and transposes the rule the same way). The result is
a body of ordinary ops, derived once per rule and inlined at each node, so it can be differentiated
again: a ``custom_jvp`` under ``cr.hessian`` differentiates the rule's own ops.

Batching: the node's bodies vectorized (``compiler.batch.vectorize``) over the batched operands,
and the residuals and cotangents, which carry the batch axis too; a cotangent of an operand that
is not batched is summed over it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from chainrule.compiler.autodiff import reverse
from chainrule.compiler.batch import vectorize
from chainrule.ir import F, Graph, TensorType, Value
from chainrule.ir.control import Body, unpack
from chainrule.ir.custom import RULES, closed_over_error, consume, inline, result_leaves


def _float_positions(types: Sequence[TensorType]) -> list[int]:
    return [i for i, t in enumerate(types) if t.is_float]


def _transposed(rule: Body, n_args: int, n_out: int) -> Body:
    """The VJP of a custom_jvp rule: inputs ``[argument leaves, cotangents of the results, closed-over
    values]``, outputs the cotangents of the float argument leaves (see the module doc)."""
    types = rule.input_types
    floats = _float_positions(types[:n_args])
    joint = reverse(rule.graph, [n_args + i for i in floats], cotangent_inputs=True)
    graph = Graph(f"{rule.graph.name}_transposed")
    inputs = joint.inputs
    n_in = len(types)
    mapping = {inputs[i]: graph.add_input(types[i], joint[inputs[i]].name) for i in range(n_args)}
    for i in range(n_out):
        seed = inputs[n_in + n_out + i]
        mapping[seed] = graph.add_input(joint.type(seed), f"g{i}")
    for i in range(2 * n_args, n_in):
        mapping[inputs[i]] = graph.add_input(types[i], joint[inputs[i]].name)
    for i in range(n_args, 2 * n_args):  # the tangents: the transpose of a linear map reads none
        mapping[inputs[i]] = graph.zeros(types[i])
    for i in range(n_out):  # the primal results' cotangents: the rule's tangents carry the seed
        mapping[inputs[n_in + i]] = graph.zeros(joint.type(inputs[n_in + i]))
    gradients = joint.outputs[2 * n_out :]
    kept = Graph.continuing(joint)
    kept.set_outputs(gradients)
    graph.transplant(joint, [i for i in kept.live_nodes() if joint[i].op != "input"], mapping)
    graph.set_outputs([mapping[g] for g in gradients])
    return Body(graph)


def custom_jvp_vjp(
    position: int, g: Value, y: Value, *operands: Value, primal: Body, rule: Body, n_args: int
) -> Value | None:
    """The cotangent of operand ``position`` of a custom_jvp node: its rule transposed, inlined."""
    types = [o.type for o in operands]
    if not types[position].is_float:
        return None
    if position >= n_args:
        raise closed_over_error(primal.graph.name, position, operands, n_args)
    n_out = len(primal.output_types)
    transposed = rule.derived("transposed", lambda: _transposed(rule, n_args, n_out))
    graph = g.graph
    consume(graph, y.id)
    ids = [o.id for o in operands]
    cotangents = [v.id for v in result_leaves(g, primal.output_types)]
    outputs = inline(graph, transposed, ids[:n_args] + cotangents + ids[n_args:])
    return Value(graph, outputs[_float_positions(types[:n_args]).index(position)])


# ---- batching -------------------------------------------------------------------------------------


def _batched_body(body: Body, batched: Sequence[int], size: int) -> Body:
    return Body(vectorize(body.graph, batched, size, name=body.graph.name))


def _summed_where_unbatched(body: Graph, unbatched: Sequence[int]) -> Graph:
    """``body`` with its outputs at ``unbatched`` summed over the leading (batch) axis."""
    if not unbatched:
        return body
    result = Graph.continuing(body)
    outputs = list(body.outputs)
    for k in unbatched:
        outputs[k] = F.sum(Value(result, outputs[k]), axis=(0,), keepdims=False).id
    result.set_outputs(outputs)
    return result


def _batched_result(node: Value, leaves: Sequence[TensorType], size: int) -> Value:
    """A batched node's result as vectorize expects it: one batch element's result per row."""
    if len(leaves) == 1:
        return node
    batched = [TensorType((size,) + t.shape, t.dtype) for t in leaves]
    rows = [F.reshape(v, shape=(size, leaf.size)) for v, leaf in zip(unpack(node, batched), leaves)]
    return F.concatenate(*rows, axis=1) if len(rows) > 1 else rows[0]


def custom_vjp_batch(
    operands: list[Value],
    batched: list[bool],
    logical: list[TensorType],
    out: TensorType,
    attrs: dict[str, Any],
    size: int,
) -> Value:
    """A custom_vjp node over a batch: primal, fwd and bwd vectorized (the rule still the user's)."""
    primal, fwd, bwd, n_args = attrs["primal"], attrs["fwd"], attrs["bwd"], attrs["n_args"]
    positions = [i for i, b in enumerate(batched) if b]
    n_fwd = len(fwd.output_types)  # bwd's residuals and cotangents: all batched, as fwd's outputs are
    bwd_batched = list(range(n_fwd)) + [n_fwd + i - n_args for i in positions if i >= n_args]
    vectorized_bwd = vectorize(bwd.graph, bwd_batched, size, name=bwd.graph.name)
    unbatched = [i for i in range(n_args) if not batched[i]]
    new_attrs = {
        "primal": _batched_body(primal, positions, size),
        "fwd": _batched_body(fwd, positions, size),
        "bwd": Body(_summed_where_unbatched(vectorized_bwd, unbatched)),
        "n_args": n_args,
    }
    graph = operands[0].graph
    node = Value(graph, graph.add("custom_vjp", [o.id for o in operands], new_attrs))
    return _batched_result(node, primal.output_types, size)


def custom_jvp_batch(
    operands: list[Value],
    batched: list[bool],
    logical: list[TensorType],
    out: TensorType,
    attrs: dict[str, Any],
    size: int,
) -> Value:
    """A custom_jvp node over a batch: primal and rule vectorized; a tangent is batched where its
    operand is."""
    primal, rule, n_args = attrs["primal"], attrs["rule"], attrs["n_args"]
    positions = [i for i, b in enumerate(batched) if b]
    rule_batched = [i for i in positions if i < n_args]
    rule_batched += [n_args + i for i in positions if i < n_args]
    rule_batched += [n_args + i for i in positions if i >= n_args]
    new_attrs = {
        "primal": _batched_body(primal, positions, size),
        "rule": _batched_body(rule, sorted(rule_batched), size),
        "n_args": n_args,
    }
    graph = operands[0].graph
    node = Value(graph, graph.add("custom_jvp", [o.id for o in operands], new_attrs))
    return _batched_result(node, primal.output_types, size)


RULES.update(custom_jvp_vjp=custom_jvp_vjp, custom_vjp_batch=custom_vjp_batch, custom_jvp_batch=custom_jvp_batch)

__all__ = ["custom_jvp_batch", "custom_jvp_vjp", "custom_vjp_batch"]
