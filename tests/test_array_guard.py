"""The Python guard of the last all-array signature (transforms/array_guard.py): the NumPy backend's
call skips call_key when the arguments match it, and anything else takes the general path with
the same results and the same errors (issue 16)."""

import gc
import weakref

import numpy as np
import pytest

import chainrule as cr
from chainrule.errors import ArgumentError, ChainruleError
from chainrule.transforms.scalar_call import MISSED


class _Subclass(np.ndarray):
    pass


def _error(call):
    with pytest.raises(ChainruleError) as error:
        call()
    return type(error.value), str(error.value)


def test_a_repeated_signature_runs_through_the_guard():
    f = cr.jit(lambda a, b: a @ b + np.sin(a))
    a, b = np.arange(9.0).reshape(3, 3), np.eye(3)
    f(a, b)
    assert f._array_call is not None and f._array_call.finish is not None
    for seed in range(3):  # new values each call: nothing is kept from the last one
        a, b = np.random.default_rng(seed).standard_normal((2, 3, 3))
        np.testing.assert_allclose(f(a, b), a @ b + np.sin(a), rtol=1e-14)
    assert tuple(f.cache_info()) == (3, 1, 1, 1)  # hits, misses, traces, kept kernels


def test_other_arguments_miss_the_guard_and_go_the_general_way():
    f = cr.grad(lambda x: np.sum(np.cumsum(x * x, axis=0)))
    x = np.arange(12.0).reshape(4, 3)
    expected = 2 * x * np.arange(4, 0, -1)[:, None]
    np.testing.assert_allclose(f(x), expected)
    guard = f._array_call.call
    other = [
        np.asfortranarray(x),  # another layout: the same kernel, through the general path
        x.astype(">f8" if np.little_endian else "<f8"),  # another byte order: another dtype object
        x.astype(np.float32),  # another dtype: another kernel
        x.view(_Subclass),  # a subclass
        np.arange(24.0).reshape(4, 3, 2)[..., 0],  # a strided view
    ]
    for value in other[1:4]:
        assert guard(value) is MISSED
    assert guard(x, x) is MISSED and guard() is MISSED
    for value in other:
        gradient = f(value)
        plain = np.asarray(value)
        np.testing.assert_allclose(gradient, 2 * plain * np.arange(4, 0, -1)[:, None], rtol=1e-6)
        assert np.asarray(gradient).dtype == plain.dtype.newbyteorder("=")  # native, as NumPy's
    np.testing.assert_allclose(f(x), expected)


def test_a_new_shape_or_dtype_moves_the_guard_to_the_new_signature():
    f = cr.jit(lambda x: np.sum(x**2))
    small, large = np.arange(3.0), np.arange(5.0)
    assert f(small) == 5.0
    assert f(large) == 30.0  # compiles: the guard is now the new signature's
    assert f._array_call.call(small) is MISSED
    assert f._array_call.call(large) == (30.0,)
    assert f(small) == 5.0 and f(large) == 30.0  # the old one still runs, through call_key
    single = np.arange(3, dtype=np.float32)
    assert f(single) == 5.0 and f(single).dtype == np.float32
    assert f._array_call.call(single) == (5.0,)
    assert f.cache_info().misses == 3


def test_errors_after_the_guard_are_the_general_paths():
    w = np.ones(3)

    def loss(x, y):
        return np.sum(x @ w) * y.sum()

    primed = cr.grad(loss)
    x, y = np.arange(3.0), np.ones(2)
    np.testing.assert_allclose(primed(x, y), np.full(3, 2.0))
    assert primed._array_call is not None
    bad_calls = [
        lambda f: f(np.arange(4.0), y),  # a shape the user's line rejects
        lambda f: f(x),  # too few arguments
        lambda f: f(x, y, "extra"),  # too many
    ]
    for bad in bad_calls:
        assert _error(lambda bad=bad: bad(primed)) == _error(lambda bad=bad: bad(cr.grad(loss)))
    with pytest.raises(ArgumentError, match="argnums=3"):
        cr.grad(loss, argnums=3)(x, y)
    np.testing.assert_allclose(primed(x, y), np.full(3, 2.0))  # still fine afterwards


@pytest.mark.parametrize("transform", ["grad", "value_and_grad"])
@pytest.mark.parametrize("argnums", [0, (0, 1), (1, 0)])
def test_gradients_through_the_guard_are_the_general_paths(transform, argnums):
    def loss(a, b):
        return np.sum(np.tanh(a) * b)

    a, b = np.linspace(-1, 1, 6).reshape(2, 3), np.arange(6.0).reshape(2, 3)
    make = getattr(cr, transform)
    f = make(loss, argnums=argnums)
    first, second = f(a, b), f(a, b)  # the second through the guard
    expected = {0: b / np.cosh(a) ** 2, 1: np.tanh(a)}
    grads = first[1] if transform == "value_and_grad" else first
    for result in (first, second):
        gradients = result[1] if transform == "value_and_grad" else result
        if isinstance(argnums, int):
            np.testing.assert_allclose(gradients, expected[argnums], rtol=1e-14)
        else:
            assert isinstance(gradients, tuple) and len(gradients) == 2
            for gradient, number in zip(gradients, argnums):
                np.testing.assert_allclose(gradient, expected[number], rtol=1e-14)
        if transform == "value_and_grad":
            assert result[0] == pytest.approx(loss(a, b), rel=1e-14)
    assert type(grads) is type(second[1] if transform == "value_and_grad" else second)


def test_a_zero_dimensional_array_keeps_its_gradients_type():
    f = cr.grad(lambda x: x * x)
    x = np.array(3.0)
    first, second = f(x), f(x)
    for gradient in (first, second):
        assert type(gradient) is np.ndarray and gradient.shape == () and gradient == 6.0


def test_the_guard_keeps_no_reference_to_its_compiled_function():
    f = cr.jit(lambda x: x + 1.0)
    f(np.ones(2))
    f(np.ones(2))
    assert f._array_call is not None
    collecting = gc.isenabled()
    gc.disable()
    try:
        reference = weakref.ref(f)
        del f
        assert reference() is None  # freed by its reference count, no cycle through the guard
    finally:
        if collecting:
            gc.enable()


def test_the_guard_serves_llvm_kernels_without_an_array_builtin():
    pytest.importorskip("llvmlite")
    # a cumulative sum of a large array: too much work for an array builtin that holds the GIL
    f = cr.jit(lambda x: np.cumsum(x * 2.0), backend="llvm")
    x = np.arange(200_000.0)
    np.testing.assert_allclose(f(x), np.cumsum(x * 2.0))
    assert f._array_call is not None
    np.testing.assert_allclose(f(x[::-1].copy()), np.cumsum(x[::-1] * 2.0))
    with pytest.raises(ChainruleError):
        f(x.reshape(2, -1), 1)
