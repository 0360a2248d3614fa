"""A fused node of the NumPy backend writes over an operand's array when nothing reads it after
(backends/numpy/fused.py ``donated_buffers``): a fresh array of its own, read once, never an input,
a constant, a view or an output (issue 16: ``x @ B`` then ``W *`` it, summed, page-faulted a fresh
megabyte per call)."""

import numpy as np
import pytest

import chainrule as cr

RNG = np.random.default_rng(16)
B, W = RNG.standard_normal((2, 4, 64, 64))
X = RNG.standard_normal((4, 64, 64))


def _call_twice(f, *args):
    first = f(*args)
    return first, f(*args)


def test_a_product_read_once_is_written_over():
    loss = lambda x: np.sum(W * (x @ B))
    f = cr.jit(loss)
    source = f.source(X)
    assert "out=matmul" in source and "_t = " not in source
    kept = X.copy()
    for value in _call_twice(f, X):
        assert value == pytest.approx(loss(X), rel=1e-12)
    np.testing.assert_array_equal(X, kept)  # the input is never written


def test_the_result_may_be_the_donors_array():
    function = lambda x: np.exp(x @ B) * W + 1.0
    f = cr.jit(function)
    assert "= matmul" in f.source(X)
    for value in _call_twice(f, X):
        np.testing.assert_allclose(value, function(X), rtol=1e-13)


@pytest.mark.parametrize(
    "function",
    [
        lambda x: np.sum(W * (x @ B) * (x @ B)),  # one product read twice (CSE: one node)
        lambda x: np.sum(W * (x @ B)) + np.sum(np.sin(x @ B)),  # read by two nodes
        lambda x: (x @ B, np.sum(W * (x @ B))),  # an output
        lambda x: np.sum(W * (x @ B).transpose(0, 2, 1)),  # read through a view
        lambda x: np.sum(W * x),  # an input
        lambda x: np.sum(W * np.exp(x)) * np.sum(np.exp(x)),  # a fused result read twice
    ],
)
def test_arrays_read_again_are_never_written_over(function):
    f = cr.jit(function)
    kept = X.copy()
    expected = function(X)
    for value in _call_twice(f, X):
        for got, want in zip(
            np.atleast_1d(value) if not isinstance(value, tuple) else value,
            np.atleast_1d(expected) if not isinstance(expected, tuple) else expected,
        ):
            np.testing.assert_allclose(got, want, rtol=1e-12)
    np.testing.assert_array_equal(X, kept)


def test_gradients_with_donated_buffers_match_finite_differences():
    b, w = B[0][:32, :32], W[0][:32, :32]
    loss = lambda x: np.sum(w * np.tanh(x @ b) ** 2)
    x = RNG.standard_normal((32, 32)) * 0.3
    gradient = cr.grad(loss)(x)
    step = 1e-6
    for index in [(0, 0), (3, 7), (31, 31)]:
        e = np.zeros_like(x)
        e[index] = step
        assert gradient[index] == pytest.approx((loss(x + e) - loss(x - e)) / (2 * step), rel=1e-7, abs=1e-9)
    value, same = cr.value_and_grad(loss)(x)
    assert value == pytest.approx(loss(x), rel=1e-12)
    np.testing.assert_allclose(same, gradient, rtol=1e-14)
