"""SymPy is the source of truth for every elementwise derivative (DESIGN.md, "The symbolic half").

Each op's declared VJP rule is built on a tiny graph of scalar inputs, turned
into a SymPy expression with ``to_sympy``'s converter, and compared with
``g * sympy.diff(definition, operand)``: symbolically where ``sympy.simplify``
decides it, otherwise at many random points to 1e-13. The kink conventions,
where a derivative is a choice rather than a fact, are tested on their own.
"""

import numpy as np
import pytest
import sympy as sp

import chainrule as cr
import chainrule.nn
from chainrule.ir import OPS, Graph, TensorType, Value
from chainrule.ir.sympy_export import graph_to_sympy

RULES = [(name, position) for name, op in sorted(OPS.items())
         if op.is_elementwise and op.vjp is not None
         for position in range(op.arity) if op.vjp_rule(position) is not None]

# Where simplify cannot show the difference is 0, and why; these are checked at random points.
UNDECIDED_BY_SIMPLIFY = {
    ("erf", 0): "the rule holds 2/sqrt(pi) as a float64 constant",
    ("maximum", 0): "sympy.diff gives Heaviside(a - b), the rule a Piecewise",
    ("maximum", 1): "sympy.diff gives Heaviside(b - a), the rule a Piecewise",
    ("minimum", 0): "sympy.diff gives Heaviside(b - a), the rule a Piecewise",
    ("minimum", 1): "sympy.diff gives Heaviside(a - b), the rule a Piecewise",
    ("clip", 0): "Heavisides of Max and Min against a nested Piecewise",
    ("clip", 1): "Heavisides of Max and Min against a Piecewise",
    ("clip", 2): "Heavisides of Max and Min against a Piecewise",
}

# Where to draw random points: inside each op's real domain, away from its poles.
DOMAINS = {
    "log": [(0.05, 4.0)], "sqrt": [(0.05, 4.0)], "log1p": [(-0.95, 4.0)],
    "arcsin": [(-0.95, 0.95)], "arccos": [(-0.95, 0.95)], "arctanh": [(-0.95, 0.95)],
    "arccosh": [(1.05, 4.0)], "tan": [(-1.4, 1.4)],
    "pow": [(0.05, 3.0), (-2.5, 2.5)], "div": [(-3.0, 3.0), (0.2, 3.0)],
    "clip": [(-3.0, 3.0), (-2.0, -0.1), (0.1, 2.0)],  # lo <= hi; lo > hi is tested at the end
}
POINTS = 200

# Real identities SymPy needs the domain for: sqrt(a**2 - 1) = sqrt(a - 1) sqrt(a + 1) only for a >= 1.
_P = sp.Symbol("p", positive=True)
ON_DOMAIN = {"arccosh": lambda a0, *_: {a0: 1 + _P}}


def rule_and_derivative(name, position):
    """(the rule as SymPy, g * sympy.diff of the definition, the symbols) for one operand of one op."""
    op = OPS[name]
    graph = Graph(name)
    attrs = {"dtype": "float32"} if name == "cast" else {}
    operand_types = ["bool" if (name == "where" and i == 0) else "float64" for i in range(op.arity)]
    operands = [graph.add_input(TensorType((), dtype), f"a{i}") for i, dtype in enumerate(operand_types)]
    g = graph.add_input(TensorType((), "float64"), "g")
    y = graph.add(name, operands, attrs)
    rule = op.vjp_rule(position)(Value(graph, g), Value(graph, y), *(Value(graph, a) for a in operands), **attrs)
    symbols = [sp.Symbol(f"a{i}") if t == "bool" else sp.Symbol(f"a{i}", real=True)
               for i, t in enumerate(operand_types)]
    g_symbol = sp.Symbol("g", real=True)
    (rule_expression,) = graph_to_sympy(graph, [rule.id], symbols + [g_symbol])
    derivative = g_symbol * sp.diff(op.sympy(*symbols), symbols[position])
    return rule_expression, derivative, symbols + [g_symbol], operand_types


def random_points(name, operand_types, rng):
    domains = DOMAINS.get(name, [])
    columns = []
    for i, dtype in enumerate(operand_types):
        if dtype == "bool":
            columns.append(rng.random(POINTS) < 0.5)
        else:
            low, high = domains[i] if i < len(domains) else (-3.0, 3.0)
            columns.append(rng.uniform(low, high, POINTS))
    if name in ("maximum", "minimum"):
        columns[1][::4] = columns[0][::4]  # every fourth point a tie
    columns.append(rng.uniform(-2.0, 2.0, POINTS))  # the cotangent g
    return list(zip(*columns))


def test_every_differentiable_elementwise_op_is_covered():
    names = {name for name, _ in RULES}
    assert {"sin", "tanh", "sigmoid", "relu", "maximum", "clip", "pow", "where"} <= names
    assert set(UNDECIDED_BY_SIMPLIFY) <= set(RULES)


@pytest.mark.parametrize("name,position", RULES, ids=[f"{n}-{p}" for n, p in RULES])
def test_declared_rule_equals_sympy_diff_of_the_definition(name, position):
    rule, derivative, symbols, operand_types = rule_and_derivative(name, position)
    on_domain = ON_DOMAIN.get(name, lambda *_: {})(*symbols)
    if sp.simplify((rule - derivative).subs(on_domain)) == 0:
        assert (name, position) not in UNDECIDED_BY_SIMPLIFY, "simplify decides it now: drop it from the list"
        return
    assert (name, position) in UNDECIDED_BY_SIMPLIFY, f"simplify(rule - diff) = {sp.simplify(rule - derivative)}"
    rng = np.random.default_rng(sum(map(ord, name)) + position)
    for point in random_points(name, operand_types, rng):
        values = {s: (sp.true if v else sp.false) if isinstance(v, (bool, np.bool_)) else sp.Float(float(v), 30)
                  for s, v in zip(symbols, point)}
        expected = complex(derivative.subs(values).evalf(30))
        got = complex(rule.subs(values).evalf(30))
        assert abs(got - expected) <= 1e-13 * max(1.0, abs(expected)), (name, position, point, got, expected)


