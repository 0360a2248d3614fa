"""The simplify pass's algebra: exact identities and rounding-level rewrites, as rules of the one
rewrite engine (``ir/rewrite.py``). ``compiler/simplify.py`` says which identities and why."""

from __future__ import annotations

import numpy as np

from chainrule.compiler import patterns
from chainrule.ir import OPS
from chainrule.ir.rewrite import RuleSet

ALGEBRA = RuleSet("algebra")


def _float_elementwise(name: str) -> bool:
    """An elementwise op of one or two float operands and no parameters (probed on NumPy)."""
    op = OPS[name]
    if not op.is_elementwise or op.arity not in (1, 2):
        return False
    try:
        with np.errstate(all="ignore"):
            return np.asarray(op.eager(*[np.ones(1)] * op.arity)).dtype.kind == "f"
    except (TypeError, ValueError, KeyError):
        return False


_FLOAT_ELEMENTWISE = sorted(filter(_float_elementwise, OPS))


@ALGEBRA.rule("neg", any_operand=["neg", "mul"])
def neg_of_neg(g, node, args):
    inner = g[args[0]]
    if inner.op == "neg":
        return patterns.fit(g, inner.args[0], node.type)
    if inner.op == "mul":  # -(c * x) -> (-c) * x, exact
        for factor, x in (inner.args, reversed(inner.args)):
            c = patterns.scalar_value(g, factor)
            if c is not None:  # the negated constant keeps its shape, so the type is unchanged
                negated = g.const(np.full(g.type(factor).shape, -c, g.type(factor).dtype))
                return patterns.fit(g, g.add("mul", (negated, x)), node.type)


def _power_of_two(value) -> bool:
    return value is not None and value != 0 and np.isfinite(value) and abs(np.frexp(value)[0]) == 0.5


@ALGEBRA.rule("add", any_operand=["neg"])
def add_of_neg(g, node, args):
    a, b = args
    if patterns.op_of(g, b) == "neg":
        return patterns.fit(g, g.add("sub", (a, g[b].args[0])), node.type)
    if patterns.op_of(g, a) == "neg":
        return patterns.fit(g, g.add("sub", (b, g[a].args[0])), node.type)


@ALGEBRA.rule("add")
def add_of_itself(g, node, args):
    """x + x -> 2 * x (exact), which then merges with a constant factor of x."""
    a, b = args
    if a == b and g.type(a).is_float:
        return g.add("mul", (g.const(np.asarray(2.0, g.type(a).dtype)), a))


@ALGEBRA.rule("sub")
def sub_identities(g, node, args):
    a, b = args
    if patterns.op_of(g, b) == "neg":
        return patterns.fit(g, g.add("add", (a, g[b].args[0])), node.type)
    if (patterns.is_constant(g, a, 0.0) and g.type(a).size == 1) or patterns.op_of(g, a) == "zeros":
        return patterns.fit(g, g.add("neg", (b,)), node.type)
    if a == b and patterns.never_inf_or_nan(g, a):
        return g.zeros(node.type)


@ALGEBRA.rule("mul", "div", any_operand=["neg"])
def both_negated(g, node, args):
    a, b = args
    if patterns.op_of(g, a) == "neg" and patterns.op_of(g, b) == "neg":
        return patterns.fit(g, g.add(node.op, (g[a].args[0], g[b].args[0])), node.type)


@ALGEBRA.rule("mul", any_operand=patterns.CONSTANTS)
def mul_identities(g, node, args):
    a, b = args
    for kept, other in ((a, b), (b, a)):
        if patterns.is_constant(g, other, 1.0):
            return patterns.fit(g, kept, node.type)
        if patterns.scalar_value(g, other) == -1.0:
            return patterns.fit(g, g.add("neg", (kept,)), node.type)
        if (patterns.is_constant(g, other, 0.0) or patterns.op_of(g, other) == "zeros") and patterns.never_inf_or_nan(
            g, kept
        ):
            return g.zeros(node.type)


