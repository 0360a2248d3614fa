"""The one rewrite engine (ir/rewrite.py): rules as data, one driver, the sets the compiler uses."""

import numpy as np
import pytest

import chainrule as cr
from chainrule.compiler.rewrite import rebuild
from chainrule.compiler.simplify import SIMPLIFY, simplify
from chainrule.compiler.stability import STABILITY
from chainrule.ir import OPS, Graph
from chainrule.ir.canonical import CANONICAL
from chainrule.ir.rewrite import EVERY_OP, KINDS, RuleSet
from chainrule.ir.types import TensorType

F64 = TensorType((3,), "float64")


def _counting_rules(log):
    rules = RuleSet("test")

    @rules.rule("neg", any_operand=["neg"])
    def neg_of_neg(graph, node, args):
        log.append("neg_of_neg")
        return graph[args[0]].args[0] if graph[args[0]].op == "neg" else None

    @rules.rule(EVERY_OP, every_operand=["const"])
    def never(graph, node, args):
        log.append("never")
        return None

    @rules.rule("neg", "exp")
    def last(graph, node, args):
        log.append("last")
        return None

    return rules


def test_the_driver_tries_a_rule_only_where_its_operand_condition_holds():
    log = []
    graph = Graph("g")
    x = graph.add_input(F64, "x")
    with graph.rewriting(_counting_rules(log)):
        minus_x = graph.add("neg", (x,))
        assert log == ["last"]  # neg_of_neg needs a neg operand, never needs only constants
        log.clear()
        assert graph.add("neg", (minus_x,)) == x
        assert log == ["neg_of_neg"]  # the first replacement wins
        log.clear()
        graph.add("exp", (graph.const(np.ones(3)),))
        assert log == ["never", "last"]


def test_rules_of_an_op_come_in_declaration_order_and_sets_compose():
    rules = _counting_rules([])
    assert [r.name for r in rules.for_op("neg")] == ["neg_of_neg", "never", "last"]
    assert [r.name for r in rules.for_op("sin")] == ["never"]
    combined = RuleSet("both", [*rules.rules, *STABILITY.rules])
    assert [r.name for r in combined.for_op("log")] == ["never", "stable_log"]


def test_a_rule_kind_is_declared_and_sets_select_by_kind():
    with pytest.raises(ValueError, match="kind"):
        RuleSet("bad").rule("neg", kind="fast-math")
    assert {r.kind for r in SIMPLIFY.rules} == set(KINDS)
    assert {r.name for r in SIMPLIFY.of_kind("stability").rules} == {r.name for r in STABILITY.rules}
    assert all(r.kind == "exact" for r in CANONICAL.rules)  # construction may change no result


def test_every_rule_names_real_ops():
    for rules in (CANONICAL, SIMPLIFY):
        for rule in rules.rules:
            unknown = rule.ops - set(OPS) - {EVERY_OP}
            assert not unknown, f"{rules.name}: {rule.name} rewrites unknown ops {unknown}"
            for condition in (rule.any_operand, rule.every_operand):
                assert condition is None or condition <= set(OPS), f"{rule.name}: {condition}"


def test_the_canonical_set_runs_as_every_node_is_built():
    graph = Graph("g")
    x = graph.add_input(F64, "x")
    assert graph.add("mul", (x, graph.const(1.0))) == x
    assert graph.add("add", (graph.const(0.0), x)) == x
    two = graph.add("add", (graph.const(1.0), graph.const(1.0)))
    assert graph[two].op == "const" and graph.const_value(two) == 2.0
    assert [graph[i].op for i in range(len(graph))] == ["input", "const", "const", "const"]  # x, 1, 0, 2


def test_only_the_stability_rules_make_log_of_sigmoid_finite():
    def model(z):
        return np.sum(np.log(1.0 / (1.0 + np.exp(-z))))

    z = np.array([-800.0, 0.0, 3.0])
    traced = cr.trace(model, z)
    exact_only = RuleSet("no stability", [r for r in SIMPLIFY.rules if r.kind != "stability"])
    unstable = rebuild(traced, exact_only)[0]
    stable = simplify(traced)
    assert "softplus" in {node.op for node in stable.nodes}
    assert "softplus" not in {node.op for node in unstable.nodes}
    assert np.isfinite(cr.jit(model)(z))
    with np.errstate(all="ignore"):
        assert not np.isfinite(model(z))  # NumPy, running the program as written, gives -inf