# ---- the declared forms that reuse the op's output are kept (they are cheaper) -------------

@pytest.mark.parametrize("name", ["sigmoid", "tanh", "tan", "exp", "sqrt", "expm1"])
def test_cheap_rules_are_written_with_the_ops_own_output(name):
    graph = Graph(name)
    x = graph.add_input(TensorType((), "float64"), "x")
    g = graph.add_input(TensorType((), "float64"), "g")
    y = graph.add(name, (x,))
    rule = OPS[name].vjp_rule(0)(Value(graph, g), Value(graph, y), Value(graph, x))
    reached, stack = set(), [rule.id]
    while stack:
        node = stack.pop()
        if node not in reached:
            reached.add(node)
            stack.extend(graph[node].args)
    assert y in reached  # sigmoid' = y(1 - y), tanh' = 1 - y**2, tan' = 1 + y**2, exp' = y
    assert not any(graph[n].op == name for n in reached if n != y)  # ... and never recomputes y


# ---- kink conventions (elementwise.py's docstring) -------------------------------------------

def test_relu_derivative_at_zero_is_zero_like_the_seeds_mask_and_sympys_piecewise():
    x = np.array([-1.0, 0.0, 2.0])
    np.testing.assert_array_equal(cr.grad(lambda x: np.sum(np.maximum(0, x)))(x), [0.0, 0.0, 1.0])
    np.testing.assert_array_equal(cr.grad(lambda x: np.sum(cr.nn.relu(x)))(x), [0.0, 0.0, 1.0])
    t = sp.Symbol("t", real=True)
    assert sp.diff(OPS["relu"].sympy(t), t).subs(t, 0) == 0


def test_abs_derivative_at_zero_is_zero_which_is_sympys_sign_of_zero():
    x = np.array([-2.0, 0.0, 3.0])
    np.testing.assert_array_equal(cr.grad(lambda x: np.sum(np.abs(x)))(x), [-1.0, 0.0, 1.0])
    t = sp.Symbol("t", real=True)
    assert sp.diff(sp.Abs(t), t).subs(t, 0) == 0


@pytest.mark.parametrize("function", [np.maximum, np.minimum])
def test_maximum_and_minimum_split_the_gradient_evenly_on_ties_as_heaviside_of_zero_is_one_half(function):
    a = np.array([1.0, 2.0, 3.0])
    b = np.array([2.0, 2.0, 2.0])
    da, db = cr.grad(lambda a, b: np.sum(function(a, b)), (0, 1))(a, b)
    if function is np.maximum:
        np.testing.assert_array_equal(da, [0.0, 0.5, 1.0])
        np.testing.assert_array_equal(db, [1.0, 0.5, 0.0])
    else:
        np.testing.assert_array_equal(da, [1.0, 0.5, 0.0])
        np.testing.assert_array_equal(db, [0.0, 0.5, 1.0])
    assert sp.Heaviside(0) == sp.Rational(1, 2)  # SymPy's derivative of Max at a tie agrees


def test_clip_passes_the_gradient_to_x_on_the_closed_interval_and_to_a_bound_only_outside_it():
    x = np.array([-2.0, -1.0, 0.0, 1.0, 2.0])
    lo, hi = np.full(5, -1.0), np.full(5, 1.0)
    dx, dlo, dhi = cr.grad(lambda x, lo, hi: np.sum(np.clip(x, lo, hi)), (0, 1, 2))(x, lo, hi)
    np.testing.assert_array_equal(dx, [0.0, 1.0, 1.0, 1.0, 0.0])  # x == lo and x == hi count as inside
    np.testing.assert_array_equal(dlo, [1.0, 0.0, 0.0, 0.0, 0.0])
    np.testing.assert_array_equal(dhi, [0.0, 0.0, 0.0, 0.0, 1.0])


def test_sign_and_comparisons_have_zero_gradient():
    x = np.array([-1.0, 0.0, 1.0])
    np.testing.assert_array_equal(cr.grad(lambda x: np.sum(np.sign(x) * 3.0))(x), [0.0, 0.0, 0.0])
    np.testing.assert_array_equal(cr.grad(lambda x: np.sum(np.where(x > 0, 1.0, 2.0)))(x), [0.0, 0.0, 0.0])


def test_pow_derivative_in_the_exponent_is_zero_where_the_power_is_zero():
    # d/db a**b = a**b log(a) -> 0 as a -> 0+ for b > 0; the rule gives that limit, not 0 * -inf = nan
    a, b = np.array([0.0, 2.0]), np.array([1.5, 1.5])
    with np.errstate(divide="ignore", invalid="ignore"):  # log(0) is computed, then masked
        db = cr.grad(lambda a, b: np.sum(a ** b), 1)(a, b)
    np.testing.assert_allclose(db, [0.0, 2.0 ** 1.5 * np.log(2.0)], rtol=1e-15)


def test_clip_with_lo_above_hi_sends_the_gradient_to_hi_as_sympy_diff_does():
    x, lo, hi = np.array([0.0]), np.array([2.0]), np.array([1.0])
    dx, dlo, dhi = cr.grad(lambda x, lo, hi: np.sum(np.clip(x, lo, hi)), (0, 1, 2))(x, lo, hi)
    np.testing.assert_array_equal([dx[0], dlo[0], dhi[0]], [0.0, 0.0, 1.0])
