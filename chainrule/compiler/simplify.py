"""Algebraic identities and numerical-stability rewrites, applied until nothing changes.

Which identities, and why these:

- **Exact ones** give the same result for every input, inf and NaN included
  (up to the sign of a zero result, as ``x + 0 -> x`` already does at
  construction): double negation, ``x + -y -> x - y``, ``-x * -y -> x * y``,
  ``x * -1 -> -x``, ``0 - x -> -x``, ``x + x -> 2 * x``, division by a power
  of two as a multiplication, ``c1 * (c2 * x) -> (c1 c2) * x`` when either
  constant is a power of two, ``x**2 -> x*x`` (NumPy computes ``x**2`` as ``x*x`` too),
  ``x**0.5 -> sqrt(x)``, ``x**-1 -> 1/x``, transpose of transpose, reshape of
  reshape, broadcast of broadcast, shape ops of a symbolic zero,
  ``where(c, x, x) -> x``, a lossless round-trip cast, multiplication by a
  (broadcast) constant one.
- **``x * 0 -> 0`` and ``x - x -> 0`` only when x is never inf or NaN** (a
  mask, an integer, a finite constant): for a float that may be inf or NaN
  they are wrong (``inf * 0`` is NaN), which is why compilers only do them
  under fast-math. NaN checking must see what the program computes.
- **Rounding-level ones**: the sum of a broadcast becomes a multiplication by
  the count (n copies summed differ from n*x by rounding only), and
  ``1 / (1 + exp(-z))`` is recognized as ``sigmoid(z)``.
- **Stability rewrites** change results only where the original overflows or
  underflows to a wrong inf/NaN: ``log(exp(x)) -> x``, ``log(sigmoid(z)) ->
  -softplus(-z)``, ``log(1 - sigmoid(z)) -> -softplus(z)``, ``log(exp(u) / t)
  -> u - log(t)`` (so ``log(softmax(z))`` becomes ``log_softmax``), ``log(sum(exp(u)))
  -> m + log(sum(exp(u - m)))`` with ``m = max(u)`` (unless u is already
  shifted), and ``log(maximum(x, c)) -> maximum(log(x), log(c))`` for a
  positive constant c (a clamped log, such as a BCE guarding against log 0,
  then reaches the sigmoid rewrites).

The pipeline runs simplify on the forward graph before differentiating it, so
the gradient is derived from the stable forms; reverse mode applies the same
rule (``simplify_rule``) to each backward node as it builds it.
"""

from __future__ import annotations

import numpy as np

from chainrule.compiler.cse import COMMUTATIVE
from chainrule.compiler.fold import FOLDABLE_OPERANDS, fold_rule
from chainrule.compiler.rewrite import rebuild
from chainrule.ir import F, Graph, Value
from chainrule.ir.graph import Node
from chainrule.ir.types import TensorType

# ---- matching helpers --------------------------------------------------------------------


_CONSTANTS = frozenset({"const", "zeros"})


def _scalar(graph: Graph, node_id: int) -> float | None:
    """The value of a one-element float constant (of any shape), else None."""
    if graph.nodes[node_id].op not in _CONSTANTS:
        return None  # the usual answer, without a look at values (rules ask for every operand)
    value = graph.const_value(node_id)
    if value is None or value.size != 1 or value.dtype.kind != "f":
        return None
    return float(value.reshape(()))


def _is_constant(graph: Graph, node_id: int, number: float) -> bool:
    if graph.nodes[node_id].op not in _CONSTANTS:
        return False
    value = graph.const_value(node_id)
    return value is not None and value.size > 0 and bool(np.all(value == number))


def _never_inf_or_nan(graph: Graph, node_id: int) -> bool:
    """True when the value is finite whatever the inputs: booleans, integers, masks cast to float,
    finite constants, and where() between such values."""
    node = graph[node_id]
    if node.type.dtype == "bool" or np.dtype(node.type.dtype).kind in "iu":
        return True
    if node.op in ("const", "zeros"):
        return bool(np.all(np.isfinite(graph.const_value(node_id))))
    if node.op == "cast":
        return np.dtype(graph.type(node.args[0]).dtype).kind in "biu"
    if node.op == "where":
        return _never_inf_or_nan(graph, node.args[1]) and _never_inf_or_nan(graph, node.args[2])
    if node.op == "mul":  # a mask times a finite value: 0 or that value
        a, b = node.args
        return any(graph.type(m).dtype == "bool" and _never_inf_or_nan(graph, other) for m, other in ((a, b), (b, a)))
    return False


