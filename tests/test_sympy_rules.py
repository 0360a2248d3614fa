"""SymPy is the source of truth for every elementwise derivative (DESIGN.md, "The symbolic half").

Each op's declared VJP rule is compared with ``sympy.diff`` of its definition in
test_table_elementwise.py, for every op of the table. Here: the declared forms that
are cheaper than the derivative (they reuse the op's output), and the kink
conventions, where a derivative is a choice rather than a fact.
"""

import numpy as np
import pytest
import sympy as sp

import chainrule as cr
import chainrule.nn
from chainrule.ir import OPS, Graph, TensorType, Value

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
        db = cr.grad(lambda a, b: np.sum(a**b), 1)(a, b)
    np.testing.assert_allclose(db, [0.0, 2.0**1.5 * np.log(2.0)], rtol=1e-15)


def test_clip_with_lo_above_hi_sends_the_gradient_to_hi_as_sympy_diff_does():
    x, lo, hi = np.array([0.0]), np.array([2.0]), np.array([1.0])
    dx, dlo, dhi = cr.grad(lambda x, lo, hi: np.sum(np.clip(x, lo, hi)), (0, 1, 2))(x, lo, hi)
    np.testing.assert_array_equal([dx[0], dlo[0], dhi[0]], [0.0, 0.0, 1.0])
