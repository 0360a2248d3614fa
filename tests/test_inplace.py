"""Writes into arrays inside traced functions: ``a[i] = v``, ``a[i] += v``, ``a *= b``, ``np.add.at``.

Every function here is plain NumPy code, run eagerly by NumPy for the expected values and
finite differences, and traced by chainrule. Gradients are checked against fourth-order
central differences (relative error < 1e-7), forward mode against reverse mode, and the
LLVM backend against the NumPy backend.
"""

from __future__ import annotations

import numpy as np
import pytest
from gradient_helpers import numerical_gradient, relative_error, weighted_sum

import chainrule as cr


def uniform(low, high, shape, seed=0):
    return np.random.default_rng(seed).uniform(low, high, size=shape)


def check_gradient(fn, *args, argnum=0):
    """Reverse mode on both backends against finite differences; forward mode against reverse."""
    expected = numerical_gradient(fn, args, argnum)
    on_numpy = cr.grad(fn, argnums=argnum)(*args)
    on_llvm = cr.grad(fn, argnums=argnum, backend="llvm")(*args)
    assert relative_error(on_numpy, expected) < 1e-7
    np.testing.assert_allclose(on_llvm, on_numpy, rtol=1e-12, atol=1e-14)
    tangent = uniform(-1, 1, np.shape(args[argnum]), seed=5)
    floats = [i for i, a in enumerate(args) if np.asarray(a).dtype.kind == "f"]  # integer ones stay fixed

    def of_floats(*float_args):
        full = list(args)
        for i, a in zip(floats, float_args):
            full[i] = a
        return fn(*full)

    tangents = tuple(tangent if i == argnum else np.zeros_like(args[i]) for i in floats)
    _, forward = cr.jvp(of_floats, tuple(args[i] for i in floats), tangents)
    np.testing.assert_allclose(forward, np.sum(on_numpy * tangent), rtol=1e-10, atol=1e-12)


def check_value(fn, *args):
    """The traced function computes what NumPy computes, on both backends."""
    expected = fn(*args)
    np.testing.assert_allclose(cr.jit(fn)(*args), expected, rtol=1e-13, atol=0)
    np.testing.assert_allclose(cr.jit(fn, backend="llvm")(*args), expected, rtol=1e-13, atol=0)


# ---- the worked example: a heat-equation step written with slice assignment ------------------


def heat(u, steps=3, k=0.2):
    """Explicit finite differences for u_t = u_xx with the ends held at zero."""
    for _ in range(steps):
        u_new = np.zeros_like(u)
        u_new[1:-1] = u[1:-1] + k * (u[2:] - 2 * u[1:-1] + u[:-2])
        u = u_new
    return u


def heat_loss(u0):
    return weighted_sum(heat(u0) ** 2)


def test_heat_equation_steps_by_slice_assignment_match_numpy_and_finite_differences():
    u0 = uniform(-1, 1, (9,))
    check_value(heat, u0)
    check_gradient(heat_loss, u0)


def test_heat_step_gradient_is_the_transposed_stencil():
    # One step is u_new = A u with A the stencil on the interior rows and zero rows at the ends,
    # so the gradient of sum(w * u_new) is A.T @ w: written out here, not taken from chainrule.
    n, k = 6, 0.2
    stencil = np.zeros((n, n))
    for i in range(1, n - 1):
        stencil[i, i - 1 : i + 2] = [k, 1 - 2 * k, k]
    w = uniform(0.5, 1.5, (n,), seed=2)
    gradient = cr.grad(lambda u: np.sum(w * heat(u, steps=1, k=k)))(uniform(-1, 1, (n,)))
    np.testing.assert_allclose(gradient, stencil.T @ w, rtol=1e-14)


# ---- NumPy arrays created in the traced function -------------------------------------------


def fill_by_rows(x):
    out = np.zeros(x.shape[0])
    for i in range(x.shape[0]):
        out[i] = np.sum(np.sin(x[i]) * x[i])
    return weighted_sum(out)


