"""The NumPy backend's generated code and the per-call path: fast, and exactly what the graph says."""

from collections import namedtuple

import numpy as np
import pytest

import chainrule as cr
from chainrule.backends.numpy import where_else_zero


def bce_loss(p, X, Y):
    """Seed 002 12.10.1's network, two layers: column-major W @ A + b, relu, sigmoid, mean BCE."""
    m = Y.shape[1]
    A1 = np.maximum(0, np.dot(p["W1"], X) + p["b1"])
    A2 = 1.0 / (1.0 + np.exp(-(np.dot(p["W2"], A1) + p["b2"])))
    return -(1 / m) * np.sum(Y * np.log(A2) + (1 - Y) * np.log(1 - A2))


def bce_by_hand(p, X, Y):
    m = Y.shape[1]
    Z1 = np.dot(p["W1"], X) + p["b1"]
    A1 = np.maximum(0, Z1)
    A2 = 1.0 / (1.0 + np.exp(-(np.dot(p["W2"], A1) + p["b2"])))
    dZ2 = A2 - Y
    dZ1 = np.dot(p["W2"].T, dZ2) * (Z1 > 0)
    return {
        "W1": dZ1 @ X.T / m,
        "b1": np.sum(dZ1, axis=1, keepdims=True) / m,
        "W2": dZ2 @ A1.T / m,
        "b2": np.sum(dZ2, axis=1, keepdims=True) / m,
    }


def bce_problem(examples=50, seed=0):
    rng = np.random.default_rng(seed)
    p = {
        "W1": rng.normal(size=(4, 2)),
        "b1": rng.normal(size=(4, 1)),
        "W2": rng.normal(size=(1, 4)),
        "b2": rng.normal(size=(1, 1)),
    }
    return p, rng.normal(size=(2, examples)), (rng.random((1, examples)) > 0.5).astype(float)


# ---- where(condition, x, 0) as a bit mask ------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16])
def test_where_else_zero_is_np_where_bit_for_bit(dtype):
    x = np.array([1.5, -2.0, np.inf, -np.inf, np.nan, -0.0, 0.0, 3.0], dtype=dtype)
    for condition in (x > 0, ~(x > 0), np.ones(8, bool), np.zeros(8, bool)):
        expected = np.where(condition, x, 0)
        got = where_else_zero(condition, x)
        assert got.dtype == expected.dtype and got.shape == expected.shape
        assert got.tobytes() == expected.tobytes()  # NaN, -0.0 and +0.0 included


def test_where_else_zero_reads_non_contiguous_operands():
    x = np.arange(24.0).reshape(4, 6) - 10
    condition = (x > 0).T
    assert where_else_zero(condition, x.T).tobytes() == np.where(condition, x.T, 0.0).tobytes()


def test_relu_gradient_of_a_large_array_keeps_where_semantics_for_inf_and_nan_cotangents():
    # relu'(x) * g is where(x > 0, g, 0): an inf or NaN cotangent where x <= 0 gives 0, not NaN.
    x = np.linspace(-1.0, 1.0, 20001)  # big enough for the bit-mask form
    w = np.ones_like(x)
    w[:5] = [np.inf, -np.inf, np.nan, 2.0, 3.0]  # all at x < 0
    w[-3:] = [np.inf, np.nan, 4.0]  # at x > 0
    f = cr.grad(lambda x, w: np.sum(np.maximum(0, x) * w))
    assert "where_else_zero" in f.source(x, w)
    with np.errstate(invalid="ignore"):
        gradient = f(x, w)
    assert gradient.tobytes() == np.where(x > 0, w, 0.0).tobytes()


# ---- what the generated code looks like --------------------------------------------------------


def test_a_sum_backward_multiplies_by_its_scalar_cotangent_without_broadcasting_it():
    source = cr.value_and_grad(bce_loss).source(*bce_problem())  # (grad's kernel skips the value)
    assert "broadcast_to" not in source and "reshape" not in source
    assert "(-0.02) * " in source  # -(1/m), m = 50, written as a number


def test_gradients_computed_in_the_function_are_returned_without_a_copy():
    source = cr.grad(bce_loss).source(*bce_problem())
    assert "np.array(" not in source


def test_matmul_gradients_read_like_the_seed():
    source = cr.grad(bce_loss).source(*bce_problem())
    assert "@ X.T" in source and "@ A1.T" in source and "p_W2.T @" in source


