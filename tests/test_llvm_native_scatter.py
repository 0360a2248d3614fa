"""scatter_add and index_update at an integer-array index run as native loops on the llvm backend
(native_scatter.py): NumPy's values to the bit (``np.add.at``'s additions in its order; the last of
repeated writes wins), gradients against central differences, and an index computed at run time,
checked natively, still raises NumPy's IndexError (its callback runs only then)."""

from __future__ import annotations

import numpy as np
import pytest
from gradient_helpers import numerical_gradient, relative_error, weighted_sum

import chainrule as cr

INDEX = np.array([0, 3, 3, 1, -1, 0, 3])  # repeated, and one from the end
X = np.random.default_rng(7).standard_normal((7, 3))


def callbacks(compiled, *args):
    return [f.op for f in compiled._specialize(args)[0].kernel.lowered.fallbacks]


def native(fn, *args):
    """fn on llvm: NumPy's values to the bit, and no callback for a scatter."""
    compiled = cr.jit(fn, backend="llvm")
    got, expected = compiled(*args), fn(*args)
    assert np.asarray(got).dtype == np.asarray(expected).dtype
    np.testing.assert_array_equal(got, expected)
    assert not {"scatter_add", "index_update"} & set(callbacks(compiled, *args))


def add_at(x):
    out = np.zeros((5, 3))
    np.add.at(out, INDEX, x)
    return out


def test_add_at_accumulates_repeated_rows_in_numpys_order():
    native(add_at, X)
    native(lambda x: add_at(x.T[::-1].T), X)  # a reversed, transposed operand


def test_add_at_of_a_broadcast_value_into_an_array_with_contents():
    def fn(x):
        out = np.cos(x[:5, 0])
        np.add.at(out, INDEX, 0.5)
        return out

    native(fn, X)


def test_add_at_of_integers():
    def fn(x):
        out = x[:5] * 2
        np.add.at(out, INDEX, x)
        return out

    native(fn, np.arange(7, dtype=np.int64) * 3)


def test_assignment_at_repeated_indices_keeps_the_last_write():
    def fn(x):
        out = np.ones((5, 3))
        out[INDEX] = x * 2.0
        return out

    native(fn, X)


def test_sort_gradient_is_a_native_scatter_and_matches_central_differences():
    def fn(x):
        return weighted_sum(np.sort(x, axis=0))

    x = X[:, 0]
    grad = cr.grad(fn, backend="llvm")
    assert relative_error(grad(x), numerical_gradient(fn, (x,), 0)) < 1e-7
    assert "scatter_add" not in callbacks(grad, x)


def test_add_at_gradient_matches_central_differences_on_both_backends():
    def fn(x):
        return weighted_sum(np.sin(add_at(x)))

    for backend in ("numpy", "llvm"):
        gradient = cr.grad(fn, backend=backend)(X)
        assert relative_error(gradient, numerical_gradient(fn, (X,), 0)) < 1e-7


def test_an_index_computed_at_run_time_is_checked_natively_and_raises_numpys_error():
    def fn(x, index):
        out = np.zeros((5, 3))
        np.add.at(out, index, x)
        return out

    compiled = cr.jit(fn, backend="llvm")
    np.testing.assert_array_equal(compiled(X, INDEX), fn(X, INDEX))
    fallbacks = compiled._specialize((X, INDEX))[0].kernel.lowered.fallbacks
    assert [(f.op, f.on_error) for f in fallbacks] == [("index_update", True)]
    with pytest.raises(cr.ChainruleError, match="IndexError: index 5 is out of bounds"):
        compiled(X, INDEX + 5)