def fill_first_column(x):
    out = np.empty_like(x)
    out[:, 0] = np.tanh(x[:, 1])
    out[:, 1:] = x[:, :-1] * x[:, 1:]
    return weighted_sum(out)


def fill_float32_with_float64(x):
    out = np.ones(3, dtype=np.float32)
    out[1] = x[0] * x[1]  # NumPy casts the float64 value to the array's float32
    return out


@pytest.mark.parametrize("fn", [fill_by_rows, fill_first_column])
def test_writing_into_arrays_made_by_np_zeros_and_np_empty_like(fn):
    x = uniform(-1, 1, (4, 3))
    check_value(fn, x)
    check_gradient(fn, x)


def test_a_float64_value_written_into_a_float32_array_is_cast():
    x = np.array([1.5, 3.0])
    result = cr.jit(fill_float32_with_float64)(x)
    assert result.dtype == np.float32
    np.testing.assert_array_equal(result, fill_float32_with_float64(x))


def test_np_full_with_a_traced_fill_value_is_traced():
    def fn(x):
        return weighted_sum(np.full((2, 3), x[0] * x[1]) + np.full_like(x, 2.0)[:2, None])

    x = uniform(-1, 1, (3,))
    check_value(fn, x)
    check_gradient(fn, x)


def make_int_index(x):
    index = np.zeros(2, dtype=int)  # integer arrays stay NumPy's: their values are needed
    index[1] = int(index.size)
    return x[index] * float(index[1])


def test_integer_arrays_made_in_the_function_stay_numpy_arrays():
    x = np.array([1.0, 2.0, 3.0])
    np.testing.assert_array_equal(cr.jit(make_int_index)(x), make_int_index(x))


def random_numbers_in_the_function(x):
    out = np.empty(3)  # the same line's callee is what is traced: rng.uniform's own np.empty is NumPy's
    noise = np.random.default_rng(1).uniform(size=3)
    out[:] = x * noise
    return weighted_sum(out)


def test_numpy_calls_made_by_compiled_code_the_user_called_get_numpy_arrays():
    x = uniform(-1, 1, (3,))
    check_gradient(random_numbers_in_the_function, x)


def write_into_a_literal_array(x):
    out = np.array([0.0, 0.0, 0.0])
    out[0] = x[0]
    return out


def write_into_a_prebound_zeros(x, zeros=np.zeros):
    out = zeros(3)  # bound before tracing: NumPy's own function
    out[0] = x[0]
    return out


@pytest.mark.parametrize("fn", [write_into_a_literal_array, write_into_a_prebound_zeros])
def test_a_numpy_array_that_cannot_hold_a_traced_value_is_a_trace_error_saying_what_to_do(fn):
    with pytest.raises(cr.TraceError) as info:
        cr.jit(fn)(np.ones(3))
    message = str(info.value)
    assert "out[0] = x[0]" in message and "np.zeros" in message


# ---- indices: basic, integer arrays, masks ------------------------------------------------


def written(write):
    """A function of (x, v): a copy of x with v written by ``write(a, v)``, reduced to a scalar."""

    def fn(x, v):
        a = x * 1.0
        write(a, v)
        return weighted_sum(a * a)

    return fn


def set_item(key):
    def write(a, v):
        a[key] = v

    return write


def add_item(key):
    def write(a, v):
        a[key] += v

    return write


WRITES = {
    "a[1]=v": (set_item(1), (4,)),
    "a[...,2]=v": (set_item((Ellipsis, 2)), (5,)),
    "a[None,1:3]=v": (set_item((None, slice(1, 3))), (2, 4)),
    "a[::-2,1]=v": (set_item((slice(None, None, -2), 1)), (3,)),
    "a[[0,4,0],1]=v": (set_item(([0, 4, 0], 1)), (3,)),
    "a[[[0],[2]],[1,3]]=v": (set_item((np.array([[0], [2]]), np.array([1, 3]))), (2, 2)),
    "a[mask]=v": (set_item(np.array([True, False, False, True, True])), (4,)),
    "a[:,mask]=v": (set_item((slice(None), np.array([True, False, True, False]))), (5, 2)),
    "a[2]+=v": (add_item(2), (4,)),
    "a[[1,1,3]]+=v": (add_item([1, 1, 3]), (3, 4)),
    "a[mask]+=v": (add_item(np.array([False, True, False, True, False])), (1, 4)),
}


