"""``np.array`` and ``np.asarray`` of traced values, as NumPy programs write them.

``np.array([v, -np.sin(x)])`` is how an ODE's right-hand side is written, ``x = np.asarray(x, float)``
how a function starts. Each program here is plain NumPy, run eagerly by NumPy for the expected
values and finite differences, and traced by chainrule: gradients against fourth-order central
differences (relative error < 1e-7), forward mode against reverse mode, both backends.
"""

from __future__ import annotations

import numpy as np
import pytest
from gradient_helpers import numerical_gradient, relative_error

import chainrule as cr

BACKENDS = ["numpy", "llvm"]


def pendulum_energy(state):
    def rhs(s):
        angle, speed = s[0], s[1]
        return np.array([speed, -np.sin(angle) - 0.1 * speed])

    for _ in range(20):
        state = state + 0.05 * rhs(state)
    return 0.5 * state[1] ** 2 + (1 - np.cos(state[0]))


def rotation_with_constants(w):
    matrix = np.array([[np.cos(w[0]), -np.sin(w[0]), 0], [np.sin(w[0]), np.cos(w[0]), 0.0], [0, 0, w[1] ** 2]])
    return np.sum(matrix @ np.array([1.0, 2.0, w[2]])) + np.linalg.det(matrix)


def starts_with_asarray(x):
    x = np.asarray(x, dtype=float)
    y = np.ascontiguousarray(x)
    return np.sum(np.tanh(y) * np.arange(x.size))


def tuple_of_arrays(w):
    stacked = np.array((w, w**2, np.ones(3)))  # (3, 3): a row per item
    return np.sum(stacked * stacked.T)


def copy_then_write(w):
    v = np.array(w)  # a copy: the write leaves w as it was
    v[0] = 0.0
    v[1:] *= 3.0
    return np.sum(v * w)


def scalars_promoted_like_numpy(w):
    # 2 and True are NumPy's int64 and bool arrays in the list; the result is float64, as NumPy's
    return np.sum(np.array([w[0], 2, True]) ** 2) + np.sum(np.array(w, ndmin=3))


PROGRAMS = [
    (pendulum_energy, np.array([1.1, -0.3])),
    (rotation_with_constants, np.array([0.4, 1.3, -0.7])),
    (starts_with_asarray, np.array([0.2, -0.5, 0.9, 1.4])),
    (tuple_of_arrays, np.array([0.3, -1.2, 0.8])),
    (copy_then_write, np.array([0.5, -1.5, 2.0, 0.25])),
    (scalars_promoted_like_numpy, np.array([0.7, -0.2])),
]
NAMES = [fn.__name__ for fn, _ in PROGRAMS]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("fn", "x"), PROGRAMS, ids=NAMES)
def test_gradient_matches_finite_differences_and_the_value_numpys(fn, x, backend):
    value, gradient = cr.value_and_grad(fn, backend=backend)(x)
    np.testing.assert_allclose(value, fn(x), rtol=1e-13)
    assert relative_error(gradient, numerical_gradient(fn, (x,), 0)) < 1e-7


@pytest.mark.parametrize(("fn", "x"), PROGRAMS, ids=NAMES)
def test_forward_mode_equals_reverse_mode(fn, x):
    tangent = np.linspace(-1.0, 1.0, x.size)
    _, directional = cr.jvp(fn, (x,), (tangent,))
    np.testing.assert_allclose(directional, cr.grad(fn)(x) @ tangent, rtol=1e-12, atol=1e-14)


def test_asarray_of_a_traced_array_is_that_array_and_array_copies_it():
    def aliasing(w):
        alias, copy = np.asarray(w), np.array(w)
        alias[0] = 10.0  # NumPy writes into w through the alias, not into the copy
        return w[0] * 2 + copy[0] * 3

    x = np.array([1.0, 2.0])
    np.testing.assert_allclose(cr.jit(aliasing)(x), aliasing(x.copy()))


def test_dtypes_are_numpys():
    def converted(w):
        return (
            np.asarray(w, dtype=np.float32),
            np.array([w[0], 1.5]),  # float32 and a Python float: float64, as NumPy's array()
            np.asarray(w > 0, dtype=np.int64),
        )

    x = np.array([0.5, -2.0], dtype=np.float32)
    for got, expected in zip(cr.jit(converted)(x), converted(x)):
        assert got.dtype == expected.dtype
        np.testing.assert_array_equal(got, expected)


def test_ragged_nesting_and_an_object_dtype_raise_a_chainrule_error_at_the_users_line():
    def ragged(w):
        return np.array([w, w[:1]])

    def objects(w):
        return np.array([w[0], w[1]], dtype=object)

    with pytest.raises(cr.ChainruleError, match=r"test_array_conversion\.py:\d+"):
        cr.jit(ragged)(np.ones(2))
    with pytest.raises(cr.UnsupportedError, match=r"dtype=object"):
        cr.jit(objects)(np.ones(2))
