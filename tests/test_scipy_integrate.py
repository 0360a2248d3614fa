"""scipy.integrate's sampled-data rules on traced arrays (``frontends/scipy_integrate.py``): values
against SciPy itself on both backends (Simpson's even-count correction included), gradients of the
samples and the abscissas against finite differences, and the forms refused."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.integrate as integrate
from gradient_helpers import numerical_gradient, relative_error, weighted_sum

import chainrule as cr

RNG = np.random.default_rng(17)
Y = RNG.standard_normal((3, 6))
X6 = np.cumsum(RNG.uniform(0.2, 1.0, 6))
RULES = {
    "trapezoid dx": lambda y, x: integrate.trapezoid(y, dx=0.3),
    "trapezoid x": lambda y, x: integrate.trapezoid(y, x),
    "cumulative_trapezoid x": lambda y, x: integrate.cumulative_trapezoid(y, x),
    "cumulative_trapezoid initial axis 0": lambda y, x: integrate.cumulative_trapezoid(y.T, x, axis=0, initial=0),
    "cumulative_trapezoid dx": lambda y, x: integrate.cumulative_trapezoid(y, dx=0.2),
    "simpson even count x": lambda y, x: integrate.simpson(y, x=X6),
    "simpson odd count dx": lambda y, x: integrate.simpson(y[:, :5], dx=0.1),
    "simpson two points": lambda y, x: integrate.simpson(y[:, :2], x=X6[:2]),
    "simpson axis 0": lambda y, x: integrate.simpson(y.T, x=X6, axis=0),
}


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
@pytest.mark.parametrize("name", sorted(RULES))
def test_values_are_scipys(name, backend):
    rule = RULES[name]
    np.testing.assert_allclose(cr.jit(rule, backend=backend)(Y, X6), rule(Y, X6), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
@pytest.mark.parametrize("name", sorted(RULES))
def test_gradients_match_finite_differences(name, backend):
    rule = RULES[name]

    def score(y, x):
        return weighted_sum(np.sin(rule(y, x)))

    gradients = cr.grad(score, argnums=(0, 1), backend=backend)(Y, X6)
    for index, analytic in enumerate(gradients):
        assert relative_error(analytic, numerical_gradient(score, (Y, X6), index)) < 1e-7, f"argument {index}"


def test_simpson_of_traced_abscissas_and_a_nonzero_initial_value_are_refused():
    with pytest.raises(cr.UnsupportedError, match="traced abscissas"):
        cr.jit(lambda y, x: integrate.simpson(y, x=x))(Y, X6)
    with pytest.raises(cr.ShapeError, match="`initial` must be"):
        cr.jit(lambda y: integrate.cumulative_trapezoid(y, initial=1.0))(Y)