@pytest.mark.parametrize("name", list(WRITES))
def test_writes_match_numpy_and_differentiate_in_both_arguments(name):
    write, value_shape = WRITES[name]
    fn = written(write)
    x, v = uniform(-1, 1, (5, 4)), uniform(-1, 1, value_shape, seed=1)
    check_value(fn, x, v)
    check_gradient(fn, x, v, argnum=0)
    check_gradient(fn, x, v, argnum=1)


def test_repeated_indices_in_a_set_keep_the_last_write_and_only_it_gets_a_gradient():
    def fn(x, v):
        a = x * 1.0
        a[[0, 2, 0]] = v
        return a

    x, v = np.array([1.0, 2.0, 3.0]), np.array([10.0, 20.0, 30.0])
    np.testing.assert_array_equal(cr.jit(fn)(x, v), [30.0, 2.0, 20.0])  # NumPy's answer
    gradient = cr.grad(lambda x, v: np.sum(fn(x, v) * np.array([1.0, 2.0, 4.0])), argnums=(0, 1))(x, v)
    np.testing.assert_array_equal(gradient[0], [0.0, 2.0, 0.0])  # both written positions overwritten
    np.testing.assert_array_equal(gradient[1], [0.0, 4.0, 1.0])  # v[0] was overwritten by v[2]


def test_plus_equals_with_repeated_indices_adds_once_as_numpy_does_and_add_at_accumulates():
    def plus_equals(x):
        a = x * 1.0
        a[[1, 1, 1]] += x[0]
        return a

    def add_at(x):
        a = x * 1.0
        np.add.at(a, [1, 1, 1], x[0])
        return a

    x = np.array([2.0, 5.0])
    np.testing.assert_array_equal(cr.jit(plus_equals)(x), [2.0, 7.0])
    np.testing.assert_array_equal(cr.jit(add_at)(x), [2.0, 11.0])
    np.testing.assert_array_equal(cr.jacobian(plus_equals)(x), [[1.0, 0.0], [1.0, 1.0]])
    np.testing.assert_array_equal(cr.jacobian(add_at)(x), [[1.0, 0.0], [3.0, 1.0]])


def test_np_add_at_with_repeats_in_two_dimensions():
    def fn(x, v):
        a = x * 1.0
        np.add.at(a, ([0, 2, 0, 0], [1, 1, 1, 3]), v * v)
        return weighted_sum(a * a)

    x, v = uniform(-1, 1, (3, 4)), uniform(-1, 1, (4,), seed=1)
    check_value(fn, x, v)
    check_gradient(fn, x, v, argnum=0)
    check_gradient(fn, x, v, argnum=1)


def test_traced_integer_index_arrays():
    def fn(x, labels):
        a = x * 1.0
        a[np.arange(3), labels] = np.exp(x[:, 0])
        return weighted_sum(a * x)

    x, labels = uniform(-1, 1, (3, 4)), np.array([2, 0, 2])
    check_value(fn, x, labels)
    check_gradient(fn, x, labels)


def test_a_traced_mask_writes_one_value_where_it_is_true():
    def clamp_negatives(x):
        a = x * 2.0
        a[a < 0] = 0.0
        a[x > 0.5] *= 3.0
        return weighted_sum(a * a)

    x = np.array([-0.7, 0.2, 0.9, -0.1, 0.6, 1.3])
    check_value(clamp_negatives, x)
    check_gradient(clamp_negatives, x)


