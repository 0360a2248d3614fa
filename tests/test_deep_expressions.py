"""Generated NumPy code stays within what CPython's parser takes, however deep the expression
(issue 24: a hand-written Cholesky at n = 25 nested 200+ parentheses in one line)."""

import numpy as np
import pytest

import chainrule as cr

DEPTH = 300  # CPython refuses more than 200 nested parentheses in one expression

BINARY = [np.add, np.subtract, np.multiply, np.divide, np.maximum, np.minimum, np.hypot, np.arctan2]
UNARY = [np.sin, np.cos, np.tanh, np.arctan, np.sqrt, np.abs, np.negative, np.exp]


def _binary_chain(op):
    def f(x, y):
        acc = x
        for k in range(DEPTH):
            acc = op(acc, y + 0.001 * k)
        return np.sum(acc)

    return f


def _unary_chain(op):
    def f(x):
        for _ in range(DEPTH):
            x = op(x) * 0.1 + 0.25  # stays in every op's domain and finite
        return np.sum(x)

    return f


@pytest.mark.parametrize("op", BINARY, ids=lambda op: op.__name__)
def test_a_deep_chain_of_a_binary_op_compiles_and_computes_numpys_value(op):
    x, y = np.array([0.9, 1.1, 1.0]), np.array([1.05, 0.95, 1.0])
    f = _binary_chain(op)
    try:
        expected = f(x, y)
    except Exception:  # an op the NumPy surface lacks is the surface issue's business
        pytest.skip(f"{op.__name__} on plain arrays")
    try:
        value = cr.jit(f)(x, y)
    except cr.UnsupportedError:
        pytest.skip(f"{op.__name__} is not traced yet")
    np.testing.assert_allclose(value, expected, rtol=1e-12)
    cr.grad(f)(x, y)  # the backward pass is as deep, and compiles too


@pytest.mark.parametrize("op", UNARY, ids=lambda op: op.__name__)
def test_a_deep_chain_of_a_unary_op_compiles_and_computes_numpys_value(op):
    x = np.array([0.2, 0.4, 0.6])
    f = _unary_chain(op)
    np.testing.assert_allclose(cr.jit(f)(x), f(x), rtol=1e-12)
    np.testing.assert_allclose(cr.grad(f)(x), cr.grad(f, backend="llvm")(x), rtol=1e-10)


def test_a_hand_written_cholesky_log_determinant_differentiates():
    def log_det(a):
        n = a.shape[0]
        lower = [[None] * n for _ in range(n)]
        for j in range(n):
            s = a[j, j]
            for k in range(j):
                s = s - lower[j][k] * lower[j][k]
            lower[j][j] = np.sqrt(s)
            for i in range(j + 1, n):
                t = a[i, j]
                for k in range(j):
                    t = t - lower[i][k] * lower[j][k]
                lower[i][j] = t / lower[j][j]
        return 2 * sum(np.log(lower[j][j]) for j in range(n))

    n = 25
    m = np.random.default_rng(0).standard_normal((n, n))
    a = m @ m.T + n * np.eye(n)
    inverse = np.linalg.inv(a)
    # the algorithm reads only the lower triangle: d log det / dA_ij = 2 inv(A)_ij below, inv(A)_jj on it
    expected = np.tril(2 * inverse) - np.diag(np.diag(inverse))
    np.testing.assert_allclose(cr.grad(log_det)(a), expected, atol=1e-14)