def _fit(graph: Graph, node_id: int, type: TensorType) -> int | None:
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


def _strip(graph: Graph, node_id: int, ops=("broadcast_to", "reshape", "stop_gradient")) -> int:
    while graph[node_id].op in ops:
        node_id = graph[node_id].args[0]
    return node_id


def _op(graph: Graph, node_id: int) -> str:
    return graph[node_id].op


def _v(graph: Graph, node_id: int) -> Value:
    return Value(graph, node_id)


def _zeros(graph: Graph, type: TensorType) -> int:
    return graph.zeros(type)


def looks_for(*operand_ops: str):
    """Declare that a rule can fire only on a node with an operand of one of ``operand_ops``:
    ``simplify_rule`` checks that first. Most nodes a gradient is built of are products and sums
    of plain values, and this one test skips the rules that look for constants or negations in
    them. (A test checks each declaration against the rule on many kinds of operands.)"""
    def declare(rule):
        rule.operand_ops = frozenset(operand_ops)
        return rule
    return declare


# ---- exact algebra -----------------------------------------------------------------------


@looks_for("neg", "mul")
def neg_of_neg(g, node, args):
    inner = g[args[0]]
    if inner.op == "neg":
        return _fit(g, inner.args[0], node.type)
    if inner.op == "mul":  # -(c * x) -> (-c) * x, exact
        for factor, x in (inner.args, reversed(inner.args)):
            c = _scalar(g, factor)
            if c is not None:  # the negated constant keeps its shape, so the type is unchanged
                negated = g.const(np.full(g.type(factor).shape, -c, g.type(factor).dtype))
                return _fit(g, g.add("mul", (negated, x)), node.type)


def _power_of_two(value) -> bool:
    return value is not None and value != 0 and np.isfinite(value) and abs(np.frexp(value)[0]) == 0.5


def add_of_itself(g, node, args):
    """x + x -> 2 * x (exact), which then merges with a constant factor of x."""
    a, b = args
    if a == b and g.type(a).is_float:
        return g.add("mul", (g.const(np.asarray(2.0, g.type(a).dtype)), a))


@looks_for("const", "zeros")
def constant_factors(g, node, args):
    """c1 * (c2 * x) -> (c1 c2) * x when c1 or c2 is a power of two, so the product is exact."""
    for outer, inner in (args, reversed(args)):
        c1 = _scalar(g, outer)
        if c1 is None or _op(g, inner) != "mul":
            continue
        for factor, x in (g[inner].args, reversed(g[inner].args)):
            c2 = _scalar(g, factor)
            if c2 is not None and (_power_of_two(c1) or _power_of_two(c2)) \
                    and g.type(outer).dtype == g.type(factor).dtype:
                shape = np.broadcast_shapes(g.type(outer).shape, g.type(factor).shape)
                product = g.const(np.full(shape, c1 * c2, g.type(outer).dtype))
                return _fit(g, g.add("mul", (product, x)), node.type)
    return None


@looks_for("neg")
def add_of_neg(g, node, args):
    a, b = args
    if _op(g, b) == "neg":
        return _fit(g, g.add("sub", (a, g[b].args[0])), node.type)
    if _op(g, a) == "neg":
        return _fit(g, g.add("sub", (b, g[a].args[0])), node.type)


def sub_identities(g, node, args):
    a, b = args
    if _op(g, b) == "neg":
        return _fit(g, g.add("add", (a, g[b].args[0])), node.type)
    if _is_constant(g, a, 0.0) and g.type(a).size == 1:
        return _fit(g, g.add("neg", (b,)), node.type)
    if a == b and _never_inf_or_nan(g, a):
        return _zeros(g, node.type)


@looks_for("neg")
def _both_negated(g, node, args):
    a, b = args
    if _op(g, a) == "neg" and _op(g, b) == "neg":
        return _fit(g, g.add(node.op, (g[a].args[0], g[b].args[0])), node.type)


@looks_for("const", "zeros")
def mul_identities(g, node, args):
    a, b = args
    for kept, other in ((a, b), (b, a)):
        if _is_constant(g, other, 1.0):
            return _fit(g, kept, node.type)
        if _scalar(g, other) == -1.0:
            return _fit(g, g.add("neg", (kept,)), node.type)
        if (_is_constant(g, other, 0.0) or _op(g, other) == "zeros") and _never_inf_or_nan(g, kept):
            return _zeros(g, node.type)