@ALGEBRA.rule("matmul", any_operand=["zeros"])
def matmul_of_zeros(g, node, args):
    """0 @ x -> 0 and x @ 0 -> 0, as x * 0: only when x is never inf or NaN (0 @ inf is NaN).
    The zero cotangent of a factor the program does not use goes another way: ``linalg.vanishes``."""
    a, b = args
    for zero, other in ((a, b), (b, a)):
        if patterns.op_of(g, zero) == "zeros" and patterns.never_inf_or_nan(g, other):
            return g.zeros(node.type)
    return None


@ALGEBRA.rule("mul", any_operand=patterns.CONSTANTS)
def constant_factors(g, node, args):
    """c1 * (c2 * x) -> (c1 c2) * x when c1 or c2 is a power of two, so the product is exact."""
    for outer, inner in (args, reversed(args)):
        c1 = patterns.scalar_value(g, outer)
        if c1 is None or patterns.op_of(g, inner) != "mul":
            continue
        for factor, x in (g[inner].args, reversed(g[inner].args)):
            c2 = patterns.scalar_value(g, factor)
            if (
                c2 is not None
                and (_power_of_two(c1) or _power_of_two(c2))
                and g.type(outer).dtype == g.type(factor).dtype
            ):
                shape = np.broadcast_shapes(g.type(outer).shape, g.type(factor).shape)
                product = g.const(np.full(shape, c1 * c2, g.type(outer).dtype))
                return patterns.fit(g, g.add("mul", (product, x)), node.type)
    return None


@ALGEBRA.rule("div", any_operand=patterns.CONSTANTS)
def div_identities(g, node, args):
    a, b = args
    if patterns.is_constant(g, b, 1.0):
        return patterns.fit(g, a, node.type)
    divisor = patterns.scalar_value(g, b)
    if _power_of_two(divisor):  # x / 2**k == x * 2**-k exactly
        return patterns.fit(g, g.add("mul", (a, g.const(np.asarray(1 / divisor, dtype=g.type(b).dtype)))), node.type)
    return None


@ALGEBRA.rule("div", any_operand=patterns.CONSTANTS, kind="rounding")
def sigmoid_by_hand(g, node, args):
    """1 / (1 + exp(-z)) -> sigmoid(z)."""
    one, denominator = args
    if patterns.scalar_value(g, one) != 1.0 or patterns.op_of(g, denominator) != "add":
        return None
    for unit, exponential in (g[denominator].args, reversed(g[denominator].args)):
        if (
            patterns.scalar_value(g, unit) == 1.0
            and patterns.op_of(g, exponential) == "exp"
            and patterns.op_of(g, g[exponential].args[0]) == "neg"
        ):
            z = g[g[exponential].args[0]].args[0]
            return patterns.fit(g, g.add("sigmoid", (z,)), node.type)
    return None


@ALGEBRA.rule("div", any_operand=["mul"], kind="rounding")
def div_undoing_mul(g, node, args):
    """(c * x) / c -> x for a one-element constant c (the mean of a broadcast: its sum is n * x)."""
    product, divisor = args
    c = patterns.scalar_value(g, divisor)
    if c is None or c == 0 or not np.isfinite(c) or patterns.op_of(g, product) != "mul":
        return None
    for factor, x in (g[product].args, reversed(g[product].args)):
        if patterns.scalar_value(g, factor) == c:
            return patterns.fit(g, x, node.type)
    return None


@ALGEBRA.rule(*_FLOAT_ELEMENTWISE, any_operand=["broadcast_to", "reshape"])
def elementwise_of_broadcasts(g, node, args):
    """op(broadcast_to(a), broadcast_to(b)) -> broadcast_to(op(a, b)) when no operand has the full
    shape (exact: the op runs on the distinct values only). A reshape of a one-element value is a
    broadcast of it too. So ``x - mean(x)`` of a broadcast constant becomes a broadcast ``s - s``,
    through which no derivative flows (``ir.ops.SELF_CANCELLING``): std of a constant, not NaN."""
    sources, changed = [], False
    for arg in args:
        operand = g[arg]
        if operand.op == "broadcast_to" or (operand.op == "reshape" and g.type(operand.args[0]).size == 1):
            source = operand.args[0]
            source = g.add("reshape", (source,), {"shape": ()}) if operand.op == "reshape" else source
            sources.append(source)
            changed = True
        else:
            sources.append(arg)
    if not changed or np.broadcast_shapes(*(g.type(a).shape for a in sources)) == node.type.shape:
        return None
    return patterns.fit(g, g.add(node.op, tuple(sources), node.params), node.type)


