"""Seed 001's nested function, d/dx cos(tan(sin(...))) at x = 4.2, at any depth (DESIGN.md, "Who uses it" 3).

Expected values come from the seed (SymPy's printed result at depth 30) and from
an mpmath reference at 50 digits that carries value and derivative through each
step, never from chainrule itself.
"""

import sys

import mpmath
import numpy as np
import pytest

import chainrule as cr
from chainrule.cli.nested_function import X0, nested_numpy, reference

EPS = np.finfo(np.float64).eps


def test_the_mpmath_reference_reproduces_the_seeds_sympy_value_and_the_closed_form_at_depth_1():
    _, derivative = reference(30)
    assert mpmath.nstr(derivative, 15) == "0.00255077238173787"  # seed 001, as SymPy printed it
    _, one_level = reference(1)
    x = mpmath.mpf(X0)
    with mpmath.workdps(50):
        closed_form = -mpmath.sin(mpmath.tan(mpmath.sin(x))) * mpmath.sec(mpmath.sin(x)) ** 2 * mpmath.cos(x)
        assert abs(one_level - closed_form) < mpmath.mpf(10) ** -45


def test_depth_30_at_4_2_is_the_seeds_value():
    derivative = cr.grad(nested_numpy(30))(np.float64(X0))
    assert derivative == pytest.approx(0.00255077238173787, rel=1e-12)


# Tolerance: the derivative is a product of 3 * depth factors (cos(v), sec(s)**2, -sin(t) at each
# level), each computed to within about 2 ulp (NumPy's sin, cos and tan are within 1 ulp, plus the
# rounding of the product). The forward values' own errors do not pile up: the map contracts
# (|f'| is about 0.84 a level), and the factors are evaluated where they are well conditioned
# (v in [0.01, 1] after the first level). So the relative error is at most about
# 3 * depth * 2 * eps: 6.7e-14 at depth 100, 6.7e-13 at depth 1000 (measured: 1.5e-15, 6.5e-14).
@pytest.mark.parametrize("depth", [100, 1000])
def test_deep_derivatives_equal_the_50_digit_reference(depth):
    _, exact = reference(depth)
    derivative = cr.grad(nested_numpy(depth))(np.float64(X0))
    assert derivative == pytest.approx(float(exact), rel=6 * depth * EPS)


def test_depth_10000_traces_differentiates_and_compiles_and_gives_the_correctly_rounded_zero():
    assert sys.getrecursionlimit() <= 10_000  # so no recursive walk over the ~30,000-deep graph can pass
    depth = 10_000
    exact_value, exact_derivative = reference(depth)
    f = cr.value_and_grad(nested_numpy(depth))
    x0 = np.float64(X0)
    value, derivative = f(x0)
    assert len(f.graph(x0, stage="traced")) >= 3 * depth
    # the graph grows by a constant number of nodes per level, the "linear" of DESIGN.md
    assert len(f.graph(x0, stage="grad")) <= 12 * depth
    # The exact derivative, 3.66e-767, is far below the smallest float64 (4.9e-324): its correctly
    # rounded value is 0.0, which is what the product of 30,000 factors must underflow to (not nan).
    assert float(exact_derivative) == 0.0 and mpmath.mpf("3e-767") < exact_derivative < mpmath.mpf("4e-767")
    assert derivative == 0.0
    # The value does not underflow; the contraction keeps its error at the last levels' rounding.
    assert value == pytest.approx(float(exact_value), rel=8 * EPS)