@looks_for("const", "zeros")
def div_identities(g, node, args):
    a, b = args
    if _is_constant(g, b, 1.0):
        return _fit(g, a, node.type)
    divisor = _scalar(g, b)
    if _power_of_two(divisor):  # x / 2**k == x * 2**-k exactly
        return _fit(g, g.add("mul", (a, g.const(np.asarray(1 / divisor, dtype=g.type(b).dtype)))), node.type)
    return _sigmoid_by_hand(g, node, args)


def _sigmoid_by_hand(g, node, args):
    """1 / (1 + exp(-z)) -> sigmoid(z)."""
    one, denominator = args
    if _scalar(g, one) != 1.0 or _op(g, denominator) != "add":
        return None
    for unit, exponential in (g[denominator].args, reversed(g[denominator].args)):
        if _scalar(g, unit) == 1.0 and _op(g, exponential) == "exp" and _op(g, g[exponential].args[0]) == "neg":
            z = g[g[exponential].args[0]].args[0]
            return _fit(g, g.add("sigmoid", (z,)), node.type)
    return None


@looks_for("const", "zeros")
def pow_identities(g, node, args):
    x, exponent = args
    value = _scalar(g, exponent)
    if value is None or g.type(x).dtype != node.type.dtype:
        return None
    if value == 2.0:
        return _fit(g, g.add("mul", (x, x)), node.type)
    if value == 0.5:
        return _fit(g, g.add("sqrt", (x,)), node.type)
    if value == -1.0:
        return _fit(g, g.add("div", (g.const(np.asarray(1.0, node.type.dtype)), x)), node.type)


def composed_transpose(g, node, args):
    inner = g[args[0]]
    if inner.op == "transpose":
        first, second = inner.params["axes"], node.params["axes"]
        return g.add("transpose", (inner.args[0],), {"axes": tuple(first[i] for i in second)})


def collapsed_shape_op(g, node, args):
    """reshape(reshape(x)) -> reshape(x); broadcast_to(broadcast_to(x)) -> broadcast_to(x)."""
    inner = g[args[0]]
    if inner.op == node.op:
        return g.add(node.op, (inner.args[0],), node.params)


def shape_op_of_broadcast_scalar(g, node, args):
    """A shape op of a broadcast one-element value is a broadcast of that value (the backward of a
    mean makes ``reshape(broadcast_to(c))``; as a broadcast, elementwise users absorb it)."""
    inner = g[args[0]]
    if inner.op == "broadcast_to" and g.type(inner.args[0]).size == 1 and node.type.size > 1:
        scalar = g.add("reshape", (inner.args[0],), {"shape": ()})
        return g.add("broadcast_to", (scalar,), {"shape": node.type.shape})


def reshape_of_kept_sum(g, node, args):
    """reshape(sum(x, keepdims=True)) that only drops the summed axes -> sum(x, keepdims=False)."""
    inner = g[args[0]]
    if inner.op == "sum" and inner.params["keepdims"]:
        dropped = tuple(d for i, d in enumerate(inner.type.shape) if i not in inner.params["axis"])
        if dropped == node.type.shape:
            return g.add("sum", (inner.args[0],), {"axis": inner.params["axis"], "keepdims": False})


def sum_of_sum(g, node, args):
    """sum(sum(x, a1), a2) -> sum(x, a1 + a2) (a different summation order: rounding only)."""
    inner = g[args[0]]
    if inner.op != "sum":
        return None
    first = inner.params["axis"]
    if inner.params["keepdims"]:
        second = node.params["axis"]
    else:
        remaining = [i for i in range(g.type(inner.args[0]).ndim) if i not in first]
        second = tuple(remaining[i] for i in node.params["axis"])
    combined = g.add("sum", (inner.args[0],), {"axis": tuple(sorted(set(first) | set(second))),
                                               "keepdims": node.params["keepdims"]})
    # the same elements summed; only where the size-1 axes sit can differ
    return combined if g.type(combined) == node.type else g.add("reshape", (combined,), {"shape": node.type.shape})


def sum_of_neg(g, node, args):
    """sum(-x) -> -sum(x): one negation of the reduced value instead of the whole array (exact)."""
    if _op(g, args[0]) == "neg":
        return g.add("neg", (g.add("sum", (g[args[0]].args[0],), node.params),))