@ALGEBRA.rule("pow", any_operand=patterns.CONSTANTS)
def pow_identities(g, node, args):
    x, exponent = args
    value = patterns.scalar_value(g, exponent)
    if value is None or g.type(x).dtype != node.type.dtype:
        return None
    if value == 2.0:
        return patterns.fit(g, g.add("mul", (x, x)), node.type)
    if value == 0.5:
        return patterns.fit(g, g.add("sqrt", (x,)), node.type)
    if value == -1.0:
        return patterns.fit(g, g.add("div", (g.const(np.asarray(1.0, node.type.dtype)), x)), node.type)


@ALGEBRA.rule("transpose")
def composed_transpose(g, node, args):
    inner = g[args[0]]
    if inner.op == "transpose":
        first, second = inner.params["axes"], node.params["axes"]
        return g.add("transpose", (inner.args[0],), {"axes": tuple(first[i] for i in second)})


@ALGEBRA.rule("reshape", "broadcast_to")
def collapsed_shape_op(g, node, args):
    """reshape(reshape(x)) -> reshape(x); broadcast_to(broadcast_to(x)) -> broadcast_to(x)."""
    inner = g[args[0]]
    if inner.op == node.op:
        return g.add(node.op, (inner.args[0],), node.params)


@ALGEBRA.rule("sum", kind="rounding")
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
    kept_shape = (
        tuple(d for i, d in enumerate(padded) if i not in axes)
        if not node.params["keepdims"]
        else tuple(1 if i in axes else d for i, d in enumerate(padded))
    )
    base = g.add("reshape", (x,), {"shape": kept_shape})
    scaled = g.add("mul", (base, g.const(np.asarray(float(copies), node.type.dtype))))
    return patterns.fit(g, scaled, node.type)


@ALGEBRA.rule("transpose", "reshape", "broadcast_to", "sum")
def shape_op_of_zeros(g, node, args):
    if patterns.op_of(g, args[0]) == "zeros":
        return g.zeros(node.type)


@ALGEBRA.rule("transpose", "reshape", "broadcast_to")
def shape_op_of_broadcast_scalar(g, node, args):
    """A shape op of a broadcast one-element value is a broadcast of that value (the backward of a
    mean makes ``reshape(broadcast_to(c))``; as a broadcast, elementwise users absorb it)."""
    inner = g[args[0]]
    if inner.op == "broadcast_to" and g.type(inner.args[0]).size == 1 and node.type.size > 1:
        scalar = g.add("reshape", (inner.args[0],), {"shape": ()})
        return g.add("broadcast_to", (scalar,), {"shape": node.type.shape})


@ALGEBRA.rule("reshape")
def reshape_of_kept_sum(g, node, args):
    """reshape(sum(x, keepdims=True)) that only drops the summed axes -> sum(x, keepdims=False)."""
    inner = g[args[0]]
    if inner.op == "sum" and inner.params["keepdims"]:
        dropped = tuple(d for i, d in enumerate(inner.type.shape) if i not in inner.params["axis"])
        if dropped == node.type.shape:
            return g.add("sum", (inner.args[0],), {"axis": inner.params["axis"], "keepdims": False})


@ALGEBRA.rule("sum", kind="rounding")
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
    combined = g.add(
        "sum", (inner.args[0],), {"axis": tuple(sorted(set(first) | set(second))), "keepdims": node.params["keepdims"]}
    )
    # the same elements summed; only where the size-1 axes sit can differ
    return combined if g.type(combined) == node.type else g.add("reshape", (combined,), {"shape": node.type.shape})


@ALGEBRA.rule("sum")
def sum_of_neg(g, node, args):
    """sum(-x) -> -sum(x): one negation of the reduced value instead of the whole array (exact)."""
    if patterns.op_of(g, args[0]) == "neg":
        return g.add("neg", (g.add("sum", (g[args[0]].args[0],), node.params),))


