"""``cr.to_sympy`` and ``cr.from_sympy``: SymPy expressions out of graphs and back into functions."""

import sys

import numpy as np
import pytest
import sympy as sp

import chainrule as cr
from chainrule.compiler.autodiff import reverse
from chainrule.ir import OPS
from chainrule.ir.sympy_bridge import OPAQUE_FUNCTIONS, op_of_head, ops_of_sympy_heads

x, y = sp.symbols("x y", real=True)


def small_function(m):
    """One function, written for NumPy (m = np) and for SymPy (m = sp) alike."""
    return lambda x, y: m.sin(x) * y + m.exp(x * y) / (1 + x**2) - m.tanh(y) * m.log(1 + y * y)


def structurally_equal(a, b) -> bool:
    """a == b for expressions of any depth (SymPy's == recurses), comparing node by node."""
    stack = [(a, b)]
    while stack:
        p, q = stack.pop()
        if p is q:
            continue
        if p.func != q.func or len(p.args) != len(q.args) or (not p.args and p != q):
            return False
        stack.extend(zip(p.args, q.args))
    return True


def nested(symbol, depth, evaluate=True):
    """cos(tan(sin(...))) ``depth`` times, as in seed 001 (unevaluated: SymPy cannot evaluate it deep)."""
    expression = symbol
    for _ in range(depth):
        expression = sp.cos(sp.tan(sp.sin(expression, evaluate=evaluate), evaluate=evaluate), evaluate=evaluate)
    return expression


# ---- to_sympy ---------------------------------------------------------------------------------


def test_to_sympy_of_a_traced_function_is_its_formula_in_real_symbols_named_after_the_arguments():
    expression = cr.to_sympy(small_function(np), 0.3, 0.7)  # Python floats are variables here
    assert expression == small_function(sp)(x, y)


def test_to_sympy_of_the_gradient_graph_simplifies_to_sympy_diff():
    f = small_function(np)
    dx, dy = cr.to_sympy(cr.grad(f, (0, 1)), 0.3, 0.7)
    reference = small_function(sp)(x, y)
    assert sp.simplify(dx - sp.diff(reference, x)) == 0
    assert sp.simplify(dy - sp.diff(reference, y)) == 0


def test_to_sympy_of_value_and_grad_gives_the_value_then_the_gradient():
    value, gradient = cr.to_sympy(cr.value_and_grad(lambda x: x * np.exp(x)), 1.0)
    assert value == x * sp.exp(x)
    assert sp.simplify(gradient - (x + 1) * sp.exp(x)) == 0


def test_to_sympy_of_a_graph_and_of_elementwise_arrays():
    graph = cr.trace(lambda a, b: np.maximum(a, b) * np.sqrt(a), np.ones(3), np.ones(3))
    a, b = sp.symbols("a b", real=True)
    assert cr.to_sympy(graph) == sp.Max(a, b) * sp.sqrt(a)
    # broadcasting and the sum autodiff adds for it are the identity per element
    gradient = cr.to_sympy(cr.grad(lambda a: np.sum(np.sin(a) * 2.0)), np.ones(4))
    assert gradient == 2 * sp.cos(a)


def test_to_sympy_takes_symbols_by_position_or_by_name():
    u, v = sp.symbols("u v")
    assert cr.to_sympy(lambda x, y: x / y, 1.0, 2.0, symbols=[u, v]) == u / v
    assert cr.to_sympy(lambda x, y: x / y, 1.0, 2.0, symbols={"y": v}) == x / v


def test_to_sympy_refuses_what_mixes_elements():
    with pytest.raises(cr.UnsupportedError, match="matmul"):
        cr.to_sympy(lambda w: np.sum(w @ w), np.ones((2, 2)))


# ---- from_sympy --------------------------------------------------------------------------------

ROUND_TRIPS = [
    x * y + 3,
    x**2 - 2 * x * y / 3 + sp.Rational(1, 4),
    sp.sin(x) * sp.cos(y) - sp.tan(x * y),
    sp.exp(-(x**2)) / (1 + sp.exp(y)),
    sp.log(1 + x**2) + sp.sqrt(y**2 + 1),
    1 / sp.sqrt(x**2 + y**2 + 1),
    sp.Abs(x - y) + sp.sign(x),
    sp.Max(x, y) - sp.Min(x, 2 * y),
    sp.Piecewise((x, x > y), (y**2, True)),
    sp.atan(x) + sp.asinh(y) + sp.erf(x * y) + sp.sinh(x) * sp.cosh(y),
    (x**2 + 1) ** y,
]


@pytest.mark.parametrize("expression", ROUND_TRIPS, ids=[str(e) for e in ROUND_TRIPS])
def test_from_sympy_round_trips_through_to_sympy(expression):
    f = cr.from_sympy(expression, [x, y])
    assert cr.to_sympy(f) == expression