def sum_of_one_pick_per_row(g, node, args):
    """sum over the columns of scatter_add(v, [arange(n), labels]) is v: each row gets exactly one
    value. (The backward of picking each row's label, as cross-entropy does: with it, the softmax
    cross-entropy gradient becomes (softmax - onehot) / n.)"""
    scatter = g[args[0]]
    if scatter.op != "scatter_add" or len(scatter.args) != 3 or node.params["axis"] != (1,):
        return None
    values, rows, _ = scatter.args
    n = scatter.type.shape[0]
    row_values = g.const_value(rows)
    if scatter.params["index"] != (("array", 0), ("array", 1)) or scatter.type.ndim != 2 \
            or row_values is None or not np.array_equal(row_values, np.arange(n)):
        return None
    if g.type(values).size == 1:
        scalar = g.add("reshape", (values,), {"shape": ()})
        return g.add("broadcast_to", (scalar,), {"shape": node.type.shape})
    if g.type(values).shape in ((n,), (n, 1)):
        return g.add("reshape", (values,), {"shape": node.type.shape})
    return None


def shape_op_of_zeros(g, node, args):
    if _op(g, args[0]) == "zeros":
        return _zeros(g, node.type)


def sum_of_broadcast(g, node, args):
    """sum(broadcast_to(x)) over only the broadcast axes -> x times the number of copies."""
    source = g[args[0]]
    if source.op != "broadcast_to":
        return None
    x = source.args[0]
    full = source.type.shape
    padded = (1,) * (len(full) - g.type(x).ndim) + g.type(x).shape
    axes = node.params["axis"]
    if any(padded[i] != 1 for i in axes) or not node.type.is_float:
        return None
    copies = int(np.prod([full[i] for i in axes]))
    kept_shape = tuple(d for i, d in enumerate(padded) if i not in axes) if not node.params["keepdims"] \
        else tuple(1 if i in axes else d for i, d in enumerate(padded))
    base = g.add("reshape", (x,), {"shape": kept_shape})
    scaled = g.add("mul", (base, g.const(np.asarray(float(copies), node.type.dtype))))
    return _fit(g, scaled, node.type)


def where_identities(g, node, args):
    condition, a, b = args
    if a == b:
        return _fit(g, a, node.type)
    value = g.const_value(condition)
    if value is not None and value.dtype == bool and (value.all() or not value.any()):
        return _fit(g, a if value.all() else b, node.type)


def round_trip_cast(g, node, args):
    inner = g[args[0]]
    if inner.op != "cast":
        return None
    original = g.type(inner.args[0]).dtype
    middle = np.dtype(inner.type.dtype)
    if original == node.type.dtype and np.dtype(original).kind == "f" and middle.kind == "f" \
            and middle.itemsize >= np.dtype(original).itemsize:
        return inner.args[0]


# ---- stability ---------------------------------------------------------------------------


def stable_log(g, node, args):
    (x,) = args
    inner = g[x]
    if inner.op == "exp":
        return _fit(g, inner.args[0], node.type)
    if inner.op == "sigmoid":  # log(sigmoid(z)) = -softplus(-z)
        z = _v(g, inner.args[0])
        return _fit(g, (-F.softplus(-z)).id, node.type)
    if inner.op == "sub" and _scalar(g, inner.args[0]) == 1.0 and _op(g, inner.args[1]) == "sigmoid":
        z = _v(g, g[inner.args[1]].args[0])  # log(1 - sigmoid(z)) = -softplus(z)
        return _fit(g, (-F.softplus(z)).id, node.type)
    if inner.op == "div" and _op(g, inner.args[0]) == "exp":
        u, t = g[inner.args[0]].args[0], inner.args[1]  # log(exp(u) / t) = u - log(t)
        return _fit(g, (_v(g, u) - F.log(_v(g, t))).id, node.type)
    if inner.op == "maximum":
        for x_id, bound in (inner.args, reversed(inner.args)):
            floor = g.const_value(bound)
            if floor is not None and floor.dtype.kind == "f" and np.all(floor > 0):
                with np.errstate(all="ignore"):
                    log_floor = g.const(np.log(floor))
                return _fit(g, g.add("maximum", (g.add("log", (x_id,)), log_floor)), node.type)
    if inner.op == "sum" and _op(g, inner.args[0]) == "exp":
        return _stable_log_sum_exp(g, node, inner)
    return None


