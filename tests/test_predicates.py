"""np.all, np.any, np.isfinite, np.isnan, np.isinf, np.polyval and np.interp on traced values."""

import warnings

import numpy as np
import pytest
from gradient_helpers import numerical_gradient, relative_error

import chainrule as cr

BACKENDS = ["numpy", "llvm"]
SPECIAL = np.array([[0.5, -1.0, np.inf], [np.nan, -np.inf, 0.0]])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "function",
    [
        np.isfinite,
        np.isnan,
        np.isinf,
        lambda x: np.all(x > -2),
        lambda x: np.all(x > -2, axis=1),
        lambda x: np.any(np.isnan(x), axis=0, keepdims=True),
        lambda x: np.any(x > 5),
    ],
    ids=["isfinite", "isnan", "isinf", "all", "all-axis", "any-axis", "any"],
)
def test_truth_tests_give_numpys_answer_without_warnings(backend, function):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # NumPy's own predicates do not warn on inf or NaN
        result = cr.jit(function, backend=backend)(SPECIAL)
    expected = function(SPECIAL)
    assert result.dtype == bool and result.shape == np.shape(expected)
    np.testing.assert_array_equal(result, expected)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_mask_from_isfinite_passes_the_gradient_where_it_is_true(backend):
    x = np.array([0.5, 2.0, -1.5])
    gradient = cr.grad(lambda v: np.sum(np.where(np.isfinite(v), v * v, 0.0)), backend=backend)(x)
    np.testing.assert_allclose(gradient, 2 * x, rtol=1e-15)


@pytest.mark.parametrize("backend", BACKENDS)
def test_polyval_is_horners_rule_and_differentiates_in_both_arguments(backend):
    p, x = np.array([1.5, -2.0, 0.5, 0.25]), np.linspace(-1.0, 2.0, 5)
    f = lambda p, x: np.sum(np.polyval(p, x) ** 2)
    np.testing.assert_allclose(cr.jit(np.polyval, backend=backend)(p, x), np.polyval(p, x), rtol=1e-15)
    for argnum in range(2):
        analytic = cr.grad(f, argnums=argnum, backend=backend)(p, x)
        assert relative_error(analytic, numerical_gradient(f, (p, x), argnum)) < 1e-7


@pytest.mark.parametrize("backend", BACKENDS)
def test_interp_matches_numpy_and_its_gradient_matches_finite_differences(backend):
    xp, fp = np.array([0.0, 1.0, 2.5, 4.0]), np.array([1.0, 3.0, 2.0, 5.0])
    x = np.array([-1.0, 0.3, 0.5, 1.2, 3.0, 3.9, 6.0])  # outside, inside, away from the knots
    np.testing.assert_allclose(cr.jit(np.interp, backend=backend)(x, xp, fp), np.interp(x, xp, fp), rtol=1e-15)
    clamped = cr.jit(lambda x: np.interp(x, xp, fp, left=-7.0, right=9.0), backend=backend)(x)
    np.testing.assert_allclose(clamped, np.interp(x, xp, fp, left=-7.0, right=9.0), rtol=1e-15)
    f = lambda x, xp, fp: np.sum(np.interp(x, xp, fp) ** 2)
    for argnum in range(3):
        analytic = cr.grad(f, argnums=argnum, backend=backend)(x, xp, fp)
        assert relative_error(analytic, numerical_gradient(f, (x, xp, fp), argnum)) < 1e-7


def test_interp_with_a_period_says_it_is_unsupported():
    with pytest.raises(cr.UnsupportedError, match="period"):
        cr.jit(lambda x: np.interp(x, [0.0, 1.0], [0.0, 1.0], period=1.0))(np.ones(2))
