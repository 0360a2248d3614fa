"""The llvm scalar gradient as a CPython builtin (backends/llvm/python_entry.py).

Python floats in: the builtin's native guard passes and the kernel runs without ctypes; anything
else: the guard fails and the general path runs, with its checks and errors. A gradient of floats
is then called as a builtin of its own, with no Python frame; it pickles, and dies, as any other.
A million calls leave every reference count and the traced memory where they were.
"""

from __future__ import annotations

import gc
import os
import pickle
import sys
import tracemalloc
import weakref

import numpy as np
import pytest

import chainrule as cr
from chainrule.backends.llvm import python_entry
from chainrule.cli.nested_function import SEED_DEPTH, SEED_DERIVATIVE, X0, nested_numpy
from chainrule.errors import ArgumentError, ChainruleError
from chainrule.transforms.compiled import Compiled
from chainrule.transforms.scalar_call import MISSED

pytestmark = pytest.mark.skipif(not python_entry.available(), reason="this interpreter has no CPython C API")


def sine_times_x(x):
    return np.sin(x) * x


def derivative_of_sine_times_x(x):
    return np.cos(x) * x + np.sin(x)


def warmed(fn, *args, **options):
    grad = cr.grad(fn, backend="llvm", **options)
    grad(*args)
    grad(*args)
    return grad


def test_python_floats_take_the_builtin_and_get_what_the_native_entry_gives():
    grad = warmed(nested_numpy(SEED_DEPTH), X0)
    builtin = grad._scalar_call.builtin
    assert builtin is not None and type(builtin).__name__ == "builtin_function_or_method"
    entry, _ = grad._specialize((X0,))
    for x in (X0, -0.7, 0.3, 2.5):
        value = grad(x)
        assert type(value) is float
        assert value == entry.kernel.scalar_outputs[1](x)  # bit for bit: the same native code
        assert value == builtin(x)
    assert grad(X0) == pytest.approx(SEED_DERIVATIVE, rel=1e-10)


def test_the_builtin_agrees_with_finite_differences_for_two_arguments():
    def f(x, y):
        return np.exp(0.5 * x) * np.sin(y) + np.log1p(x * x) / (1.5 + np.cos(y))

    grad = warmed(f, 0.4, 1.1)
    assert grad._scalar_call.builtin is not None
    for x, y in [(0.4, 1.1), (-1.3, 2.0), (2.2, -0.5)]:
        step = 1e-6
        expected = (f(x + step, y) - f(x - step, y)) / (2 * step)
        assert grad(x, y) == pytest.approx(expected, rel=1e-7)


def test_other_arguments_miss_the_guard_and_take_the_general_path():
    grad = warmed(sine_times_x, 0.5)
    builtin = grad._scalar_call.builtin
    assert builtin(np.float64(0.5)) is MISSED  # a float subclass is not a float
    assert builtin(1) is MISSED and builtin(0.5, 0.5) is MISSED and builtin() is MISSED
    numpy_scalar = grad(np.float64(0.9))
    assert type(numpy_scalar) is np.float64
    assert numpy_scalar == pytest.approx(derivative_of_sine_times_x(0.9), rel=1e-14)
    single = grad(np.float32(0.5))
    assert single.dtype == np.float32 and single == pytest.approx(derivative_of_sine_times_x(0.5), rel=1e-6)


@pytest.mark.parametrize(
    "args, error",
    [((3,), ArgumentError), (("a",), ArgumentError), ((), ArgumentError), ((0.5, 1.0), ChainruleError)],
)
def test_bad_arguments_after_the_builtin_raise_what_a_fresh_gradient_raises(args, error):
    def call(grad):  # one line of the user's, named by both messages
        return grad(*args)

    with pytest.raises(error) as after_builtin:
        call(warmed(sine_times_x, 0.5))
    with pytest.raises(error) as fresh:
        call(cr.grad(sine_times_x, backend="llvm"))
    assert str(after_builtin.value) == str(fresh.value)


def python_frames_of(function, *args):
    """The Python functions that ran during ``function(*args)``, and its result."""
    frames: list[str] = []
    sys.setprofile(lambda frame, event, arg: frames.append(frame.f_code.co_name) if event == "call" else None)
    try:
        result = function(*args)
    finally:
        sys.setprofile(None)
    return frames, result


def test_a_gradient_of_floats_is_called_as_its_builtin_without_a_python_frame():
    fresh = cr.grad(sine_times_x, backend="llvm")
    frames, _ = python_frames_of(fresh, 0.5)
    assert "__call__" in frames  # the first call compiles, in Python
    frames, value = python_frames_of(fresh, 0.25)
    assert frames == [] and value == derivative_of_sine_times_x(0.25)
    assert fresh.__call__ is fresh._fast_call and isinstance(fresh, Compiled)
    # other arguments go on to the general path, keywords included
    assert fresh(np.float64(0.25)) == pytest.approx(value, rel=1e-14)
    with pytest.raises(ArgumentError, match="argnums counts positional ones only"):
        fresh(x=0.25)
    frames, _ = python_frames_of(fresh, np.float64(0.25))
    assert "__call__" in frames


