"""Retracing is visible: ``cache_info()`` counts hits, misses, traces and kernels kept, and a
``RetraceWarning`` (once per function) names the argument whose shape, dtype or static value keeps
changing once a function has been retraced more than ``retrace_warning_after`` times."""

import warnings

import numpy as np
import pytest

import chainrule as cr

BACKENDS = ["numpy", "llvm"]


def sum_of_squares():
    """A new function each time: its cache (and counts) are its own."""

    def sum_of_squares(x, scale=1.0):
        return np.sum(x * x) * scale

    return sum_of_squares


@pytest.mark.parametrize("backend", BACKENDS)
def test_cache_info_counts_hits_misses_traces_and_kernels(backend):
    f = cr.grad(sum_of_squares(), backend=backend)
    assert f.cache_info() == (0, 0, 0, 0)
    f(np.ones(3))
    f(np.ones(3) * 2)  # new values: a hit
    f(np.ones(3), 5.0)  # a new Python float: a new signature (one more argument), traced
    f(np.ones(3), 7.0)  # another float: a hit
    f(np.ones(4))  # a new shape: traced
    info = f.cache_info()
    assert (info.hits, info.misses, info.traces, info.currsize) == (2, 3, 3, 3)


def test_cache_info_is_shared_by_every_compiled_of_the_function():
    function = sum_of_squares()
    cr.jit(function)(np.ones(2))
    again = cr.jit(function)
    again(np.ones(2))
    assert again.cache_info().hits == 1 and again.cache_info().misses == 1


def test_a_trace_that_fails_counts_as_a_trace_not_a_miss():
    def broken(x, n):
        return x if n > 0 else -x  # control flow on a traced number

    f = cr.jit(broken)
    with pytest.raises(cr.TraceError):
        f(np.ones(2), 1)
    assert f.cache_info()[1:] == (0, 1, 0)


def test_a_new_python_float_does_not_retrace_and_a_static_value_does():
    traced = cr.jit(sum_of_squares())
    static = cr.jit(sum_of_squares(), static_argnames="scale")
    for scale in (1.0, 2.0, 3.0):
        traced(np.ones(2), scale)
        static(np.ones(2), scale)
    assert traced.cache_info().traces == 1
    assert static.cache_info().traces == 3


def retraced_warnings(f, calls):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for args in calls:
            f(*args)
    return [w for w in caught if issubclass(w.category, cr.RetraceWarning)]


def test_a_shape_that_keeps_changing_is_named_once():
    f = cr.jit(lambda weights, batch: batch @ weights)
    weights = np.ones((3, 2))
    calls = [(weights, np.ones((n, 3))) for n in range(1, 30)]
    found = retraced_warnings(f, calls)
    assert len(found) == 1  # once, however many retraces follow
    message = str(found[0].message)
    assert "argument 'batch'" in message and "f64[9,3] -> f64[10,3]" in message
    assert "traced 10 times" in message  # 9 retraces > 8
    assert found[0].filename == __file__  # pointed at the user's call


def test_a_static_value_that_keeps_changing_is_named():
    f = cr.jit(lambda x, steps: x * steps, static_argnums=1)
    found = retraced_warnings(f, [(np.ones(2), n) for n in range(12)])
    assert len(found) == 1
    assert "argument 'steps'" in str(found[0].message) and "static value 8 -> static value 9" in str(found[0].message)


def test_changing_python_numbers_never_warn():
    f = cr.jit(lambda x, rate, step: x * rate / step)
    assert retraced_warnings(f, [(np.ones(2), 0.1 * n, n + 1) for n in range(50)]) == []
    assert f.cache_info().traces == 1


def test_the_threshold_is_configurable_per_function():
    f = cr.jit(lambda x: x * 2)
    f.retrace_warning_after = 2
    found = retraced_warnings(f, [(np.ones(n),) for n in range(1, 5)])
    assert len(found) == 1 and "traced 4 times" in str(found[0].message)
    g = cr.jit(lambda x: x * 3)
    g.retrace_warning_after = None  # never
    assert retraced_warnings(g, [(np.ones(n),) for n in range(1, 20)]) == []


def test_a_changing_structure_names_the_argument():
    f = cr.jit(lambda params, x: sum(params) * x)
    found = retraced_warnings(f, [([np.ones(2)] * n, np.ones(2)) for n in range(1, 12)])
    assert len(found) == 1 and "argument 'params'" in str(found[0].message)