def test_a_traced_mask_with_one_value_per_true_element_is_unsupported():
    def fn(x):
        a = x * 1.0
        a[x > 0] = np.array([1.0, 2.0])
        return a

    with pytest.raises(cr.UnsupportedError, match=r"np\.where"):
        cr.jit(fn)(np.array([1.0, -1.0, 2.0]))


# ---- in-place operators ---------------------------------------------------------------------


def in_place_operators(x, y):
    a = x * 1.0
    a += y
    a *= x
    a -= 0.5
    a /= 1.5 + y
    a **= 2
    b = x[:2] * 1.0
    b[1:] -= y[0]
    b[0] *= y[1]
    b[0] /= 2.0 + x[2]
    return weighted_sum(a) + weighted_sum(b)


def test_in_place_operators_match_numpy_and_finite_differences():
    x, y = uniform(0.5, 1.5, (3,)), uniform(0.5, 1.5, (3,), seed=1)
    check_value(in_place_operators, x, y)
    check_gradient(in_place_operators, x, y, argnum=0)
    check_gradient(in_place_operators, x, y, argnum=1)


def test_in_place_operators_keep_numpys_shape_and_casting_rules():
    def broadcast_into_smaller(x):
        a = x[0] * 1.0
        a += x
        return a

    def float_into_int(x):
        n = (x > 0).astype(int)
        n += x
        return n

    with pytest.raises(cr.ShapeError, match="non-broadcastable output"):
        cr.jit(broadcast_into_smaller)(np.ones((2, 3)))
    with pytest.raises(cr.TraceError, match="same_kind"):
        cr.jit(float_into_int)(np.ones(3))


def test_writing_values_that_do_not_fit_is_a_shape_error_naming_the_shapes():
    def fn(x):
        a = x * 1.0
        a[1:3] = x
        return a

    with pytest.raises(cr.ShapeError, match=r"from shape \[4\] into shape \[2\]"):
        cr.jit(fn)(np.ones(4))


# ---- names and aliasing: NumPy's semantics, or an error -----------------------------------


def names_share_the_written_array(x):
    a = x * 1.0
    b = a  # the same array: it sees the write
    c = a.copy()  # a new array: it does not
    a[0] = 5.0 * x[1]
    return b + 10 * c


def view_read_after_its_base_was_written(x):
    a = x * 1.0
    head = a[0:2]
    a[0] = np.sin(x[2])  # NumPy's view shows it
    return head * x[:2]


def write_through_views(x):
    a = np.zeros((3, 4))
    row = a[1]
    row[:] = x  # writes a's second row
    a[2][1:3] = x[:2] * x[2:]  # chained indexing writes a too
    a.T[0] = np.cos(x[:3])  # and so does a transposed view
    return a * row[None, :]


def overlapping_shift(x):
    a = x * 1.0
    a[1:] = a[:-1]  # NumPy reads the source before writing
    return a


def scalar_index_is_a_copy_ellipsis_a_view(x):
    a = x * 1.0
    scalar = a[0]  # a NumPy scalar, not a view
    zero_d = a[0, ...]  # a 0-d view
    a[0] = 7.0 * x[1]
    return scalar + 2 * zero_d


@pytest.mark.parametrize(
    "fn",
    [
        names_share_the_written_array,
        view_read_after_its_base_was_written,
        write_through_views,
        overlapping_shift,
        scalar_index_is_a_copy_ellipsis_a_view,
    ],
)
def test_aliases_see_writes_exactly_as_numpy_views_do(fn):
    x = uniform(-1, 1, (4,))
    check_value(fn, x)
    check_gradient(lambda x: weighted_sum(fn(x)), x)


def reshaped_view_read_after_write(x):
    a = x * 1.0
    flat = a.reshape(4)
    a[0, 0] = 5.0
    return flat


def base_read_after_a_reshaped_write(x):
    a = x * 1.0
    flat = a.reshape(4)
    flat[0] = 5.0
    return a


@pytest.mark.parametrize("fn", [reshaped_view_read_after_write, base_read_after_a_reshaped_write])
def test_aliasing_through_reshape_that_numpy_decides_by_layout_is_a_trace_error(fn):
    with pytest.raises(cr.TraceError, match="reshape"):
        cr.jit(fn)(np.ones((2, 2)))