def stable_log1p(g, node, args):
    inner = g[args[0]]
    if inner.op == "neg" and _op(g, inner.args[0]) == "sigmoid":  # log1p(-sigmoid(z)) = -softplus(z)
        z = _v(g, g[inner.args[0]].args[0])
        return _fit(g, (-F.softplus(z)).id, node.type)


def _stable_log_sum_exp(g, node, total):
    u = g[total.args[0]].args[0]
    axis, keepdims = total.params["axis"], total.params["keepdims"]
    if _is_shifted_by_its_max(g, u, axis):
        return None
    shift = F.stop_gradient(F.max(_v(g, u), axis=axis, keepdims=True))
    stable = F.log(F.sum(F.exp(_v(g, u) - shift), axis=axis, keepdims=keepdims))
    if not keepdims:
        shift = F.reshape(shift, shape=stable.shape)
    return _fit(g, (stable + shift).id, node.type)


def _is_shifted_by_its_max(g, u: int, axis: tuple) -> bool:
    """Is ``u`` of the form ``v - max(v, axis)`` (maybe broadcast, reshaped or stop_gradient'ed)?"""
    node = g[u]
    if node.op != "sub":
        return False
    shift = g[_strip(g, node.args[1])]
    return shift.op == "max" and shift.params["axis"] == axis and shift.args[0] == node.args[0]


RULES = {
    "neg": [neg_of_neg],
    "add": [add_of_neg, add_of_itself],
    "sub": [sub_identities],
    "mul": [_both_negated, mul_identities, constant_factors],
    "div": [_both_negated, div_identities],
    "pow": [pow_identities],
    "transpose": [composed_transpose, shape_op_of_zeros, shape_op_of_broadcast_scalar],
    "reshape": [collapsed_shape_op, shape_op_of_zeros, shape_op_of_broadcast_scalar, reshape_of_kept_sum],
    "broadcast_to": [collapsed_shape_op, shape_op_of_zeros, shape_op_of_broadcast_scalar],
    "sum": [sum_of_broadcast, shape_op_of_zeros, sum_of_sum, sum_of_neg, sum_of_one_pick_per_row],
    "where": [where_identities],
    "cast": [round_trip_cast],
    "log": [stable_log],
    "log1p": [stable_log1p],
}


def _declared(rules: list) -> tuple:
    """(the operand ops one of ``rules`` looks for, or None when one of them declares none;
    each rule with the operand ops it looks for, or None)."""
    looked_for = [getattr(rule, "operand_ops", None) for rule in rules]
    any_looks_for = None if None in looked_for else frozenset().union(*looked_for)
    return any_looks_for, list(zip(rules, looked_for))


# op -> what simplify_rule needs to know of its rules (see _declared)
_RULES_OF_OP = {op: _declared(rules) for op, rules in RULES.items()}


def simplify_rule(graph: Graph, node: Node, args: tuple) -> int | None:
    """Folding, the identities above and CSE's commutative merge, as one rule: what the
    simplify pass applies, and what reverse mode applies to the nodes it builds."""
    # Folding and CSE run in the same walk: a folded constant often completes an identity's pattern.
    nodes = graph.nodes
    operand_ops = [nodes[a].op for a in args]
    if args and FOLDABLE_OPERANDS.issuperset(operand_ops):
        replacement = fold_rule(graph, node, args)
        if replacement is not None:
            return replacement
    op = node.op
    declared = _RULES_OF_OP.get(op)
    if declared is not None:
        any_looks_for, rules = declared
        if any_looks_for is None or not any_looks_for.isdisjoint(operand_ops):  # (a product of plain values: no)
            for rule, looked_for in rules:
                if looked_for is None or not looked_for.isdisjoint(operand_ops):
                    replacement = rule(graph, node, args)
                    if replacement is not None:
                        return replacement
    if op in COMMUTATIVE:  # commutative_order, spelled out: this runs for every node a gradient has
        return graph.find(op, (args[1], args[0]), node.attrs)
    return None


def simplify(graph: Graph) -> Graph:
    """``graph`` with constants folded, the identities and stability rewrites above applied and
    common subexpressions merged: one walk reaches the fixed point (see rewrite.py)."""
    return rebuild(graph, simplify_rule)[0]
