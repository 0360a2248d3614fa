"""The simplify, fold and CSE passes: each rewrite's before/after structure, and the same numbers
with the optimizer on and off on random inputs (values and gradients).

A case is a function, inputs, the ops the simplified forward graph must contain and the ops it
must not. Equality is to 1e-12 relative: rewrites are exact or change rounding only (a sum of n
copies becomes n times the value). The stability tests check what the rewrites are for: losses
written the naive way stay finite, and correct, at extreme logits.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pytest

import chainrule as cr
import chainrule.nn as nn
from chainrule.compiler.autodiff import reverse
from chainrule.compiler.cse import cse
from chainrule.compiler.dce import dce
from chainrule.compiler.fold import fold
from chainrule.compiler.rewrite import rebuild
from chainrule.compiler.simplify import SIMPLIFY, simplify, simplify_rule
from chainrule.errors import ShapeError
from chainrule.ir import OPS, Graph, TensorType

RNG = np.random.default_rng(0)


def normal(*shape):
    return RNG.standard_normal(shape)


def positive(*shape):
    return RNG.uniform(0.5, 2.0, shape)


def ops(graph) -> Counter:
    return Counter(graph[i].op for i in graph.live_nodes())


@dataclass
class Case:
    name: str
    fn: Callable
    args: tuple
    present: tuple = ()
    absent: tuple = ()
    differentiable: bool = True
    extra: dict = field(default_factory=dict)


CASES = [
    Case("double negation", lambda x: np.sum(-(-x) * x), (normal(4),), absent=("neg",)),  # noqa: B002
    Case(
        "add of a negation is a subtraction",
        lambda x, y: np.sum(x + (-y)),
        (normal(4), normal(4)),
        present=("sub",),
        absent=("neg", "add"),
    ),
    Case(
        "subtracting a negation is an addition",
        lambda x, y: np.sum(x - (-y)),
        (normal(4), normal(4)),
        present=("add",),
        absent=("neg", "sub"),
    ),
    Case(
        "zero minus x is a negation", lambda x: np.sum(np.exp(0.0 - x)), (normal(4),), present=("neg",), absent=("sub",)
    ),
    Case("a product of negations", lambda x, y: np.sum((-x) * (-y)), (normal(4), normal(4)), absent=("neg",)),
    Case("a quotient of negations", lambda x, y: np.sum((-x) / (-y)), (normal(4), positive(4)), absent=("neg",)),
    Case("x plus x is two x", lambda x: np.sum(np.sin(x + x)), (normal(4),), present=("mul",), absent=("add",)),
    Case(
        "constant factors merge when one is a power of two",
        lambda x: np.sum(np.sin(0.3 * (2.0 * x))),
        (normal(4),),
        extra={"count": {"mul": 1}},
    ),
    Case("a negated constant multiple", lambda x: np.sum(np.sin(-(0.3 * x))), (normal(4),), absent=("neg",)),
    Case(
        "a shape op of a broadcast scalar is a broadcast",
        lambda x: np.sum(x * np.broadcast_to(np.float64(1.0) * x[0, 0], (6,)).reshape(2, 3)),
        (normal(2, 3),),
        absent=("reshape",),
    ),
    Case(
        "reshape after a kept sum is a sum without kept axes",
        lambda x: np.sum(np.sin(np.sum(x, axis=0, keepdims=True).reshape(3))),
        (normal(4, 3),),
        absent=("reshape",),
    ),
    Case(
        "sum of a sum",
        lambda x: np.sin(np.sum(np.sum(x * x, axis=1), axis=0)),
        (normal(4, 3),),
        extra={"count": {"sum": 1}},
    ),
    Case(
        "sum of a kept sum",
        lambda x: np.sin(np.sum(np.sum(x * x, axis=1, keepdims=True), axis=(0, 1))),
        (normal(4, 3),),
        extra={"count": {"sum": 1}},
    ),
    Case(
        "a sum of a negation is a negated sum",
        lambda x: np.sin(np.sum(-np.exp(x))),
        (normal(3, 4),),
        extra={"count": {"neg": 1}},
    ),
    Case(
        "one pick per row: the label picks' backward sums to its values",
        lambda z: nn.cross_entropy(z, np.array([0, 2, 1, 1])),
        (normal(4, 3),),
    ),
    Case(
        "times minus one is a negation",
        lambda x: np.sum(np.exp(x * -1.0)),
        (normal(4),),
        present=("neg",),
        absent=("mul",),
    ),
    Case(
        "times a broadcast one is a broadcast",
        lambda x: np.sum(np.exp(np.ones((3, 4)) * x)),
        (normal(4),),
        absent=("mul",),
    ),
    Case(
        "division by a power of two is a multiplication",
        lambda x: np.sum(np.sin(x / 4.0)),
        (normal(4),),
        present=("mul",),
        absent=("div",),
    ),
    Case("squaring is a product", lambda x: np.sum(np.sin(x**2)), (normal(4),), present=("mul",), absent=("pow",)),
    Case(
        "a half power is a square root",
        lambda x: np.sum(np.sin(x**0.5)),
        (positive(4),),
        present=("sqrt",),
        absent=("pow",),
    ),
    Case(
        "a minus-one power is a reciprocal",
        lambda x: np.sum(np.sin(x**-1.0)),
        (positive(4),),
        present=("div",),
        absent=("pow",),
    ),
    Case("transpose of a transpose", lambda x: np.sum(np.sin(x.T.T) * x), (normal(3, 4),), absent=("transpose",)),
    Case(
        "reshape of a reshape",
        lambda x: np.sum(np.sin(x.reshape(2, 6).reshape(4, 3))),
        (normal(3, 4),),
        extra={"count": {"reshape": 1}},
    ),
    Case(
        "broadcast of a broadcast",
        lambda x: np.sum(np.sin(np.broadcast_to(np.broadcast_to(x, (3, 4)), (2, 3, 4)))),
        (normal(4),),
        extra={"count": {"broadcast_to": 1}},
    ),
    Case(
        "sum of a broadcast is a multiplication",
        lambda s: np.sin(np.sum(np.broadcast_to(s, (400,)))),
        (np.float64(0.3),),
        present=("mul",),
        absent=("sum", "broadcast_to"),
    ),
    Case(
        "where with equal branches",
        lambda x: np.sum(np.where(x > 0, np.sin(x), np.sin(x))),
        (normal(5),),
        absent=("where",),
    ),
    Case(
        "a mask minus itself is zero",
        lambda x: np.sum(x * ((x > 0) * 1.0 - (x > 0) * 1.0)),
        (normal(5),),
        absent=("sub",),
    ),
    Case(
        "a mask times zero is zero", lambda x: np.sum(np.sin(x) + ((x > 0) * 1.0) * 0.0), (normal(5),), absent=("cast",)
    ),
    Case(
        "a lossless round-trip cast",
        lambda x: np.sum(np.sin(x.astype(np.float64).astype(np.float32))),
        (normal(4).astype(np.float32),),
        absent=("cast",),
    ),
    Case("log of exp", lambda x: np.sum(np.log(np.exp(x)) * x), (normal(4),), absent=("log", "exp")),
    Case(
        "sigmoid written out",
        lambda z: np.sum(1 / (1 + np.exp(-z))),
        (normal(4),),
        present=("sigmoid",),
        absent=("exp", "div"),
    ),
    Case(
        "log of a sigmoid",
        lambda z: np.sum(np.log(nn.sigmoid(z))),
        (normal(4),),
        present=("softplus",),
        absent=("log", "sigmoid"),
    ),
    Case(
        "log of one minus a sigmoid",
        lambda z: np.sum(np.log(1 - nn.sigmoid(z))),
        (normal(4),),
        present=("softplus",),
        absent=("log", "sigmoid"),
    ),
    Case(
        "log1p of minus a sigmoid",
        lambda z: np.sum(np.log1p(-nn.sigmoid(z))),
        (normal(4),),
        present=("softplus",),
        absent=("log1p", "sigmoid"),
    ),
    Case(
        "log of a normalized exp is a log-softmax",
        lambda z: np.sum(np.log(np.exp(z) / np.sum(np.exp(z), axis=1, keepdims=True))),
        (normal(3, 5),),
        present=("max",),
        extra={"count": {"log": 1}},
    ),
    Case(
        "log-sum-exp is shifted by the max",
        lambda z: np.log(np.sum(np.exp(z))),
        (normal(6),),
        present=("max", "stop_gradient"),
    ),
    Case(
        "a clamped log becomes a clamp of the log",
        lambda z: np.sum(np.log(np.maximum(nn.sigmoid(z), 1e-12))),
        (normal(4),),
        present=("softplus", "maximum"),
        absent=("sigmoid",),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_rewrite_changes_the_structure(case):
    simplified = simplify(cr.trace(case.fn, *case.args))
    found = ops(simplified)
    for op in case.present:
        assert found[op] > 0, f"{case.name}: expected {op} in\n{simplified}"
    for op in case.absent:
        assert found[op] == 0, f"{case.name}: expected no {op} in\n{simplified}"
    for op, count in case.extra.get("count", {}).items():
        assert found[op] == count, f"{case.name}: expected {count} {op} in\n{simplified}"


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_rewrite_keeps_the_values_and_gradients(case):
    on, off = cr.jit(case.fn)(*case.args), cr.jit(case.fn, optimize=False)(*case.args)
    np.testing.assert_allclose(on, off, rtol=1e-12, atol=1e-15)
    if case.differentiable and np.asarray(case.args[0]).dtype == np.float64:
        argnums = tuple(range(len(case.args)))
        for with_pass, without in zip(
            cr.grad(case.fn, argnums)(*case.args), cr.grad(case.fn, argnums, optimize=False)(*case.args)
        ):
            np.testing.assert_allclose(with_pass, without, rtol=1e-12, atol=1e-15)


# ---- the rewrites that must NOT happen ---------------------------------------------------------


def test_float_times_zero_is_kept_because_inf_times_zero_is_nan():
    f = lambda x: np.sum(x * 0.0)
    x = np.array([1.0, np.inf])
    assert "mul" in ops(simplify(cr.trace(f, x)))
    with np.errstate(invalid="ignore"):
        assert np.isnan(cr.jit(f)(x))


def test_float_minus_itself_is_kept_because_inf_minus_inf_is_nan():
    f = lambda x: np.sum(np.exp(x) - np.exp(x))
    x = np.array([1.0, 1000.0])
    assert "sub" in ops(simplify(cr.trace(f, x)))
    with np.errstate(over="ignore", invalid="ignore"):
        assert np.isnan(cr.jit(f)(x))


def test_softmax_cross_entropy_with_labels_has_gradient_softmax_minus_onehot_without_a_row_sum():
    labels = np.array([0, 2, 1, 1])
    f = cr.grad(lambda z: nn.cross_entropy(z, labels))
    z = normal(4, 3)
    graph = f.graph(z, stage="simplified")
    sums = [graph[i] for i in graph.live_nodes() if graph[i].op == "sum" and graph[i].origin is not None]
    assert sums == []  # the backward sums nothing: dz = scatter(-1/n at labels) + softmax / n
    softmax = np.exp(z) / np.sum(np.exp(z), axis=1, keepdims=True)
    np.testing.assert_allclose(f(z), (softmax - np.eye(3)[labels]) / 4, rtol=1e-13, atol=1e-17)


def test_constant_factors_that_would_round_are_not_merged():
    f = lambda x: np.sum(np.sin(0.3 * (0.7 * x)))
    assert ops(simplify(cr.trace(f, normal(4))))["mul"] == 2


def test_division_by_three_is_not_a_multiplication_by_a_rounded_third():
    f = lambda x: np.sum(np.sin(x / 3.0))
    assert "div" in ops(simplify(cr.trace(f, normal(4))))


# ---- fold and CSE ------------------------------------------------------------------------------


def test_fold_evaluates_constant_subgraphs_with_the_ops_own_lowering():
    table = np.linspace(0.0, 1.0, 5)
    f = lambda x: np.sum(x * np.exp(np.sin(table)))
    folded = fold(cr.trace(f, normal(5)))
    assert ops(folded)["exp"] == 0 and ops(folded)["sin"] == 0
    constant = next(folded[i] for i in folded.live_nodes() if folded[i].op == "const" and folded.type(i).size == 5)
    np.testing.assert_array_equal(constant.params["value"].array, np.exp(np.sin(table)))


def test_fold_does_not_grow_a_scalar_into_a_big_constant():
    graph = cr.Graph("f")
    x = graph.add_input(TensorType((1000,), "float64"), "x")
    spread = graph.add("broadcast_to", (graph.const(2.0),), {"shape": (1000,)})
    graph.set_outputs([graph.add("sin", (graph.add("mul", (x, graph.add("exp", (spread,)))),))])
    folded = fold(graph)
    assert ops(folded)["exp"] == 0  # exp(broadcast(2)) folds to broadcast(exp(2)) ...
    assert all(folded.type(i).size == 1 for i in folded.live_nodes() if folded[i].op == "const")


def test_the_gradient_of_a_trace_is_a_folded_constant_and_a_too_big_one_is_not():
    """einsum('ii->', A)'s gradient scatters ones into a zero matrix: folded up to MAX_GROWN_ELEMENTS
    (the call then copies a constant), recomputed beyond it."""
    for n, folds in ((16, True), (80, False)):
        gradient = cr.grad(lambda a: np.einsum("ii->", a))
        a = normal(n, n)
        assert ("scatter_add" not in gradient.source(a)) is folds
        np.testing.assert_array_equal(gradient(a), np.eye(n))


def test_a_bad_constant_index_is_left_for_the_call_to_report():
    graph = cr.Graph("f")
    values = graph.const(np.ones(4))
    rows, columns = graph.const(np.array([0, 1, 2, 3])), graph.const(np.array([0, 2, 1, 2]))
    index, params = (("array", 0), ("array", 1)), {"shape": (3, 4), "dtype": "float64", "unique": False}
    graph.set_outputs([graph.add("scatter_add", (values, rows, columns), {"index": index, **params})])
    assert ops(fold(graph))["scatter_add"] == 1


def test_a_replacement_is_simplified_in_the_same_walk():
    # m + -m becomes m - m (add_of_neg), which is 0 because a mask is never inf or NaN
    # (sub_identities): the second rewrite applies to the first one's result, in one walk
    f = lambda z: np.sum(np.where(z > 0, 1.0, 0.0) + -np.where(z > 0, 1.0, 0.0))
    graph, fired = rebuild(cr.trace(f, normal(4)), simplify_rule)
    assert fired >= 2 and ops(graph)["sub"] == 0 and ops(graph)["add"] == 0
    assert rebuild(graph, simplify_rule)[1] == 0  # the fixed point
    assert len(graph.live_nodes()) == len(graph)  # what the rules left dead is gone


def _operand_pool(graph: Graph) -> list[int]:
    """Operands of many kinds, as the rules' patterns see them: inputs, constants (0, 1, -1, powers of
    two, others), zeros, negations, products with a constant, exp(-x), 1 + exp(-x), -sigmoid(x), a mask,
    a broadcast scalar, a scatter into zeros."""
    f64 = TensorType((3,), "float64")
    x, y = graph.add_input(f64, "x"), graph.add_input(f64, "y")
    constants = [graph.const(np.full((3,), c)) for c in (0.0, 1.0, -1.0, 2.0, 0.5, 3.0)]
    scalars = [graph.const(c) for c in (0.0, 1.0, -1.0, 2.0, 3.0)]
    exp_neg = graph.add("exp", (graph.add("neg", (x,)),))
    mask = graph.add("cast", (graph.add("gt", (x, y)),), {"dtype": "float64"})
    scalar = graph.add_input(TensorType((), "float64"), "s")
    return [
        x,
        y,
        *constants,
        *scalars,
        graph.zeros(f64),
        graph.add("neg", (x,)),
        graph.add("neg", (y,)),
        graph.add("mul", (scalars[3], x)),
        graph.add("mul", (x, y)),
        exp_neg,
        graph.add("add", (scalars[1], exp_neg)),
        graph.add("sigmoid", (x,)),
        graph.add("neg", (graph.add("sigmoid", (x,)),)),
        mask,
        graph.add("broadcast_to", (scalar,), {"shape": (3,)}),
        graph.add("scatter_add", (graph.add("getitem", (x,), FIRST_TWO),), {**FIRST_TWO, **SCATTER_INTO_THREE}),
    ]


FIRST_TWO = {"index": (("slice", 0, 2, None),)}
SCATTER_INTO_THREE = {"shape": (3,), "dtype": "float64", "unique": True}
# the parameters of the ops whose rules the test below builds nodes of, where they have some
RULE_TEST_PARAMS = {"getitem": {"index": (("slice", 1, 3, None),)}}


GUARDED_RULES = sorted({(op, rule.name) for rule in SIMPLIFY.rules if rule.any_operand is not None for op in rule.ops})


@pytest.mark.parametrize("op,rule_name", GUARDED_RULES)
def test_a_rule_fires_only_where_its_declared_operand_ops_are(op, rule_name):
    # the engine runs a rule declared with any_operand=... only on nodes with an operand of those
    # ops: every node the rule does rewrite must have one
    rule = next(r for r in SIMPLIFY.rules if r.name == rule_name)
    graph = Graph("pool")
    pool = _operand_pool(graph)
    params = RULE_TEST_PARAMS.get(op, {})
    unary = OPS[op].arity == 1 or op == "getitem"
    operand_lists = [(a,) for a in pool] if unary else [(a, b) for a in pool for b in pool]
    fired = 0
    for args in operand_lists:
        try:
            node_id = graph.add(op, args, params)
        except ShapeError:  # a scalar where matmul or a slice needs an axis
            continue
        node = graph[node_id]
        if node.op != op or node.args != args:
            continue  # rewritten as it was built (x * 1): not a node the rules see
        if rule.rewrite(graph, node, args) is not None:
            fired += 1
            operand_ops = [graph[a].op for a in args]
            assert not rule.any_operand.isdisjoint(operand_ops), (
                f"{rule_name} rewrites {op} of {operand_ops}, but looks only for {sorted(rule.any_operand)}"
            )
    assert fired > 0


def test_reverse_mode_builds_a_simplified_backward_pass():
    f = lambda x: np.sum(x * x)
    forward = simplify(cr.trace(f, normal(3)))
    joint = dce(reverse(forward, [0], rewriter=simplify_rule))
    assert rebuild(joint, simplify_rule)[1] == 0
    raw = reverse(forward, [0])
    assert rebuild(raw, simplify_rule)[1] > 0  # x * x sends g * x twice: x + x, which is 2 * x
    assert ops(joint)["add"] == 0 and ops(raw)["add"] == 1


def test_cse_merges_a_product_written_in_both_orders():
    f = lambda a, b: np.sum(np.sin(a * b) + np.cos(b * a))
    merged = cse(cr.trace(f, normal(4), normal(4)))
    assert ops(merged)["mul"] == 1
    np.testing.assert_allclose(cr.jit(f)(normal(4), normal(4)) * 0, 0)


def test_cse_keeps_the_users_operand_order_when_there_is_no_duplicate():
    f = lambda x, W, b: np.sum(x @ W + b)
    graph = cse(cr.trace(f, normal(2, 3), normal(3, 4), normal(4)))
    add = next(graph[i] for i in graph.live_nodes() if graph[i].op == "add")
    assert graph[add.args[0]].op == "matmul"


def test_hash_consing_merges_repeated_expressions_at_trace_time():
    f = lambda x: np.sum(np.sin(x) * np.sin(x))
    assert ops(cr.trace(f, normal(3)))["sin"] == 1


# ---- stability: what the rewrites are for -------------------------------------------------------


def naive_bce(z, y):
    a = 1 / (1 + np.exp(-z))
    return -np.mean(y * np.log(a) + (1 - y) * np.log(1 - a))


def exact_bce(z, y):
    """The same loss through log(sigmoid(z)) = -log1p(exp(-z)), in float64 with no overflow."""
    return np.mean(y * np.logaddexp(0, -z) + (1 - y) * np.logaddexp(0, z))


def test_bce_through_a_hand_written_sigmoid_is_finite_and_correct_at_logits_plus_minus_40():
    z = np.array([-40.0, -20.0, 0.5, 20.0, 40.0])
    y = np.array([1.0, 0.0, 1.0, 1.0, 0.0])
    with np.errstate(all="ignore"):
        assert not np.isfinite(naive_bce(z, y))  # NumPy as written: log(1 - 1.0) = -inf
        naive_gradient = cr.grad(naive_bce, optimize=False)(z, y)
    assert not np.all(np.isfinite(naive_gradient))
    value, gradient = cr.value_and_grad(naive_bce)(z, y)
    assert value == pytest.approx(exact_bce(z, y), rel=1e-14)
    # d/dz of the mean BCE is (sigmoid(z) - y) / n, computed here without cancellation. chainrule's
    # symbolic pass gives the textbook's (and PyTorch's) a - y, exact to an ulp of 1 (absolute):
    # at z = 20, y = 1 that is 2e-9 with 8 correct digits.
    expected = (np.where(y == 1, -scipy_expit(-z), scipy_expit(z))) / len(z)
    np.testing.assert_allclose(gradient, expected, rtol=1e-14, atol=2.3e-16 / len(z))
    assert "sub(sigmoid(" in cr.grad(naive_bce).ir(z, y)


def scipy_expit(x):
    import scipy.special

    return scipy.special.expit(x)


def naive_softmax_cross_entropy(z, onehot):
    p = np.exp(z) / np.sum(np.exp(z), axis=1, keepdims=True)
    return -np.sum(onehot * np.log(p)) / z.shape[0]


def test_softmax_cross_entropy_written_naively_is_finite_and_correct_at_logits_plus_minus_1000():
    z = np.array([[1000.0, -1000.0, 0.0], [-1000.0, 999.0, 1000.0], [0.5, -0.25, 1.0]])
    onehot = np.eye(3)[[0, 1, 2]]
    with np.errstate(all="ignore"):
        assert not np.isfinite(naive_softmax_cross_entropy(z, onehot))  # exp(1000) = inf
        assert not np.all(np.isfinite(cr.grad(naive_softmax_cross_entropy, optimize=False)(z, onehot)))
    value, gradient = cr.value_and_grad(naive_softmax_cross_entropy)(z, onehot)
    shifted = z - z.max(axis=1, keepdims=True)
    log_softmax = shifted - np.log(np.sum(np.exp(shifted), axis=1, keepdims=True))
    assert value == pytest.approx(-np.sum(onehot * log_softmax) / 3, rel=1e-14)
    np.testing.assert_allclose(gradient, (np.exp(log_softmax) - onehot) / 3, rtol=1e-13, atol=1e-300)


def test_log_sum_exp_written_naively_does_not_overflow():
    f = lambda z: np.log(np.sum(np.exp(z)))
    z = np.array([1000.0, 999.0, -5.0])
    assert cr.jit(f)(z) == pytest.approx(1000.0 + np.log1p(np.exp(-1.0) + np.exp(-1005.0)), rel=1e-15)
    np.testing.assert_allclose(cr.grad(f)(z), np.exp(z - 1000.0) / np.sum(np.exp(z - 1000.0)), rtol=1e-14)


def test_log_of_exp_does_not_overflow():
    assert cr.grad(lambda x: np.sum(np.log(np.exp(x))))(np.array([800.0]))[0] == 1.0
