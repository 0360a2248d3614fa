"""Batching rules of the control-flow ops (``chainrule.ir.control``): loops and branches of a batch.

They vectorize the bodies (``compiler.batch``, which ``ir`` may not import), so they are registered
in ``ir.control.RULES`` when this module is imported, as ``control_ad`` registers the derivative
rules. Each returns what every batching rule returns: per example, the packed result the op gives
on that example, as the rows of a ``(size, packed length)`` value.

- ``loop``: a loop over the vectorized body. A carry is batched when its operand is, or when the
  body makes it depend on a batched value (found by vectorizing until nothing changes); per-step
  inputs are transposed so the steps stay on the leading axis.
- ``switch``: with one index for all examples, a switch of the vectorized branches; with an index
  per example, every branch runs on the batch and ``where`` picks each example's result (JAX does
  the same).
- ``while``: with one condition for all, a while loop of the vectorized body; with a condition
  per example, the loop runs until every example's condition fails, and an example whose
  condition failed keeps its carry (and its own trip count) from then on.
- Any other op (``while_vjp``) runs once per example, in a loop node: a loop of the IR, compiled
  like any other, never a Python loop over the examples in the caller.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from chainrule.compiler.batch import vectorize, vectorize_graph
from chainrule.ir import Graph, TensorType, Value
from chainrule.ir.builder import F
from chainrule.ir.control import RULES, STEP_INDEX, Body, loop_leaves, unpack, while_leaves
from chainrule.ir.ops import Attrs


def _with_batch(t: TensorType, size: int) -> TensorType:
    return TensorType((size,) + t.shape, t.dtype)


def _broadcast(value: Value, size: int) -> Value:
    return F.broadcast_to(value, shape=(size,) + value.shape)


def _inlined(graph: Graph, body: Graph, inputs: Sequence[int]) -> list[Value]:
    """``body``'s nodes copied into ``graph`` with its inputs bound to ``inputs``; its outputs."""
    mapping = dict(zip(body.inputs, inputs))
    graph.transplant(body, [i for i in body.live_nodes() if body[i].op != "input"], mapping)
    return [Value(graph, mapping[o]) for o in body.outputs]


