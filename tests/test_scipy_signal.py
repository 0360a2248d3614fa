"""scipy.signal's convolution and correlation on traced arrays (``frontends/scipy_signal.py``):
values against SciPy itself in every mode, gradients of both operands against finite differences on
both backends."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal
from gradient_helpers import numerical_gradient, relative_error, weighted_sum

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


# ---- lfilter: the recursive filter primitive (ir/filters.py) -------------------------------------

B, A_COEFFS = np.array([0.3, -0.2, 0.15]), np.array([1.4, -0.6, 0.25])
LFILTER_FORMS = {
    "iir": lambda b, a, x: scipy.signal.lfilter(b, a, x),
    "axis 0": lambda b, a, x: scipy.signal.lfilter(b, a, x, axis=0),
    "fir": lambda b, a, x: scipy.signal.lfilter(b, a[:1], x, axis=1),
    "all-pole": lambda b, a, x: scipy.signal.lfilter(b[:1], a, x),
    "long numerator": lambda b, a, x: scipy.signal.lfilter(np.concatenate([b, b, b]), a[:2], x[..., :4]),
    "lists": lambda b, a, x: scipy.signal.lfilter([0.5, 0.5], [1.0, -0.9], x),
}


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
@pytest.mark.parametrize("form", sorted(LFILTER_FORMS))
def test_lfilter_values_are_scipys(form, backend):
    x = RNG.standard_normal((3, 5, 8))
    function = LFILTER_FORMS[form]
    np.testing.assert_allclose(
        cr.jit(function, backend=backend)(B, A_COEFFS, x), function(B, A_COEFFS, x), rtol=1e-12, atol=1e-14
    )


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
@pytest.mark.parametrize("form", sorted(set(LFILTER_FORMS) - {"lists"}))
def test_lfilter_gradients_of_coefficients_and_signal_match_finite_differences(form, backend):
    x = RNG.standard_normal((2, 3, 8))
    function = LFILTER_FORMS[form]

    def score(b, a, signal):
        return weighted_sum(np.tanh(function(b, a, signal)))

    gradients = cr.grad(score, argnums=(0, 1, 2), backend=backend)(B, A_COEFFS, x)
    for index, analytic in enumerate(gradients):
        numeric = numerical_gradient(score, (B, A_COEFFS, x), index)
        assert relative_error(analytic, numeric) < 1e-7, f"argument {index}"


def test_lfilter_second_derivatives_are_the_derivative_of_the_gradient():
    x = RNG.standard_normal(12)

    def energy(coefficients):  # a resonator's output energy, in its two pole coefficients
        return np.sum(scipy.signal.lfilter([1.0], np.concatenate([[1.0], coefficients]), x) ** 2)

    point = np.array([-0.8, 0.3])
    hessian = cr.hessian(energy)(point)
    gradient = cr.grad(energy)
    numeric = np.stack([numerical_gradient(lambda p, i=i: gradient(p)[i], (point,), 0) for i in range(2)])
    np.testing.assert_allclose(hessian, numeric, rtol=1e-7)


def test_lfilter_of_float32_arrays_stays_float32():
    x = RNG.standard_normal(9).astype(np.float32)
    b, a = B.astype(np.float32), A_COEFFS.astype(np.float32)
    traced = cr.jit(scipy.signal.lfilter)(b, a, x)
    assert traced.dtype == np.float32
    np.testing.assert_allclose(traced, scipy.signal.lfilter(b, a, x), rtol=1e-5)


def test_lfilter_with_initial_conditions_is_unsupported():
    with pytest.raises(cr.UnsupportedError, match="zi="):
        cr.jit(lambda x: scipy.signal.lfilter(B, A_COEFFS, x, zi=np.zeros(2)))(np.ones(5))
