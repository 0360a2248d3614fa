"""Symbolic regions: small backward regions simplified by SymPy (compiler/symbolic.py)."""

from __future__ import annotations

import numpy as np

import chainrule as cr
from chainrule.cli.demo import PARAMS, X, Y, loss
from chainrule.compiler import symbolic


def test_sigmoid_bce_gradient_simplifies_to_a_minus_y():
    # Seed 002's 12.7 network, written as the seed writes it: the generated backward is the textbook's.
    source = cr.value_and_grad(loss).source(PARAMS, X, Y)
    assert "    A2 = sigmoid(Z2)" in source
    assert "    dZ2 = A2 - Y" in source


def test_the_mean_bce_gradient_is_a_minus_y_over_m_in_the_ir():
    def bce(z, y):
        a = 1 / (1 + np.exp(-z))
        return -np.mean(y * np.log(a) + (1 - y) * np.log(1 - a))

    z, y = np.linspace(-3, 3, 8), (np.arange(8) % 2).astype(float)
    text = cr.grad(bce).ir(z, y, stage="simplified")
    assert "sub %" in text and "sigmoid" in text and "softplus" not in text.split("return")[0].split("d ")[-1]
    gradient = cr.grad(bce)(z, y)
    np.testing.assert_allclose(gradient, (1 / (1 + np.exp(-z)) - y) / 8, rtol=1e-12)


def test_a_region_that_does_not_get_smaller_is_left_as_reverse_mode_made_it():
    f = cr.grad(lambda x: np.sum(np.tanh(x) * 3.0))
    x = np.linspace(-1, 1, 5)
    before = f.graph(x, stage="simplified")
    assert str(before).count("= tanh") == 1  # tanh' = 1 - y*y, reusing the forward tanh
    assert "sub %" in str(before)
    np.testing.assert_allclose(f(x), 3.0 * (1 - np.tanh(x) ** 2), rtol=1e-14)


def test_a_sum_of_bce_terms_is_one_region_simplified_to_sum_of_sigmoids_minus_count_times_y():
    def three_terms(z, y):
        total = 0.0
        for k in range(3):
            a = 1 / (1 + np.exp(-(z + k)))
            total = total - np.sum(y * np.log(a) + (1 - y) * np.log(1 - a))
        return total

    z, y = np.linspace(-2, 2, 6), (np.arange(6) % 2).astype(float)
    text = cr.grad(three_terms).ir(z, y, stage="simplified")
    assert text.count("= sigmoid") == 3 and "const 3.0" in text
    expected = sum(1 / (1 + np.exp(-(z + k))) for k in range(3)) - 3 * y
    np.testing.assert_allclose(cr.grad(three_terms)(z, y), expected, rtol=1e-13)


def test_identical_regions_are_simplified_once():
    symbolic._simplify_region.cache_clear()

    def bce(z, y):
        a = 1 / (1 + np.exp(-z))
        return -np.sum(y * np.log(a) + (1 - y) * np.log(1 - a))

    for size in (5, 6, 7):  # three compilations of one region shape
        cr.grad(bce)(np.zeros(size), np.ones(size))
    info = symbolic._simplify_region.cache_info()
    assert info.misses == 1 and info.hits == 2


def test_regions_with_kinks_are_not_handed_to_sympy():
    f = cr.grad(lambda x: np.sum(np.maximum(x, 0.0) * np.abs(x)))
    x = np.array([-1.0, 0.0, 2.0])
    np.testing.assert_allclose(f(x), np.where(x > 0, 2 * x, 0.0), rtol=1e-14)
