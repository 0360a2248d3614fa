"""A fused node writes over an operand's array when nothing reads it after (ir/fused.py
``donated_buffers``): a fresh array of the function's own, read once, never an input, a constant, a
view or an output (issue 16: ``x @ B`` then ``W *`` it, summed, page-faulted a fresh megabyte per
call). The NumPy backend's code and the memory plan apply the one rule: the plan's peak is the one
tracemalloc measures."""

import re
import tracemalloc

import numpy as np
import pytest

import chainrule as cr
from chainrule.compiler.schedule import plan_memory

RNG = np.random.default_rng(16)
B, W = RNG.standard_normal((2, 4, 64, 64))
X = RNG.standard_normal((4, 64, 64))


def _writes_over_a_product(source: str) -> bool:
    """Does ``source`` write over a matrix product's array (``out=matmul2``, or ``add5 = matmul2``)?"""
    return re.search(r"out=matmul\d|= matmul\d+ *(#|$)", source, re.MULTILINE) is not None


def _call_twice(f, *args):
    first = f(*args)
    return first, f(*args)


def test_a_product_read_once_is_written_over():
    loss = lambda x: np.sum(W * (x @ B))
    f = cr.jit(loss)
    source = f.source(X)
    assert _writes_over_a_product(source) and "_t = " not in source
    kept = X.copy()
    for value in _call_twice(f, X):
        assert value == pytest.approx(loss(X), rel=1e-12)
    np.testing.assert_array_equal(X, kept)  # the input is never written


def test_the_result_may_be_the_donors_array():
    function = lambda x: np.exp(x @ B) * W + 1.0
    f = cr.jit(function)
    assert _writes_over_a_product(f.source(X))
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
    assert not _writes_over_a_product(f.source(X))
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


def test_a_returned_intermediate_is_not_written_over():
    def function(x):
        product = x @ B
        return product, np.sum(W * product)

    product, total = cr.jit(function)(X)
    np.testing.assert_array_equal(product, X @ B)
    assert total == pytest.approx(np.sum(W * (X @ B)), rel=1e-12)


def _measured_peak(f, args) -> int:
    f(*args)  # compiled and warmed up
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        f(*args)
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize(
    "function",
    [
        lambda x: np.sum(W * (x @ B)),  # a reduction: the product's array is the only buffer
        lambda x: np.exp(x @ B) * W + 1.0,  # the result is the product's array
        lambda x: np.sum(np.tanh(x @ B) * (x @ W)),  # two products, each written over
        lambda x: np.sum(W * (x @ B)) + np.sum(np.sin(x @ B)),  # not donated: the plan says so too
    ],
)
def test_the_memory_plan_counts_donated_buffers_as_the_code_uses_them(function):
    f = cr.jit(function)
    estimate = plan_memory(f.graph(X)).peak_bytes
    assert estimate == pytest.approx(_measured_peak(f, (X,)), rel=0.05)


def test_a_donating_value_and_gradient_is_estimated_as_measured():
    b, w, x = B[0], W.reshape(256, 64), X.reshape(256, 64)  # 128 KB: freed early, so donated
    loss = lambda x: np.sum(np.exp(x @ b) * w)  # the product is read once, by exp
    gradient = cr.value_and_grad(loss)
    assert _writes_over_a_product(gradient.source(x))
    assert gradient.memory(x).peak_bytes == pytest.approx(_measured_peak(gradient, (x,)), rel=0.05)
