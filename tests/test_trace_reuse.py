"""A function made again with the same code and closure values reuses the traces and kernels of
the one before (``cr.grad(lambda w: loss(w, x))`` in a loop traces once), every transform of a
function traces its Python once per signature, and nothing stale is ever found: a closure over
another array, an array changed in place, another float or a rebound global traces again."""

from __future__ import annotations

import gc
import threading
import types
import weakref

import numpy as np
import pytest

import chainrule as cr
from chainrule.transforms.function_key import function_key
from chainrule.transforms.reuse import RECENT_ENTRIES, function_entry
from tests.gradient_helpers import numerical_gradient, relative_error

RNG = np.random.default_rng(24)
X = RNG.standard_normal((12, 4))
Y = RNG.standard_normal(12)
W = RNG.standard_normal(4)


# How often the Python of the losses below ran: once per trace. A module is keyed by identity, so
# counting in its attribute does not change the losses' keys (as a global or a list they read would).
RUNS = types.ModuleType("runs")
RUNS.count = 0  # type: ignore[attr-defined]


def loss(w, x):
    RUNS.count += 1
    return np.mean((np.tanh(x @ w) - Y) ** 2)


def expected_gradient(w, x):
    """d/dw mean((tanh(x w) - y)^2), by hand."""
    t = np.tanh(x @ w)
    return 2.0 / len(Y) * x.T @ ((t - Y) * (1.0 - t**2))


def runs_of(action):
    before = RUNS.count
    action()
    return RUNS.count - before


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
def test_a_lambda_made_again_in_a_loop_traces_once(backend):
    def steps():
        w = W.copy()
        for _ in range(6):
            gradient = cr.grad(lambda v: loss(v, X), backend=backend)
            np.testing.assert_allclose(gradient(w), expected_gradient(w, X), rtol=1e-12)
            w = w - 0.1 * gradient(w)

    assert runs_of(steps) == 1


def test_a_nested_def_made_per_call_traces_once_and_calls_a_nested_helper():
    def train_step(w, x):
        def scale(v):  # a function in the closure: keyed by its own code and closure
            return 2.0 * v

        def objective(v):
            return scale(loss(v, x))

        return cr.grad(objective)(w)

    assert runs_of(lambda: [train_step(W, X) for _ in range(5)]) == 1
    np.testing.assert_allclose(train_step(W, X), 2.0 * expected_gradient(W, X), rtol=1e-12)


def test_a_closure_over_another_array_traces_again_and_is_right():
    def gradient_over(x):
        return cr.grad(lambda v: loss(v, x))

    batches = [RNG.standard_normal((12, 4)) for _ in range(3)]
    results = []
    runs = runs_of(lambda: results.extend(gradient_over(x)(W) for x in batches))
    assert runs == 3
    for x, result in zip(batches, results):
        np.testing.assert_allclose(result, expected_gradient(W, x), rtol=1e-12)


def test_an_array_changed_in_place_traces_again_and_is_right():
    x = X.copy()
    first = cr.grad(lambda v: loss(v, x))(W)
    x *= 3.0  # the same array object, other values
    again = runs_of(lambda: np.testing.assert_allclose(cr.grad(lambda v: loss(v, x))(W), expected_gradient(W, x)))
    assert again == 1
    np.testing.assert_allclose(first, expected_gradient(W, X), rtol=1e-12)


def test_a_closure_over_a_changing_python_float_compiles_the_value_in_and_traces_again():
    def scaled(scale):
        return cr.grad(lambda v: scale * loss(v, X))

    runs = runs_of(lambda: [scaled(s)(W) for s in (1.0, 2.5, 1.0, 2.5)])
    assert runs == 2  # a closure value is a constant of the trace: one per value, found again
    for scale in (1.0, 2.5, -0.0):
        np.testing.assert_allclose(scaled(scale)(W), scale * expected_gradient(W, X), rtol=1e-12)


def test_grad_jacobian_hessian_and_the_rest_of_one_function_trace_its_python_once():
    def objective(v):
        return loss(v, X)

    def every_transform():
        return (
            cr.grad(objective)(W),
            cr.value_and_grad(objective)(W),
            cr.jit(objective)(W),
            cr.jacobian(objective)(W),
            cr.hessian(objective)(W),
            cr.hvp(objective)(W, np.ones(4)),
            cr.jvp(objective, (W,), (np.ones(4),)),
            cr.vjp(objective, W)[1](1.0),
        )

    results: list = []
    assert runs_of(lambda: results.extend(every_transform())) == 1
    gradient, (value, value_gradient), value_jit, jacobian, hessian, hvp, (_, tangent), (cotangent,) = results
    expected = expected_gradient(W, X)
    assert value == pytest.approx(np.mean((np.tanh(X @ W) - Y) ** 2), rel=1e-13) == value_jit
    for derivative in (gradient, value_gradient, jacobian, cotangent):
        np.testing.assert_allclose(derivative, expected, rtol=1e-12)
    assert tangent == pytest.approx(expected.sum(), rel=1e-12)
    numeric_hessian = np.stack(
        [numerical_gradient(lambda v, i=i: expected_gradient(v, X)[i], (W,), 0) for i in range(4)]
    )
    assert relative_error(hessian, numeric_hessian) < 1e-7
    np.testing.assert_allclose(hvp, hessian @ np.ones(4), rtol=1e-12)


def test_reused_results_equal_the_results_of_a_function_traced_alone():
    class Opaque:  # an object of the user's class in the closure: unkeyable, traced on its own
        pass

    marker = Opaque()
    cr.grad(lambda v: loss(v, X))(W)  # the kernel the next one reuses
    reused = cr.grad(lambda v: loss(v, X))(W)
    alone = cr.grad(lambda v: (marker, loss(v, X))[1])
    assert function_key(alone.fn) is None
    assert runs_of(lambda: alone(W)) == 1
    np.testing.assert_array_equal(reused, alone(W))