def _rows(parts: Sequence[Value], size: int, dtype: str) -> Value:
    """Values with a leading batch axis packed per example: row ``i`` is example ``i``'s packed result."""
    flat = []
    for part in parts:
        part = part if part.dtype == dtype else F.cast(part, dtype=dtype)
        flat.append(F.reshape(part, shape=(size, part.type.size // size if size else 0)))
    return F.concatenate(*flat, axis=1)


def _settled(body: Body, carry_batched: list[bool], rest_batched: Sequence[bool], size: int, offset: int) -> list[bool]:
    """Which carries are batched once the body has run: a carry the body computes from a batched
    value is batched from the start. ``offset`` is the body's inputs in front of the carry (the
    step index)."""
    n_carry = len(carry_batched)
    while True:
        positions = [offset + i for i, b in enumerate(carry_batched + list(rest_batched)) if b]
        _, outputs_batched = vectorize_graph(body.graph, positions, size)
        grown = [a or b for a, b in zip(carry_batched, outputs_batched[:n_carry])]
        if grown == carry_batched:
            return carry_batched
        carry_batched = grown


def _vectorized_body(body: Body, positions: list[int], size: int, n_carry: int) -> Body:
    """The body vectorized over its inputs at ``positions``, every output past the carry batched."""

    def make() -> Body:
        graph, outputs_batched = vectorize_graph(body.graph, positions, size, name=f"{body.graph.name}_batched")
        outputs = list(graph.outputs)
        for k in range(n_carry, len(outputs)):
            if not outputs_batched[k]:
                outputs[k] = graph.add("broadcast_to", (outputs[k],), {"shape": (size,) + graph.type(outputs[k]).shape})
        graph.set_outputs(outputs, graph.output_names)
        return Body(graph)

    made: Body = body.derived(f"batched {positions} {size} {n_carry}", make)
    return made


def batch_loop(
    operands: list[Value], batched: list[bool], logical: list[TensorType], out_type: TensorType, attrs: Attrs, size: int
) -> Value:
    n_carry, n_xs = attrs["n_carry"], attrs["n_xs"]
    rest_batched = batched[n_carry:]
    carry_batched = _settled(attrs["body"], list(batched[:n_carry]), rest_batched, size, offset=1)
    positions = [1 + i for i, b in enumerate(carry_batched + list(rest_batched)) if b]
    body = _vectorized_body(attrs["body"], positions, size, n_carry)
    new_operands = []
    for k, (value, is_batched) in enumerate(zip(operands, batched)):
        if k < n_carry and carry_batched[k] and not is_batched:
            value = _broadcast(value, size)
        elif n_carry <= k < n_carry + n_xs and is_batched:  # the steps lead, then the batch
            value = F.transpose(value, axes=(1, 0) + tuple(range(2, value.ndim)))
        new_operands.append(value)
    graph = operands[0].graph
    new_attrs = {**attrs, "body": body}
    node = Value(graph, graph.add("loop", [v.id for v in new_operands], new_attrs))
    parts = unpack(node, loop_leaves([v.type for v in new_operands], new_attrs))
    n_tape = n_carry if attrs["tape"] else 0
    carry, ys, tape = parts[:n_carry], parts[n_carry : len(parts) - n_tape], parts[len(parts) - n_tape :]
    per_example = [c if b else _broadcast(c, size) for c, b in zip(carry, carry_batched)]
    per_example += [_steps_behind(y) for y in ys]
    per_example += [_steps_behind(r) if b else _broadcast(r, size) for r, b in zip(tape, carry_batched)]
    return _rows(per_example, size, out_type.dtype)


def _steps_behind(stacked: Value) -> Value:
    """``(steps, batch, ...)`` as ``(batch, steps, ...)``."""
    return F.transpose(stacked, axes=(1, 0) + tuple(range(2, stacked.ndim)))


def batch_switch(
    operands: list[Value], batched: list[bool], logical: list[TensorType], out_type: TensorType, attrs: Attrs, size: int
) -> Value:
    index, rest = operands[0], operands[1:]
    graph = index.graph
    positions = [i for i, b in enumerate(batched[1:]) if b]
    branches = [
        branch.derived(f"batched {positions} {size}", lambda b=branch: Body(vectorize(b.graph, positions, size)))
        for branch in attrs["branches"]
    ]
    if not batched[0]:
        node = Value(graph, graph.add("switch", [index.id] + [r.id for r in rest], {"branches": tuple(branches)}))
        return _rows(unpack(node, branches[0].output_types), size, out_type.dtype)
    # an index per example: every branch runs, each example takes the one its index picks (clamped)
    results = [_inlined(graph, branch.graph, [r.id for r in rest]) for branch in branches]
    parts = []
    for k_out in range(len(results[0])):
        value = results[-1][k_out]
        for k in reversed(range(len(results) - 1)):
            picks = F.reshape(index <= k, shape=(size,) + (1,) * (value.ndim - 1))
            value = F.where(picks, results[k][k_out], value)
        parts.append(value)
    return _rows(parts, size, out_type.dtype)


def batch_while(
    operands: list[Value], batched: list[bool], logical: list[TensorType], out_type: TensorType, attrs: Attrs, size: int
) -> Value:
    n_carry, cond, body = attrs["n_carry"], attrs["cond"], attrs["body"]
    consts_batched = list(batched[n_carry:])
    carry_batched = _settled(body, list(batched[:n_carry]), consts_batched, size, offset=1)
    condition_inputs = [i for i, b in enumerate(carry_batched + consts_batched) if b]
    _, (condition_batched,) = vectorize_graph(cond.graph, condition_inputs, size)
    if condition_batched:  # every carry changes per example: each stops on its own
        carry_batched = [True] * n_carry
        condition_inputs = [i for i, b in enumerate(carry_batched + consts_batched) if b]
    graph = operands[0].graph
    carry = [_broadcast(v, size) if b and not was else v for v, b, was in zip(operands, carry_batched, batched)]
    consts = operands[n_carry:]
    new_cond = Body(vectorize_graph(cond.graph, condition_inputs, size)[0])
    new_body = Body(vectorize_graph(body.graph, [1 + i for i in condition_inputs], size)[0])
    if not condition_batched:
        new_attrs = {"cond": new_cond, "body": new_body, "n_carry": n_carry}
        node = Value(graph, graph.add("while", [v.id for v in carry + consts], new_attrs))
        parts = unpack(node, while_leaves([v.type for v in carry + consts], new_attrs))
        per_example = [p if b else _broadcast(p, size) for p, b in zip(parts[:n_carry], carry_batched)]
        return _rows(per_example + [_broadcast(parts[-1], size)], size, out_type.dtype)
    counts = Value(graph, graph.zeros(TensorType((size,), STEP_INDEX.dtype)))
    state_types = [v.type for v in carry] + [counts.type] + [v.type for v in consts]
    new_attrs = {
        "cond": Body(_any_running(new_cond.graph, state_types, n_carry)),
        "body": Body(_frozen_when_done(new_cond.graph, new_body.graph, state_types, n_carry)),
        "n_carry": n_carry + 1,
    }
    node = Value(graph, graph.add("while", [v.id for v in carry + [counts] + list(consts)], new_attrs))
    parts = unpack(node, while_leaves(state_types, new_attrs))
    return _rows(parts[: n_carry + 1], size, out_type.dtype)


def _any_running(condition: Graph, state_types: list[TensorType], n_carry: int) -> Graph:
    """The condition of a batched while loop: some example's condition holds. Inputs: the carry,
    each example's trip count, the closed-over values."""
    graph = Graph(f"{condition.name}_any")
    inputs = [graph.add_input(t, f"state{k}") for k, t in enumerate(state_types)]
    (running,) = _inlined(graph, condition, inputs[:n_carry] + inputs[n_carry + 1 :])
    graph.set_outputs([F.gt(F.sum(F.cast(running, dtype="int64"), axis=(0,), keepdims=False), 0).id])
    return graph


def _frozen_when_done(condition: Graph, body: Graph, state_types: list[TensorType], n_carry: int) -> Graph:
    """The body of a batched while loop: one step for the examples whose condition holds; the others
    keep their carry and trip count."""
    graph = Graph(f"{body.name}_masked")
    step = graph.add_input(STEP_INDEX, "t")
    inputs = [graph.add_input(t, f"state{k}") for k, t in enumerate(state_types)]
    carry, counts, consts = inputs[:n_carry], Value(graph, inputs[n_carry]), inputs[n_carry + 1 :]
    (running,) = _inlined(graph, condition, carry + consts)
    stepped = _inlined(graph, body, [step] + carry + consts)
    outputs = []
    for old, new in zip(carry, stepped):
        picks = F.reshape(running, shape=running.shape + (1,) * (new.ndim - 1))
        outputs.append(F.where(picks, new, Value(graph, old)).id)
    outputs.append((counts + F.cast(running, dtype=counts.dtype)).id)
    graph.set_outputs(outputs)
    return graph


def batch_sequentially(
    op_name: str,
    operands: list[Value],
    batched: list[bool],
    logical: list[TensorType],
    out_type: TensorType,
    attrs: Attrs,
    size: int,
) -> Value:
    """The op once per example, as a loop node over the batch (its per-step inputs the batched
    operands, its closed-over values the others): for ops whose batch cannot be one op."""
    step = Graph(f"{op_name}_per_example")
    step.add_input(STEP_INDEX, "t")
    argument_ids: dict[int, int] = {}
    order = [k for k, b in enumerate(batched) if b] + [k for k, b in enumerate(batched) if not b]
    for k in order:
        argument_ids[k] = step.add_input(logical[k], f"operand{k}")
    step.set_outputs([step.add(op_name, [argument_ids[k] for k in range(len(operands))], attrs)])
    graph = operands[0].graph
    loop_attrs: dict[str, Any] = {
        "body": Body(step),
        "length": size,
        "reverse": False,
        "tape": False,
        "n_carry": 0,
        "n_xs": sum(batched),
    }
    node = Value(graph, graph.add("loop", [operands[k].id for k in order], loop_attrs))
    return F.reshape(node, shape=(size,) + out_type.shape)


RULES["loop_batch"] = batch_loop
RULES["switch_batch"] = batch_switch
RULES["while_batch"] = batch_while
RULES["sequential_batch"] = batch_sequentially