@pytest.mark.parametrize("expression", ROUND_TRIPS, ids=[str(e) for e in ROUND_TRIPS])
def test_grad_of_a_from_sympy_function_matches_sympy_diff(expression):
    f = cr.from_sympy(expression, [x, y])
    gradient = cr.grad(f, (0, 1))
    away_from_kinks = {"DiracDelta": lambda v: 0.0}  # sign' off 0; the points below avoid the kinks
    derivatives = [sp.lambdify((x, y), sp.diff(expression, s), [away_from_kinks, "numpy"]) for s in (x, y)]
    rng = np.random.default_rng(1)
    for a, b in rng.uniform(-2.0, 2.0, (20, 2)):
        if abs(a - b) < 1e-3 or abs(a - 2 * b) < 1e-3 or abs(a) < 1e-3:
            continue  # at a kink SymPy's and chainrule's conventions are tested in test_sympy_rules
        got = gradient(np.float64(a), np.float64(b))
        for got_one, derivative in zip(got, derivatives):
            assert got_one == pytest.approx(float(derivative(a, b)), rel=1e-12, abs=1e-14)


def test_irrational_constants_become_their_float64_values_and_come_back_as_those():
    f = cr.from_sympy(sp.pi * x - sp.E * y, [x, y])
    assert cr.to_sympy(f) == sp.Float(float(sp.pi)) * x - sp.Float(float(sp.E)) * y


def test_from_sympy_functions_run_eagerly_and_under_jit_on_arrays():
    expression = sp.sin(x) * sp.exp(y) + sp.Max(x, y)
    f = cr.from_sympy(expression, [x, y])
    a, b = np.linspace(-2.0, 2.0, 7), np.linspace(1.0, -1.0, 7)
    expected = sp.lambdify((x, y), expression, "numpy")(a, b)
    np.testing.assert_allclose(f(a, b), expected, rtol=1e-15)
    np.testing.assert_allclose(cr.jit(f)(a, b), expected, rtol=1e-15)


def test_from_sympy_names_parameters_after_the_symbols_and_keeps_the_expression():
    f = cr.from_sympy(x * y, [x, y])
    assert "def sympy_fn(x: f64[], y: f64[])" in str(cr.trace(f, np.float64(1.0), np.float64(2.0)))
    assert f.expr == x * y and f.symbols == (x, y)


def test_from_sympy_of_several_expressions_returns_a_tuple():
    f = cr.from_sympy([x + y, x * y], [x, y])
    assert f(2.0, 3.0) == (5.0, 6.0)


def test_from_sympy_says_what_it_cannot_translate():
    with pytest.raises(cr.UnsupportedError, match="free symbol y"):
        cr.from_sympy(x + y, [x])
    with pytest.raises(cr.UnsupportedError, match="airyai"):
        cr.from_sympy(sp.airyai(x), [x])
    with pytest.raises(cr.UnsupportedError, match="imaginary unit"):
        cr.from_sympy(x + sp.I, [x])
    with pytest.raises(cr.UnsupportedError, match="not a real number"):
        cr.from_sympy(sp.zoo * x, [x])


# Expressions of one SymPy function, and the op the op table defines by that function (written out here)
ONE_FUNCTION = [
    (sp.sin(x), "sin"),
    (sp.tan(x), "tan"),
    (sp.atanh(x), "arctanh"),
    (sp.Abs(x), "abs"),
    (sp.sign(x), "sign"),
    (sp.erf(x), "erf"),
    (sp.erfc(x), "erfc"),
    (sp.Max(x, y), "maximum"),
    (sp.Min(x, y), "minimum"),
    (x < y, "lt"),
    (sp.Ne(x, y), "ne"),
    (sp.Not(x > y, evaluate=False), "logical_not"),
    (sp.And(x > 0, y > 0), "logical_and"),
]


@pytest.mark.parametrize("expression, op", ONE_FUNCTION, ids=[op for _, op in ONE_FUNCTION])
def test_a_sympy_function_that_defines_an_op_becomes_that_op(expression, op):
    graph = cr.trace(cr.from_sympy(expression, [x, y]), np.float64(0.5), np.float64(0.25))
    assert graph[graph.outputs[0]].op == op


WITHOUT_A_PRIMITIVE = [
    sp.sec(x) + sp.csc(y) - sp.cot(x * y),
    sp.sech(x) * sp.csch(y) + sp.coth(x),
    sp.Heaviside(x - y) + 2 * sp.Heaviside(x, 0.25),
    sp.Max(x, y, 0.75) - sp.Min(x, y, -0.5),
    sp.Piecewise((x, sp.And(x > 0, y > 0, x < 1)), (y, sp.Or(x < -1, y < -1)), (x * y, True)),
    sp.Piecewise((x, x > 0)),  # NaN where no condition holds
    x**-2 + y ** sp.Rational(-1, 2) + (x * x) ** y,
]