def reshaped_fresh_array(x):
    grid = np.zeros(6).reshape(2, 3)  # the base is never used again: nothing to disagree about
    grid[1] = x
    copied = x.reshape(3, 1).copy()
    copied[0] = 2.0
    return weighted_sum(grid) + weighted_sum(copied)


def reshaped_view_never_used_after_the_write(x):
    a = x * 1.0
    flat = a.reshape(4)  # noqa: F841  (a stale view that is not used again is no error)
    a[0, 0] = 5.0
    return np.sin(a)


def test_a_stale_reshaped_view_that_is_never_used_again_is_no_error():
    x = uniform(-1, 1, (2, 2))
    check_value(reshaped_view_never_used_after_the_write, x)


def test_a_reshaped_array_whose_base_is_never_used_again_can_be_written():
    x = uniform(-1, 1, (3,))
    check_value(reshaped_fresh_array, x)
    check_gradient(reshaped_fresh_array, x)


def test_writing_into_a_broadcast_view_is_read_only_as_in_numpy():
    def fn(x):
        b = np.broadcast_to(x, (2, 3))
        b[0, 0] = 1.0
        return b

    with pytest.raises(cr.TraceError, match="read-only"):
        cr.jit(fn)(np.ones(3))


def test_the_argument_is_not_changed_by_a_compiled_write():
    def fn(x):
        x[0] = 2.0 * x[1]
        return x

    x = np.array([1.0, 3.0])
    np.testing.assert_array_equal(cr.jit(fn)(x), [6.0, 3.0])
    np.testing.assert_array_equal(x, [1.0, 3.0])  # the compiled function is functional


# ---- transformations over writes ----------------------------------------------------------


def test_hessian_through_writes_matches_finite_differences_of_the_gradient():
    def fn(x):
        a = np.zeros(4)
        a[1:] = x[:-1] * x[1:]
        a[[0, 0]] += np.sin(x[:2])
        return np.sum(a * a)

    x = uniform(-1, 1, (4,))
    gradient = cr.grad(fn)
    expected = np.stack([numerical_gradient(lambda y, i=i: gradient(y)[i], (x,), 0) for i in range(4)])
    assert relative_error(cr.hessian(fn)(x), expected) < 1e-7


def test_vectorized_jacobian_of_writes_matches_one_pass_per_row():
    def fn(x, v):
        a = x * 1.0
        a[[2, 0, 2]] = v * x[1]
        np.add.at(a, [1, 1], v[:2])
        return a * a

    x, v = uniform(-1, 1, (4,)), uniform(-1, 1, (3,), seed=1)
    for argnum in (0, 1):
        reverse = cr.jacobian(fn, argnums=argnum)
        jacobian = reverse(x, v)
        assert reverse.kernel_calls == 1  # the rows ran as one vectorized program: batching rules held
        rows = [numerical_gradient(lambda *a, i=i: fn(*a)[i], (x, v), argnum) for i in range(4)]
        assert relative_error(jacobian, np.stack(rows)) < 1e-7
        forward = cr.jacobian(fn, argnums=argnum, mode="fwd")(x, v)
        np.testing.assert_allclose(forward, jacobian, rtol=1e-12, atol=1e-14)


def writes_into_new_arrays_made_by_numpy_functions(x):
    y = np.positive(x)
    y[0] = 5.0 * x[1]
    z = np.roll(x, 0)
    z[1] = 7.0 * x[2]
    w = np.pad(x, 0)
    w[2] = 9.0 * x[0]
    return x + y + z + w


def test_functions_that_make_new_arrays_keep_writes_out_of_their_argument():
    x = uniform(-1, 1, (3,))
    check_value(writes_into_new_arrays_made_by_numpy_functions, x)
    check_gradient(lambda x: weighted_sum(writes_into_new_arrays_made_by_numpy_functions(x)), x)