def test_a_global_rebound_at_the_top_level_of_a_script_is_seen_by_a_function_made_again():
    namespace = {"np": np, "loss": loss, "x": X}
    exec("make = lambda: (lambda v: loss(v, x))", namespace)  # a script's loop body: x is a global
    first = cr.grad(namespace["make"]())(W)
    namespace["x"] = 2.0 * X
    np.testing.assert_allclose(cr.grad(namespace["make"]())(W), expected_gradient(W, 2.0 * X), rtol=1e-12)
    np.testing.assert_allclose(first, expected_gradient(W, X), rtol=1e-12)


def test_keys_tell_values_apart_by_type_and_bits():
    def closing_over(value):
        return lambda v: v * value

    assert function_key(closing_over(1.0)) == function_key(closing_over(1.0))
    assert function_key(closing_over(0.0)) != function_key(closing_over(-0.0))  # 1 / -0.0 is -inf
    assert function_key(closing_over(1)) != function_key(closing_over(True)) != function_key(closing_over(1.0))
    assert function_key(closing_over(float("nan"))) == function_key(closing_over(float("nan")))
    assert function_key(closing_over([1.0, 2.0])) != function_key(closing_over([1.0, 3.0]))
    assert function_key(closing_over(np.float32(1.0))) != function_key(closing_over(np.float64(1.0)))


def test_a_self_recursive_nested_function_is_keyed():
    def make():
        def power(v, n):
            return v if n == 1 else v * power(v, n - 1)

        return power

    assert function_key(make()) is not None and function_key(make()) == function_key(make())
    cube = cr.grad(make(), static_argnums=1)
    np.testing.assert_allclose(cube(np.array(2.0), 3), 12.0)


def scaled_loss(scale):
    return lambda v: scale * loss(v, X)


def test_the_entry_of_a_dropped_function_goes_once_recent_ones_replace_it():
    cr.grad(scaled_loss(0.5))(W)
    entry = weakref.ref(function_entry(scaled_loss(0.5)))
    for scale in range(RECENT_ENTRIES - 1):
        cr.grad(scaled_loss(float(scale)))(W)
    gc.collect()
    assert entry() is not None  # kept: a function made again soon finds it
    cr.grad(scaled_loss(-1.0))(W)
    gc.collect()
    assert entry() is None


def test_the_entry_of_a_function_over_an_array_goes_with_the_array():
    def entry_over_a_new_array():
        x = RNG.standard_normal((12, 4))
        cr.grad(lambda v: loss(v, x))(W)
        return weakref.ref(function_entry(lambda v: loss(v, x)))

    entry = entry_over_a_new_array()
    gc.collect()
    assert entry() is None


def test_compiling_never_changes_a_shared_trace():
    def objective(v):
        return loss(v, X)

    cr.jit(objective)(W)
    (graph, _) = next(iter(function_entry(objective).traces.values()))
    before = str(graph)
    cr.grad(objective)(W), cr.hessian(objective)(W), cr.jacobian(objective, mode="rev")(W)
    assert str(graph) == before


def test_threads_making_functions_over_their_own_arrays_at_once_get_their_own_results():
    batches = [RNG.standard_normal((12, 4)) for _ in range(4)]
    results: dict[int, list] = {}
    barrier = threading.Barrier(8)

    def work(index):
        x = batches[index % 4]
        barrier.wait()
        results[index] = [cr.grad(lambda v: loss(v, x))(W) for _ in range(5)]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for index, found in results.items():
        for result in found:
            np.testing.assert_allclose(result, expected_gradient(W, batches[index % 4]), rtol=1e-12)
    assert len(results) == 8


def test_a_class_of_the_users_is_not_keyed_so_a_changed_attribute_is_seen():
    class Config:
        scale = 1.0

    def make():
        return cr.grad(lambda v: Config.scale * loss(v, X))

    assert function_key(make().fn) is None
    np.testing.assert_allclose(make()(W), expected_gradient(W, X), rtol=1e-12)
    Config.scale = 2.0
    np.testing.assert_allclose(make()(W), 2.0 * expected_gradient(W, X), rtol=1e-12)


def test_a_functools_partial_is_keyed_by_its_function_and_arguments():
    import functools

    def through_partial(x):
        return cr.grad(functools.partial(loss, x=x))

    assert runs_of(lambda: [through_partial(X)(W) for _ in range(3)]) == 1
    other = 2.0 * X
    np.testing.assert_allclose(through_partial(other)(W), expected_gradient(W, other), rtol=1e-12)


def test_vjp_of_a_lambda_made_again_traces_once():
    def cotangent_of_w():
        _, vjp_fn = cr.vjp(lambda v: loss(v, X), W)
        return vjp_fn(1.0)[0]

    assert runs_of(lambda: [cotangent_of_w() for _ in range(4)]) == 1
    np.testing.assert_allclose(cotangent_of_w(), expected_gradient(W, X), rtol=1e-12)


def test_a_function_that_cannot_be_weakly_referenced_keeps_its_kernels_across_signatures():
    sine = cr.jit(np.sin)  # a ufunc: no weak reference, no key; its Compiled keeps its own caches
    for size in (3, 4, 3, 4):
        np.testing.assert_allclose(sine(np.linspace(0.0, 1.0, size)), np.sin(np.linspace(0.0, 1.0, size)))
    assert sine.cache_info().misses == 2 and sine.cache_info().hits == 2
