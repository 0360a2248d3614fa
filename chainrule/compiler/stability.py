"""The simplify pass's stability rewrites, as rules of the one rewrite engine (``ir/rewrite.py``):
each changes a result only where the original overflows or underflows to a wrong inf or NaN
(``compiler/simplify.py`` lists them and says why)."""

from __future__ import annotations

import numpy as np

from chainrule.compiler import patterns
from chainrule.ir import F
from chainrule.ir.rewrite import RuleSet

STABILITY = RuleSet("stability")


@STABILITY.rule("log", kind="stability")
def stable_log(g, node, args):
    (x,) = args
    inner = g[x]
    if inner.op == "exp":
        return patterns.fit(g, inner.args[0], node.type)
    if inner.op == "sigmoid":  # log(sigmoid(z)) = -softplus(-z)
        z = patterns.value_of(g, inner.args[0])
        return patterns.fit(g, (-F.softplus(-z)).id, node.type)
    if (
        inner.op == "sub"
        and patterns.scalar_value(g, inner.args[0]) == 1.0
        and patterns.op_of(g, inner.args[1]) == "sigmoid"
    ):
        z = patterns.value_of(g, g[inner.args[1]].args[0])  # log(1 - sigmoid(z)) = -softplus(z)
        return patterns.fit(g, (-F.softplus(z)).id, node.type)
    if inner.op == "div" and patterns.op_of(g, inner.args[0]) == "exp":
        u, t = g[inner.args[0]].args[0], inner.args[1]  # log(exp(u) / t) = u - log(t)
        return patterns.fit(g, (patterns.value_of(g, u) - F.log(patterns.value_of(g, t))).id, node.type)
    if inner.op == "maximum":
        for x_id, bound in (inner.args, reversed(inner.args)):
            floor = g.const_value(bound)
            if floor is not None and floor.dtype.kind == "f" and np.all(floor > 0):
                with np.errstate(all="ignore"):
                    log_floor = g.const(np.log(floor))
                return patterns.fit(g, g.add("maximum", (g.add("log", (x_id,)), log_floor)), node.type)
    if inner.op == "sum" and patterns.op_of(g, inner.args[0]) == "exp":
        return _stable_log_sum_exp(g, node, inner)
    return None


@STABILITY.rule("log1p", any_operand=["neg"], kind="stability")
def stable_log1p(g, node, args):
    inner = g[args[0]]
    if inner.op == "neg" and patterns.op_of(g, inner.args[0]) == "sigmoid":  # log1p(-sigmoid(z)) = -softplus(z)
        z = patterns.value_of(g, g[inner.args[0]].args[0])
        return patterns.fit(g, (-F.softplus(z)).id, node.type)


def _stable_log_sum_exp(g, node, total):
    u = g[total.args[0]].args[0]
    axis, keepdims = total.params["axis"], total.params["keepdims"]
    if _is_shifted_by_its_max(g, u, axis):
        return None
    shift = F.stop_gradient(F.max(patterns.value_of(g, u), axis=axis, keepdims=True))
    stable = F.log(F.sum(F.exp(patterns.value_of(g, u) - shift), axis=axis, keepdims=keepdims))
    if not keepdims:
        shift = F.reshape(shift, shape=stable.shape)
    return patterns.fit(g, (stable + shift).id, node.type)


def _is_shifted_by_its_max(g, u: int, axis: tuple) -> bool:
    """Is ``u`` of the form ``v - max(v, axis)`` (maybe broadcast, reshaped or stop_gradient'ed)?"""
    node = g[u]
    if node.op != "sub":
        return False
    shift = g[patterns.strip(g, node.args[1])]
    if shift.op == "where" and _is_zero(g, shift.args[2]):  # the max, or 0 where it is infinite (scipy's)
        shift = g[patterns.strip(g, shift.args[1])]
    return shift.op == "max" and shift.params["axis"] == axis and shift.args[0] == node.args[0]


def _is_zero(g, node_id: int) -> bool:
    value = g.const_value(node_id)
    return value is not None and value.size == 1 and float(value) == 0.0