@ALGEBRA.rule("sum")
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
    if (
        scatter.params["index"] != (("array", 0), ("array", 1))
        or scatter.type.ndim != 2
        or row_values is None
        or not np.array_equal(row_values, np.arange(n))
    ):
        return None
    if g.type(values).size == 1:
        scalar = g.add("reshape", (values,), {"shape": ()})
        return g.add("broadcast_to", (scalar,), {"shape": node.type.shape})
    if g.type(values).shape in ((n,), (n, 1)):
        return g.add("reshape", (values,), {"shape": node.type.shape})
    return None


@ALGEBRA.rule("where")
def where_identities(g, node, args):
    condition, a, b = args
    if a == b:
        return patterns.fit(g, a, node.type)
    value = g.const_value(condition)
    if value is not None and value.dtype == bool and (value.all() or not value.any()):
        return patterns.fit(g, a if value.all() else b, node.type)


@ALGEBRA.rule("cast")
def round_trip_cast(g, node, args):
    inner = g[args[0]]
    if inner.op != "cast":
        return None
    original = g.type(inner.args[0]).dtype
    middle = np.dtype(inner.type.dtype)
    if (
        original == node.type.dtype
        and np.dtype(original).kind == "f"
        and middle.kind == "f"
        and middle.itemsize >= np.dtype(original).itemsize
    ):
        return inner.args[0]


_SINK_DEPTH = 4  # elementwise ops a transpose moves through: bias, activation, a scalar shift, ...


def _sinkable(g, value: int, undo: tuple, full: tuple, depth: int) -> bool | None:
    """Whether ``transpose(value)`` can be written with no full-size transpose left: True when it
    cancels some transpose, False when it only moves onto small operands, None when it cannot."""
    node, have = g[value], g.type(value)
    if node.op == "transpose" and tuple(node.params["axes"]) == undo and have.shape == full:
        return True
    if have.ndim == 0 or have.size * 8 <= int(np.prod(full)):  # small: cheap to transpose
        return False
    if depth == 0 or have.shape != full or not OPS[node.op].is_elementwise:
        return None
    verdicts = [_sinkable(g, operand, undo, full, depth - 1) for operand in node.args]
    return None if None in verdicts else any(verdicts)


def _transposed(g, value: int, axes: tuple, undo: tuple, full: tuple) -> int:
    """``transpose(value, axes)`` built as ``_sinkable`` found it can be: cancelled, moved onto a
    small operand, or moved through an elementwise op."""
    node, have = g[value], g.type(value)
    if node.op == "transpose" and tuple(node.params["axes"]) == undo and have.shape == full:
        return node.args[0]
    if have.ndim == 0:
        return value
    if have.size * 8 <= int(np.prod(full)):  # broadcast against the full shape, transposed alike
        padded = g.add("reshape", (value,), {"shape": (1,) * (len(full) - have.ndim) + have.shape})
        return g.add("transpose", (padded,), {"axes": axes})
    operands = tuple(_transposed(g, operand, axes, undo, full) for operand in node.args)
    return g.add(node.op, operands, node.params)


@ALGEBRA.rule("transpose")
def transpose_through_elementwise(g, node, args):
    """transpose(f(transpose(a), small)) -> f(a, transpose(small)) for elementwise ops f (nested up
    to ``_SINK_DEPTH``), when the two transposes of ``a`` cancel: only the small operands (a bias,
    a scalar) move. This is what runs a chain of batch-last convolutions and pools (``nn.conv``)
    without a transpose between layers: each layer's way back to NCHW meets the next layer's way
    in across the activation between them."""
    if not OPS[g[args[0]].op].is_elementwise:
        return None
    axes = tuple(node.params["axes"])
    undo = tuple(int(a) for a in np.argsort(axes))
    full = g.type(args[0]).shape
    if not _sinkable(g, args[0], undo, full, _SINK_DEPTH):
        return None
    return patterns.fit(g, _transposed(g, args[0], axes, undo, full), node.type)