def test_a_call_of_arrays_is_one_generated_frame_and_floats_still_reach_the_builtin():
    def summed(x):
        return np.sum(np.sin(x) * x)

    grad = warmed(summed, 0.5)
    assert grad.__call__ is grad._fast_call
    x = np.array([0.5, 0.25])
    for _ in range(2):
        np.testing.assert_allclose(grad(x), derivative_of_sine_times_x(x), rtol=1e-15)
    hits = grad.cache_info().hits
    frames, gradient = python_frames_of(grad, x)
    assert frames == ["call"] and type(grad) is not Compiled  # the kernel's generated call alone
    np.testing.assert_allclose(gradient, derivative_of_sine_times_x(x), rtol=1e-15)
    assert grad.cache_info().hits == hits + 1
    assert grad(0.25) == derivative_of_sine_times_x(0.25)  # passed on to the general path
    with pytest.raises(ArgumentError, match="argnums counts positional ones only"):
        grad(x=x)
    again = cr.grad(summed, backend="llvm")  # made again: the same generated code, a call of its own
    again(x)
    again(x)
    assert again._fast_call is not grad._fast_call and again._fast_call.__code__ is grad._fast_call.__code__


def test_a_function_calling_a_gradient_keeps_its_key_when_the_gradient_becomes_a_builtin():
    inner = cr.grad(sine_times_x, backend="llvm")

    def twice(x):
        return 2.0 * inner(x)

    cr.jit(twice, backend="llvm")(0.5)
    warmed_inner = inner(0.5), inner(0.5)
    assert inner.__call__ is inner._fast_call and warmed_inner[0] == warmed_inner[1]
    again = cr.jit(twice, backend="llvm")
    assert again(0.5) == 2.0 * warmed_inner[0]
    assert again.cache_info().misses == 1  # found the first one's kernel: no new trace


def test_a_gradient_called_as_its_builtin_pickles_as_a_compiled_and_frees_itself():
    grad = warmed(sine_times_x, 0.5)
    copy = pickle.loads(pickle.dumps(grad))
    assert type(copy) is Compiled and copy(0.25) == grad(0.25)
    builtin, alive = grad.__call__, weakref.ref(grad)
    collecting = gc.isenabled()
    gc.disable()  # no cycle holds it: its reference count alone frees it
    try:
        del grad
        assert alive() is None
    finally:
        if collecting:
            gc.enable()
    assert builtin(0.25) == derivative_of_sine_times_x(0.25)  # the builtin keeps its kernel
    with pytest.raises(ChainruleError, match="no longer exists"):
        builtin(np.float64(0.25))


def test_a_gradient_made_again_finds_the_builtin_and_counts_its_hits():
    first = warmed(sine_times_x, 0.5)
    again = cr.grad(sine_times_x, backend="llvm")
    hits = again.cache_info().hits
    again(0.5)  # the kernel is found by the cache's key: the scalar call is remembered there too
    assert again._scalar_call is not None and again._scalar_call.builtin is first._scalar_call.builtin
    for _ in range(5):
        again(0.25)
    assert again.cache_info().hits == hits + 6


def test_check_nans_and_value_and_grad_have_no_builtin():
    checked = warmed(lambda x: np.sqrt(x) * np.log(x), 2.0, check_nans=True)
    assert checked._scalar_call.builtin is None
    both = cr.value_and_grad(sine_times_x, backend="llvm")
    both(0.5)
    both(0.5)
    assert both._scalar_call.builtin is None
    value, gradient = both(0.5)
    assert gradient == warmed(sine_times_x, 0.5)(0.5)
    assert value == pytest.approx(sine_times_x(0.5), rel=1e-15)


def resident_bytes() -> int:
    """This process's resident memory now (Linux), or 0 where /proc is missing."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


def test_a_million_calls_leak_nothing():
    grad = warmed(nested_numpy(3), 0.7)
    builtin = grad._scalar_call.builtin
    assert builtin is not None
    x = float("0.7")  # an object of its own: its count is ours alone
    gc.collect()
    counts = sys.getrefcount(x), sys.getrefcount(MISSED), sys.getrefcount(builtin)
    resident = resident_bytes()
    for _ in range(1_000_000):
        grad(x)
    for _ in range(100_000):  # the missing path returns MISSED with a reference of its own
        builtin(1)
    gc.collect()
    assert (sys.getrefcount(x), sys.getrefcount(MISSED), sys.getrefcount(builtin)) == counts
    assert resident_bytes() - resident < 8 << 20  # 8 bytes a call would be 8 MB
    tracemalloc.start()
    try:
        start, _ = tracemalloc.get_traced_memory()
        for _ in range(50_000):
            grad(x)
        gc.collect()
        end, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert end - start < 16 * 1024  # each call's result float is freed