def test_gradients_agree_with_the_hand_written_backward_pass(backend):
    p, X, Y = bce_problem()
    grads = cr.grad(bce_loss, backend=backend)(p, X, Y)
    expected = bce_by_hand(p, X, Y)
    for key, value in expected.items():
        np.testing.assert_allclose(grads[key], value, rtol=1e-12, atol=1e-15)


def test_outputs_sharing_a_buffer_are_returned_as_separate_arrays(backend):
    doubled, transposed, flat = cr.jit(lambda a: (a * 2, (a * 2).T, np.reshape(a * 2, (-1,))), backend=backend)(
        np.ones((2, 3))
    )
    assert not np.shares_memory(doubled, transposed) and not np.shares_memory(doubled, flat)
    assert transposed.flags.writeable and flat.flags.writeable
    np.testing.assert_array_equal(transposed, np.full((3, 2), 2.0))


@pytest.mark.parametrize("constant", [np.inf, -np.inf])
def test_infinite_constants_in_generated_code(constant, backend):
    x = np.array([-1.0, 0.0, 2.0])
    np.testing.assert_array_equal(
        cr.jit(lambda x: np.maximum(x, constant), backend=backend)(x), np.maximum(x, constant)
    )
    np.testing.assert_array_equal(cr.jit(lambda x: x + constant, backend=backend)(x), x + constant)


def test_nan_constants_in_generated_code(backend):
    assert np.isnan(cr.jit(lambda x: x * np.nan, backend=backend)(np.ones(3))).all()


# ---- the per-call path ---------------------------------------------------------------------------


def test_repeated_calls_with_new_values_give_new_results_from_one_specialization(backend):
    f = cr.value_and_grad(bce_loss, backend=backend)
    for seed in range(3):
        p, X, Y = bce_problem(seed=seed)
        value, grads = f(p, X, Y)
        assert value == pytest.approx(bce_loss(p, X, Y), rel=1e-13)
        for key, expected in bce_by_hand(p, X, Y).items():
            np.testing.assert_allclose(grads[key], expected, rtol=1e-12, atol=1e-15)
    assert len(f._cache) == 1


def test_a_new_batch_size_gets_its_own_specialization(backend):
    f = cr.grad(bce_loss, backend=backend)
    for examples in (50, 7, 50, 7):
        p, X, Y = bce_problem(examples)
        np.testing.assert_allclose(f(p, X, Y)["W1"], bce_by_hand(p, X, Y)["W1"], rtol=1e-12, atol=1e-15)
    assert len(f._cache) == 2


def test_scalar_gradients_keep_their_input_types_on_every_call(backend):
    f = cr.grad(lambda a, b, c: a * a * b * np.sum(c * c), argnums=(0, 1, 2), backend=backend)
    for _ in range(2):  # the first call compiles; the second takes the cached path
        da, db, dc = f(3.0, np.float32(2.0), np.array(1.0))
        assert type(da) is float and da == 12.0
        assert type(db) is np.float32 and db == 9.0
        assert type(dc) is np.ndarray and dc.shape == () and dc == 36.0


def test_structures_with_lists_tuples_none_and_namedtuples_round_trip(backend):
    Config = namedtuple("Config", "scale")

    def loss(params, config):
        first, (second, _) = params
        return config.scale * np.sum(first * second[0])

    x, y = np.arange(3.0), np.ones(3)
    f = cr.grad(loss, backend=backend)
    for scale in (2.0, 2.0, 3.0):
        grads = f([x, ([y], None)], Config(scale))
        assert isinstance(grads, list) and grads[1][1] is None and isinstance(grads[1][0], list)
        np.testing.assert_array_equal(grads[0], scale * y)
        np.testing.assert_array_equal(grads[1][0][0], scale * x)
    assert len(f._cache) == 1  # a NamedTuple is a pytree and its float is traced: one kernel for every scale


class Unhashable:
    __hash__ = None


def test_an_unhashable_static_argument_is_an_argument_error_on_every_call():
    f = cr.grad(lambda x, options: np.sum(x))
    for _ in range(2):
        with pytest.raises(cr.ArgumentError):
            f(np.ones(2), Unhashable())


def test_a_dict_with_the_same_keys_in_another_order_is_another_structure():
    f = cr.grad(lambda p: np.sum(p["a"] * 2.0 + p["b"]))
    first = f({"a": np.ones(2), "b": np.ones(2)})
    second = f({"b": np.ones(2), "a": np.ones(2)})
    assert list(first) == ["a", "b"] and list(second) == ["b", "a"]
    np.testing.assert_array_equal(second["a"], np.full(2, 2.0))
