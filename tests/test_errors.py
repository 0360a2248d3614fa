"""Errors (DESIGN.md, "Errors"): bad input raises a chainrule exception that names the
user's source line and the shapes involved and suggests the fix, never a traceback from
deep inside a pass.
"""

import inspect
import traceback

import numpy as np
import pytest

import chainrule as cr


def line_of(fn, text):
    """The line number of the one line of ``fn``'s source containing ``text``."""
    lines, start = inspect.getsourcelines(fn)
    (offset,) = [i for i, line in enumerate(lines) if text in line]
    return start + offset


def raised(error_type, fn, *args, argnums=0):
    with pytest.raises(error_type) as info:
        cr.grad(fn, argnums)(*args)
    return info.value


# ---- shapes -----------------------------------------------------------------------------------


def add_mismatched(x, y):
    return np.sum(x + y)


def matmul_mismatched(a, b):
    return np.sum(a @ b)


def test_broadcast_mismatch_names_both_shapes_and_the_users_line():
    error = raised(cr.ShapeError, add_mismatched, np.ones((3, 4)), np.ones(5))
    message = str(error)
    assert "[3, 4]" in message and "[5]" in message
    assert f"test_errors.py:{line_of(add_mismatched, 'x + y')}" in message
    assert "return np.sum(x + y)" in message  # the source line is quoted
    assert "add_mismatched" in message


def test_matmul_mismatch_names_both_shapes_and_the_users_line():
    error = raised(cr.ShapeError, matmul_mismatched, np.ones((3, 4)), np.ones((5, 2)))
    message = str(error)
    assert "[3, 4]" in message and "[5, 2]" in message
    assert f"test_errors.py:{line_of(matmul_mismatched, 'a @ b')}" in message
    assert "return np.sum(a @ b)" in message


def test_shape_error_is_raised_without_a_chained_internal_exception():
    error = raised(cr.ShapeError, add_mismatched, np.ones((3, 4)), np.ones(5))
    assert error.__cause__ is None
    # `raise ... from None` inside an except block still records __context__ (here: the same
    # ShapeError before it knew the user's line) but suppresses it, so the traceback shows
    # one error, not "During handling of the above exception, another exception occurred".
    assert error.__context__ is None or error.__suppress_context__
    printed = "".join(traceback.format_exception(error))
    assert "During handling" not in printed and "direct cause" not in printed
    assert printed.count("ShapeError") == 1


# ---- tracing ----------------------------------------------------------------------------------


def python_if(x):
    if x > 0:
        return x
    return -x


def test_python_if_on_a_traced_value_suggests_np_where_and_names_the_line():
    error = raised(cr.TraceError, python_if, 1.0)
    message = str(error)
    assert "np.where" in message
    assert f"test_errors.py:{line_of(python_if, 'if x > 0')}" in message
    assert "if x > 0:" in message


def to_float(x):
    return float(x) * 2.0


def to_item(x):
    return x.item() * 2.0


@pytest.mark.parametrize("fn, text", [(to_float, "return float(x)"), (to_item, "return x.item()")])
def test_converting_a_traced_value_to_a_python_number_is_a_trace_error(fn, text):
    error = raised(cr.TraceError, fn, np.ones(1))
    message = str(error)
    assert f"test_errors.py:{line_of(fn, text)}" in message
    assert "not known while tracing" in message


def add_into_numpy_array(x):
    a = np.array([0.0, 0.0, 0.0])  # np.array is not traced (np.zeros would be: tests/test_inplace.py)
    a += x
    return np.sum(a)


def test_in_place_add_into_a_numpy_array_is_a_trace_error_suggesting_a_new_array():
    error = raised(cr.TraceError, add_into_numpy_array, np.ones(3))
    message = str(error)
    assert f"test_errors.py:{line_of(add_into_numpy_array, 'a += x')}" in message
    assert "a = a + b" in message


def test_a_traced_value_used_after_its_trace_ended_is_a_trace_error():
    leaked = []

    def leak(x):
        leaked.append(x)
        return np.sum(x)

    cr.grad(leak)(np.ones(2))
    with pytest.raises(cr.TraceError, match="escaped"):
        np.sin(leaked[0])


# ---- unsupported NumPy ------------------------------------------------------------------------


def uses_eig(x):
    return np.sum(np.linalg.eig(x)[0])