@pytest.mark.parametrize("expression", WITHOUT_A_PRIMITIVE, ids=[str(e) for e in WITHOUT_A_PRIMITIVE])
def test_sympy_functions_without_a_primitive_are_built_from_ones_with_one(expression):
    f = cr.from_sympy(expression, [x, y])
    a, b = np.linspace(-1.7, 1.9, 9), np.linspace(1.3, -1.5, 9)
    expected = [complex(expression.subs({x: p, y: q}).evalf()) for p, q in zip(a, b)]
    expected = np.array([e.real if e.imag == 0 else np.nan for e in expected])  # NaN off the real domain
    with np.errstate(all="ignore"):
        np.testing.assert_allclose(f(a, b), expected, rtol=1e-13)
        np.testing.assert_allclose(cr.jit(f)(a, b), expected, rtol=1e-13)


def test_heaviside_at_zero_is_sympys_value_there():
    assert cr.from_sympy(sp.Heaviside(x), [x])(np.array([-1.0, 0.0, 2.0])).tolist() == [0.0, 0.5, 1.0]
    assert cr.from_sympy(sp.Heaviside(x, 0.25), [x])(0.0) == 0.25


def test_from_sympy_constants_take_the_arguments_dtype():
    f = cr.from_sympy(2 * x / 3 + sp.pi, [x])
    assert f(np.ones(3, np.float32)).dtype == np.float32


# ---- depth: no recursion over the expression ---------------------------------------------------


def test_a_10000_deep_expression_converts_both_ways_without_recursion():
    assert sys.getrecursionlimit() <= 10_000  # a recursive walk would need about 30,000
    expression = nested(x, 10_000, evaluate=False)
    f = cr.from_sympy(expression, [x])
    graph = cr.trace(f, np.float64(4.2))
    assert len(graph) >= 30_000
    assert structurally_equal(cr.to_sympy(graph, symbols=[x]), expression)


def test_the_gradient_of_a_1000_deep_nest_goes_to_sympy_and_back_to_the_same_number():
    def f(v):
        for _ in range(1000):
            v = np.cos(np.tan(np.sin(v)))
        return v

    joint = reverse(cr.trace(f, np.float64(4.2)), [0])
    _, gradient_expression = cr.to_sympy(joint, symbols=[x])
    evaluate = cr.from_sympy(gradient_expression, [x])
    # the same primitives in the same order, so the same float64 result (seed 001's mpmath reference
    # for this number is in test_nested.py)
    assert evaluate(4.2) == pytest.approx(1.2342016791388903e-77, rel=1e-12)


def test_a_gradient_graph_with_much_sharing_converts_in_time_linear_in_the_graph():
    # Each level uses x three times, so the gradient's expression *tree* doubles with every level
    # (about 2**40 nodes here) while the graph grows by a constant: to_sympy must follow the graph.
    def f(v):
        for _ in range(40):
            v = np.cos(np.tan(np.sin(v))) * v + np.exp(-v) / (1 + v * v)
        return v

    x0 = np.float64(0.3)
    _, gradient_expression = cr.to_sympy(reverse(cr.trace(f, x0), [0]), symbols=[x])
    assert cr.from_sympy(gradient_expression, [x])(x0) == pytest.approx(cr.grad(f)(x0), rel=1e-13)


def test_from_sympy_finds_a_symbol_sympy_rebuilt_after_its_cache_was_cleared():
    """SymPy may hand back an equal symbol that is another object (its cache evicted the user's):
    it is still the user's symbol."""
    x, y = sp.symbols("x y", real=True)
    expression = x * y
    sp.core.cache.clear_cache()
    rebuilt = sp.Symbol("x", real=True) * y  # equal to expression, with a new x
    assert rebuilt == expression
    function = cr.from_sympy(rebuilt, [x, y])
    assert function(2.0, 3.0) == 6.0


def test_erfc_is_a_primitive_from_sympy():
    x = sp.Symbol("x", real=True)
    function = cr.from_sympy(sp.erfc(x), [x])
    assert abs(function(0.5) - float(sp.erfc(sp.Rational(1, 2)))) < 1e-15


def test_the_op_of_a_sympy_head_comes_from_the_op_table():
    heads = ops_of_sympy_heads()
    assert heads[sp.sin] == "sin" and heads[sp.erfc] == "erfc" and heads[sp.Max] == "maximum"
    assert set(heads.values()) <= {name for name, op in OPS.items() if op.is_elementwise}
    assert op_of_head(sp.cos) == "cos" and op_of_head(sp.airyai) is None
    assert op_of_head(sp.gamma) == "gamma" and op_of_head(sp.besselj) == "jv"
    assert op_of_head(OPAQUE_FUNCTIONS["sigmoid"]) == "sigmoid"  # the region pass's undefined functions
