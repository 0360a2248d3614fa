"""Issue 21's list of bad inputs, each given to a compiled function as a user would: every one
either computes the right thing or raises a ChainruleError (naming the user's line where the
mistake is in the function); none surfaces NumPy's or llvmlite's own exception."""

from __future__ import annotations

import numpy as np
import pytest

import chainrule as cr
from chainrule.errors import TraceTypeError


def sum_of_squares(x):
    return np.sum(np.sin(x) ** 2)


def through_a_matrix(x):
    return np.sum(x @ np.ones((3, 2)))


def branches_on_a_value(x):
    if x[0] > 0:
        return np.sum(x)
    return -np.sum(x)


def reads_a_number(x):
    return x[int(x[0])]


class ArrayLike:
    def __array__(self, dtype=None, copy=None):
        return np.ones(3)


ERRORS = [
    # (id, function, arguments, error class, what the message says)
    ("None", sum_of_squares, (None,), cr.TraceError, r"test_bad_inputs\.py:\d+ in sum_of_squares\(\).*None"),
    ("dict", sum_of_squares, ({"a": np.ones(2)},), cr.TraceError, r"sum_of_squares\(\).*a dict"),
    ("complex", sum_of_squares, (np.array([1 + 1j]),), cr.ArgumentError, "complex128"),
    ("bool", sum_of_squares, (np.array([True]),), cr.ArgumentError, "bool"),
    ("integers", sum_of_squares, (np.array([1, 2]),), cr.ArgumentError, "i64"),
    ("object dtype", sum_of_squares, (np.array([1, "a"], dtype=object),), cr.ArgumentError, "dtype object"),
    ("a str", sum_of_squares, ("abc",), cr.ArgumentError, "str"),
    ("__array__ object", sum_of_squares, (ArrayLike(),), cr.ArgumentError, "ArrayLike"),
    ("shape at trace time", through_a_matrix, (np.ones((2, 4)),), cr.ShapeError, r"through_a_matrix\(\): matmul"),
    ("Python control flow", branches_on_a_value, (np.ones(3),), cr.TraceError, r"branches_on_a_value\(\).*cr\.cond"),
    ("a value as a number", reads_a_number, (np.ones(3),), cr.TraceError, r"reads_a_number\(\)"),
]


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
@pytest.mark.parametrize(
    ("function", "arguments", "error", "message"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS]
)
def test_a_bad_input_is_a_chainrule_error(function, arguments, error, message, backend):
    with pytest.raises(error, match=message):
        cr.grad(function, backend=backend)(*arguments)


def test_argnums_out_of_range_and_a_vector_output_are_errors():
    with pytest.raises(cr.ArgumentError, match="argnums=3"):
        cr.grad(sum_of_squares, argnums=3)(np.ones(3))
    with pytest.raises(cr.OutputError, match="scalar output"):
        cr.grad(lambda x: x * 2)(np.ones(3))


def test_a_new_shape_at_call_time_retraces_and_a_wrong_one_names_the_line():
    gradient = cr.grad(through_a_matrix)
    np.testing.assert_array_equal(gradient(np.ones((2, 3))), np.full((2, 3), 2.0))
    np.testing.assert_array_equal(gradient(np.ones((5, 3))), np.full((5, 3), 2.0))  # another signature
    with pytest.raises(cr.ShapeError, match=r"through_a_matrix\(\)"):
        gradient(np.ones(4))


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
def test_edge_arrays_compute_what_they_should(backend):
    gradient = cr.grad(sum_of_squares, backend=backend)
    assert gradient(np.zeros(0)).shape == (0,)  # empty: an empty gradient
    np.testing.assert_allclose(gradient(np.array(2.0)), np.sin(4.0))  # 0-d
    np.testing.assert_allclose(gradient(np.array([0.5, 1.0], np.float16)), np.sin([1.0, 2.0]), rtol=2e-3)
    # a Python list is a pytree of floats (as in JAX): np.sin of a list of traced floats cannot be
    # an array of them, which the error says at the user's line
    with pytest.raises(cr.TraceError, match=r"sum_of_squares\(\).*np\.stack"):
        gradient([0.5, 1.0])


def test_writes_into_a_numpy_array_made_inside_the_function_are_traced():
    def scatter(x):
        out = np.zeros(3)
        out[0] = x[0] * 2.0
        out[2] = x[1]
        return np.sum(out * np.array([1.0, 10.0, 100.0]))

    np.testing.assert_array_equal(cr.grad(scatter)(np.ones(2)), [2.0, 100.0])


def test_an_exception_the_users_code_raises_is_theirs_unchanged():
    def checks_its_input(x):
        if x.shape[0] > 2:
            raise ValueError("at most two values")
        return np.sum(x)

    with pytest.raises(ValueError, match="at most two values"):
        cr.grad(checks_its_input)(np.ones(3))


def test_a_call_whose_arguments_do_not_fit_is_named_as_such_not_blamed_on_numpy():
    def make_scaled(scale):
        return lambda x: scale * np.sin(x)

    def calls_the_factory_wrongly(x):
        return np.sum(make_scaled(x, 2.0))

    with pytest.raises(TraceTypeError, match=r"calls_the_factory_wrongly\(\): a call here does not fit .*takes 1"):
        cr.grad(calls_the_factory_wrongly)(np.ones(3))


TABLE = np.arange(12.0).reshape(3, 4)


def looks_up_a_numpy_table(x):
    i = np.floor(x).astype(int) % 3
    return np.sum(TABLE[i, i] * x)


def looks_up_a_traced_copy(x):
    table = np.zeros_like(TABLE) + TABLE  # the advice the error gives
    i = np.floor(x).astype(int) % 3
    return np.sum(table[i, i] * x)


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
def test_a_numpy_array_indexed_by_a_traced_index_says_how_to_index_a_traced_one(backend):
    x = np.array([0.5, 1.5, 2.5])
    with pytest.raises(cr.TraceError, match=r"looks_up_a_numpy_table\(\): a NumPy array indexed by a traced value"):
        cr.grad(looks_up_a_numpy_table, backend=backend)(x)
    np.testing.assert_array_equal(cr.grad(looks_up_a_traced_copy, backend=backend)(x), TABLE[[0, 1, 2], [0, 1, 2]])