def uses_histogram(x):
    return np.sum(np.histogram(x)[0])


@pytest.mark.parametrize(
    "fn, name, text",
    [
        (uses_eig, "np.linalg.eig", "np.linalg.eig(x)"),
        (uses_histogram, "np.histogram", "np.histogram(x)"),
    ],
)
def test_unsupported_numpy_function_is_named_with_the_users_line(fn, name, text):
    error = raised(cr.UnsupportedError, fn, np.ones((3, 3)))
    message = str(error)
    assert name in message
    assert f"test_errors.py:{line_of(fn, text)}" in message


def boolean_mask(x):
    return np.sum(x[x > 0])


def test_boolean_mask_indexing_is_unsupported_and_suggests_np_where():
    error = raised(cr.UnsupportedError, boolean_mask, np.array([1.0, -1.0, 2.0]))
    message = str(error)
    assert "boolean-mask indexing" in message and "np.where" in message
    assert f"test_errors.py:{line_of(boolean_mask, 'x[x > 0]')}" in message


# ---- outputs and arguments --------------------------------------------------------------------


def test_grad_of_a_non_scalar_output_names_the_shape_and_suggests_a_reduction():
    error = raised(cr.OutputError, lambda x: x * 2.0, np.ones((3, 4)))
    message = str(error)
    assert "[3,4]" in message
    assert "np.sum" in message and "np.mean" in message


def test_grad_with_respect_to_a_string_is_an_argument_error():
    error = raised(cr.ArgumentError, lambda x, label: np.sum(x), np.ones(2), "name", argnums=1)
    message = str(error)
    assert "argument 1" in message and "label" in message and "str" in message
    assert "argnums" in message


def test_grad_with_respect_to_an_integer_array_is_an_argument_error_suggesting_floats():
    error = raised(cr.ArgumentError, lambda n: np.sum(n * 2), np.arange(3))
    message = str(error)
    assert "argument 0" in message and "i64[3]" in message
    assert "float" in message and "astype(float)" in message


def test_argnums_out_of_range_is_an_argument_error():
    error = raised(cr.ArgumentError, lambda x: np.sum(x), np.ones(2), argnums=2)
    assert "argnums=2" in str(error) and "1 arguments" in str(error)


def test_argnums_out_of_range_of_a_nameless_function_is_an_argument_error():
    # a functools.partial has no __name__: the message names it by its repr
    import functools

    error = raised(cr.ArgumentError, functools.partial(lambda x, y: np.sum(x * y), y=1.0), np.ones(2), argnums=1)
    assert "argnums=1" in str(error) and "functools.partial" in str(error)
    linearized = cr.hvp(functools.partial(lambda x, y: np.sum(x * y), y=1.0), argnums=1)
    with pytest.raises(cr.ArgumentError, match="argnums=1"):
        linearized(np.ones(2), np.ones(2))


def test_grad_of_something_not_callable_is_an_argument_error():
    with pytest.raises(cr.ArgumentError, match="needs a function"):
        cr.grad(3.0)


def test_an_unknown_stage_is_an_argument_error_listing_the_stages():
    f = cr.jit(lambda x: x * 2.0)
    with pytest.raises(cr.ArgumentError, match="traced, simplified, checkpointed, fused, scheduled"):
        f.graph(np.ones(2), stage="grad")


# ---- the hierarchy and the cache after a failure ----------------------------------------------


def test_every_error_kind_is_a_chainrule_error():
    for kind in (cr.ShapeError, cr.TraceError, cr.UnsupportedError, cr.ArgumentError, cr.OutputError):
        assert issubclass(kind, cr.ChainruleError)
    assert issubclass(cr.ChainruleError, Exception)


def test_a_failed_call_leaves_the_compiled_functions_cache_usable():
    f = cr.grad(add_mismatched)
    with pytest.raises(cr.ShapeError):
        f(np.ones((3, 4)), np.ones(5))
    assert len(f._cache) == 0
    good = (np.ones((3, 4)), np.full(4, 2.0))
    np.testing.assert_array_equal(f(*good), np.ones((3, 4)))
    np.testing.assert_array_equal(f(*good), np.ones((3, 4)))
    assert len(f._cache) == 1
    with pytest.raises(cr.ShapeError):  # failing again after a success does not disturb it
        f(np.ones((3, 4)), np.ones(5))
    assert len(f._cache) == 1
