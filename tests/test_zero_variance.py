"""Variance and standard deviation of one value: 0, and so are their derivatives of every order.

Issue 21's first example: ``cr.hvp(lambda x: np.std(x))(3.5, 1.0)`` gave NaN. std of one value
is |x - x| = 0 for every finite x, so every derivative is 0; the traced x - x kept a path to
x, and at second order sqrt'(0) = inf met a zero cotangent (0 * inf = NaN). No derivative flows
through x - x now (``chainrule.ir.ops.SELF_CANCELLING``), in either mode.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import chainrule as cr


def test_the_hvp_of_std_of_a_scalar_is_zero_not_nan():
    assert cr.hvp(lambda x: np.std(x))(3.5, 1.0) == 0.0


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
@pytest.mark.parametrize("statistic", [np.std, np.var])
def test_every_derivative_of_a_statistic_over_an_axis_of_length_one_is_zero(backend, statistic):
    x = np.array([[1.5], [-2.0], [0.25]])

    def total(values):
        return np.sum(statistic(values, axis=1) * np.array([1.0, 2.0, 3.0]))

    assert np.array_equal(cr.grad(total, backend=backend)(x), np.zeros_like(x))
    assert np.array_equal(cr.hessian(total, backend=backend)(x), np.zeros((3, 1, 3, 1)))
    assert np.array_equal(cr.hvp(total, backend=backend)(x, np.ones_like(x)), np.zeros_like(x))


def test_the_value_is_numpys_including_nan_for_a_value_that_is_not_finite():
    x = np.array([[np.inf], [2.0], [np.nan]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        expected = np.std(x, axis=1)
    np.testing.assert_array_equal(cr.jit(lambda v: np.std(v, axis=1))(x), expected)


def test_the_dtype_is_kept_and_longer_axes_are_unchanged():
    assert cr.jit(lambda v: np.var(v, axis=0))(np.ones((1, 3), np.float32)).dtype == np.float32
    x = np.array([[1.0, 2.0], [3.0, 5.0]])
    # d std / dx over two values a, b: (x - mean) / (n std) = sign(a - b) / 2
    np.testing.assert_allclose(cr.grad(lambda v: np.sum(np.std(v, axis=0)))(x), [[-0.5, -0.5], [0.5, 0.5]])
