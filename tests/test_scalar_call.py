"""The native scalar entry: an all-float64-scalar kernel called with plain doubles (kernel.py).

It must give exactly what the array path gives, be what ``cr.grad(f)(4.2)`` calls, stay away from
signatures it cannot serve, and be safe from several threads at once.
"""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest

import chainrule as cr
from chainrule.backends.llvm import python_entry
from chainrule.cli.nested_function import SEED_DEPTH, SEED_DERIVATIVE, X0, nested_numpy
from chainrule.errors import NonFiniteError


def kernel_of(compiled, *args):
    entry, _ = compiled._specialize(args)
    return entry.kernel


def central_difference(f, x, step=1e-6):
    return (f(x + step) - f(x - step)) / (2 * step)


def test_the_nested_gradient_is_the_seed_value_and_takes_the_native_entry():
    grad = cr.grad(nested_numpy(SEED_DEPTH), backend="llvm")
    value = grad(X0)
    kernel = kernel_of(grad, X0)
    assert kernel.scalar_outputs is not None and len(kernel.scalar_outputs) == len(kernel.lowered.outputs)
    assert grad._scalar_call[1] is kernel.scalar_outputs[1]  # the call is the native function itself
    assert type(value) is float
    assert value == pytest.approx(SEED_DERIVATIVE, rel=1e-10)


@pytest.mark.parametrize("x", [X0, -0.7, 0.3, 2.5])
def test_the_native_entry_gives_exactly_the_array_path(x):
    grad = cr.grad(nested_numpy(SEED_DEPTH), backend="llvm")
    fast = grad(x)
    _, gradient = kernel_of(grad, x).fn(np.asarray(x))
    assert fast == gradient  # bit for bit: the same entry function runs
    numpy_gradient = cr.grad(nested_numpy(SEED_DEPTH))(x)
    assert fast == pytest.approx(numpy_gradient, rel=1e-12)


def test_constants_and_a_second_traced_argument():  # y, a Python float, is a traced input too
    def f(x, y):
        return np.exp(0.5 * x) * np.sin(y) + np.log1p(x * x) / (1.5 + np.cos(y)) + np.float64(0.25) * x**3

    grad = cr.grad(f, argnums=0, backend="llvm")
    for x, y in [(0.4, 1.1), (-1.3, 2.0), (2.2, -0.5)]:
        fast = grad(x, y)
        kernel = kernel_of(grad, x, y)
        assert kernel.scalar_outputs is not None
        assert fast == kernel.fn(np.asarray(x), np.asarray(y))[-1]
        assert fast == pytest.approx(central_difference(lambda v, y=y: f(v, y), x), rel=1e-7)


def test_a_numpy_scalar_argument_gets_a_numpy_scalar_back():
    grad = cr.grad(lambda x: np.sin(x) * x, backend="llvm")
    x = np.float64(0.9)
    fast = grad(x)
    assert type(fast) is np.float64
    assert fast == pytest.approx(math.cos(0.9) * 0.9 + math.sin(0.9), rel=1e-14)
    assert kernel_of(grad, x).scalar_outputs is not None


@pytest.mark.parametrize(
    "make_args",
    [
        lambda: (np.ones(3),),  # an array input
        lambda: (np.float32(0.5),),  # another dtype
    ],
)
def test_signatures_with_arrays_or_other_dtypes_have_no_scalar_entry(make_args):
    grad = cr.grad(lambda x: np.sum(np.sin(x) * x), backend="llvm")
    args = make_args()
    expected = np.cos(args[0]) * args[0] + np.sin(args[0])
    np.testing.assert_allclose(grad(*args), expected, rtol=1e-6)
    assert kernel_of(grad, *args).scalar_outputs is None


def test_an_array_output_has_no_scalar_entry():
    jitted = cr.jit(lambda x: np.sin(x) * np.arange(3.0), backend="llvm")
    np.testing.assert_allclose(jitted(0.5), np.sin(0.5) * np.arange(3.0), rtol=1e-15)
    assert kernel_of(jitted, 0.5).scalar_outputs is None


def test_value_and_grad_of_a_scalar_agrees_with_grad():
    f = nested_numpy(10)
    value, gradient = cr.value_and_grad(f, backend="llvm")(0.8)
    assert gradient == cr.grad(f, backend="llvm")(0.8)
    assert value == pytest.approx(f(0.8), rel=1e-13)


def test_eight_threads_calling_one_scalar_gradient_get_their_own_results():
    grad = cr.grad(nested_numpy(SEED_DEPTH), backend="llvm")
    inputs = [0.1 * k + 0.05 for k in range(8)]
    expected = [kernel_of(grad, x).fn(np.asarray(x))[1] for x in inputs]
    grad(inputs[0])  # the native entry is in place before the threads start
    results: dict[int, list[float]] = {}
    start = threading.Barrier(len(inputs))

    def work(k):
        start.wait()
        results[k] = [grad(inputs[k]) for _ in range(2_000)]

    threads = [threading.Thread(target=work, args=(k,)) for k in range(len(inputs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for k, x in enumerate(inputs):
        assert set(results[k]) == {expected[k]}, f"thread {k} (x={x}) saw another call's result"


def test_check_nans_keeps_its_checks_on_a_scalar_call():
    grad = cr.grad(lambda x: np.sqrt(x) * np.log(x), backend="llvm", check_nans=True)
    assert grad(2.0) == pytest.approx((np.log(2.0) / 2 + 1) / np.sqrt(2.0), rel=1e-14)
    with pytest.raises(NonFiniteError):
        grad(-1.0)


def test_a_large_arena_has_no_scalar_entry():
    def f(x):  # intermediates of 4,000 float64s: 32 KB, more than a small thread stack should hold
        return np.sum(np.cumsum(np.sin(x * np.linspace(0.0, 1.0, 4_000))) ** 2)

    grad = cr.grad(f, backend="llvm")
    kernel = kernel_of(grad, 0.7)
    assert kernel.lowered.arena_bytes > python_entry.SCALAR_ENTRY_MAX_ARENA
    assert kernel.scalar_outputs is None
    assert grad(0.7) == pytest.approx(central_difference(f, 0.7), rel=1e-7)
