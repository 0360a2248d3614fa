"""scipy.signal's convolution and correlation on traced arrays (``frontends/scipy_signal.py``):
values against SciPy itself in every mode, gradients of both operands against finite differences on
both backends."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal
from gradient_helpers import numerical_gradient, relative_error

import chainrule as cr

RNG = np.random.default_rng(7)
SHAPES = [((7,), (3,)), ((3,), (7,)), ((5, 6), (2, 3)), ((2, 3), (5, 6)), ((4, 5, 3), (2, 2, 3)), ((4,), (4,))]
FUNCTIONS = {
    "convolve": scipy.signal.convolve,
    "correlate": scipy.signal.correlate,
    "convolve2d": scipy.signal.convolve2d,
    "correlate2d": scipy.signal.correlate2d,
}
SHAPES_2D = [((5, 6), (3, 2)), ((5, 6), (2, 2)), ((5, 6), (4, 3)), ((2, 3), (5, 6)), ((5, 6), (1, 4))]
CASES = [
    (name, first, second, mode)
    for name in FUNCTIONS
    for first, second in (SHAPES_2D if name.endswith("2d") else SHAPES)
    for mode in ("full", "valid", "same")
]


@pytest.mark.parametrize("name,first,second,mode", CASES)
def test_values_are_scipys(name, first, second, mode):
    a, b = RNG.standard_normal(first), RNG.standard_normal(second)
    function = FUNCTIONS[name]
    traced = cr.jit(lambda x, y: function(x, y, mode=mode))(a, b)
    np.testing.assert_allclose(traced, function(a, b, mode=mode), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
@pytest.mark.parametrize("mode", ["full", "valid", "same"])
@pytest.mark.parametrize("function", [scipy.signal.convolve2d, scipy.signal.correlate2d, scipy.signal.convolve])
def test_gradients_of_both_operands_match_finite_differences(function, mode, backend):
    image, kernel = RNG.standard_normal((5, 6)), RNG.standard_normal((3, 2))
    weights = RNG.standard_normal(function(image, kernel, mode=mode).shape)

    def score(x, k):
        return np.sum(weights * np.tanh(function(x, k, mode=mode)))

    gradients = cr.grad(score, argnums=(0, 1), backend=backend)(image, kernel)
    for index, analytic in enumerate(gradients):
        assert relative_error(analytic, numerical_gradient(score, (image, kernel), index)) < 1e-7


def test_two_dimensional_forms_take_only_zero_fill():
    with pytest.raises(cr.UnsupportedError, match="boundary='wrap'"):
        cr.jit(lambda x: scipy.signal.convolve2d(x, np.ones((2, 2)), boundary="wrap"))(np.ones((3, 3)))


def test_operands_of_different_rank_are_a_shape_error():
    with pytest.raises(cr.ShapeError, match="same dimensionality"):
        cr.jit(lambda x: scipy.signal.convolve(x, np.ones(2)))(np.ones((3, 3)))
