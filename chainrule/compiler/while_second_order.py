"""Second order through ``cr.while_loop``: the derivative rules of ``while_vjp``, the backward pass
b = Jᵀs of a while loop (``control_ad.while_vjp``), where J is the derivative of the final carry.

Both rest on <ō, Jᵀs> = <Jō, s>: the seeds' cotangent Jō is the tangent while loop's final tangent,
and the derivative of Jᵀs with respect to the loop's inputs is the gradient of <s, tangent of the
final carry>: reverse mode through the tangent while loop, which runs for the same count (its
condition reads the primal carry only). So hessian, hvp and grad of grad need no new op: a while
loop and ``while_vjp`` nodes.
"""

from __future__ import annotations

from collections.abc import Sequence

from chainrule.compiler.control_ad import Split, constant_operands, tangent_while_node, while_vjp
from chainrule.ir import Value
from chainrule.ir.control import RULES, Body, pack, unpack, while_leaves


def _reversed_parts(operands: Sequence[Value], body: Body, backward: Body) -> tuple[list[Value], list[Value], Split]:
    """A ``while_vjp`` node's operands as the seeds and the while loop's operands, and its split."""
    n_seeds = len(backward.output_types)
    loop_operands = list(operands[n_seeds + 1 :])
    attrs = {"n_carry": len(body.output_types), "n_xs": 0, "body": body}
    split = Split([o.type for o in loop_operands], attrs, constant_operands(loop_operands))
    return list(operands[:n_seeds]), loop_operands, split


def _second_order_term(
    directions: Sequence[Value | None],
    seeds: Sequence[Value],
    loop_operands: list[Value],
    split: Split,
    cond: Body,
    body: Body,
) -> list[Value | None]:
    """d(Jᵀs)/d(loop operands) applied to ``directions`` (a tangent per loop operand, or None): the
    gradient of <s, tangent of the final carry> through the tangent while loop, per loop operand."""
    n_carry = len(split.carry)
    packed, new_operands, attrs = tangent_while_node(directions, loop_operands, cond, body, n_carry)
    graph = packed.graph
    leaves = while_leaves([v.type for v in new_operands], attrs)
    seed_of_tangent = dict(zip(range(n_carry, n_carry + len(split.float_carry)), seeds))
    parts = [seed_of_tangent.get(i) or Value(graph, graph.zeros(t)) for i, t in enumerate(leaves)]
    g = pack(parts, packed.dtype)
    n_tangents = len(split.float_carry)
    positions = [*range(n_carry), *[n_carry + n_tangents + k for k in range(len(split.consts))]]
    return [while_vjp(p, g, packed, *new_operands, **attrs) for p in positions]


def while_vjp_vjp(
    position: int, g: Value, y: Value, *operands: Value, cond: Body, body: Body, backward: Body
) -> Value | None:
    """The cotangent of a ``while_vjp`` operand (reverse over reverse through a while loop)."""
    seeds, loop_operands, split = _reversed_parts(operands, body, backward)
    n_fc, n_carry = len(split.float_carry), len(split.carry)
    cotangent = unpack(g, backward.output_types)  # ō: of the float carry, then of the float consts
    directions: list[Value | None] = [None] * len(loop_operands)  # ō as a tangent of the loop's inputs
    for i, part in zip(split.float_carry, cotangent[:n_fc]):
        directions[i] = part
    for k, part in zip(split.float_consts, cotangent[n_fc:]):
        directions[n_carry + k] = part
    if position < n_fc:  # a seed of the carry: (Jō)_i, the tangent while loop's final tangent
        packed, new_operands, attrs = tangent_while_node(directions, loop_operands, cond, body, n_carry)
        return unpack(packed, while_leaves([v.type for v in new_operands], attrs))[n_carry + position]
    if position < len(seeds):  # a seed of a const's sum joins the result as it is
        return cotangent[position]
    if position == len(seeds) or not loop_operands[position - len(seeds) - 1].type.is_float:
        return None  # the trip count, an integer carry
    return _second_order_term(directions, seeds[:n_fc], loop_operands, split, cond, body)[position - len(seeds) - 1]


def while_vjp_jvp(
    tangents: list[Value | None], y: Value, *operands: Value, cond: Body, body: Body, backward: Body
) -> Value:
    """The tangent of a ``while_vjp`` result (forward over reverse through a while loop): Jᵀṡ, the
    same backward pass seeded with the seeds' tangents, plus the second-order term."""
    seeds, loop_operands, split = _reversed_parts(operands, body, backward)
    graph = y.graph
    seed_tangents = [t if t is not None else Value(graph, graph.zeros(s.type)) for s, t in zip(seeds, tangents)]
    attrs = {"cond": cond, "body": body, "backward": backward}
    first = [*seed_tangents, *operands[len(seeds) :]]
    total = Value(graph, graph.add("while_vjp", [v.id for v in first], attrs))
    directions = list(tangents[len(seeds) + 1 :])
    if any(t is not None for t in directions):
        n_carry = len(split.carry)
        terms = _second_order_term(directions, seeds[: len(split.float_carry)], loop_operands, split, cond, body)
        wanted = [*split.float_carry, *[n_carry + k for k in split.float_consts]]
        parts = [terms[p] or Value(graph, graph.zeros(loop_operands[p].type)) for p in wanted]
        total = total + pack(parts, y.dtype)
    return total


RULES.update(while_vjp_vjp=while_vjp_vjp, while_vjp_jvp=while_vjp_jvp)
