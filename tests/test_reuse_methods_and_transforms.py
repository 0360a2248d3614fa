"""Reuse beyond plain functions: ``cr.vmap`` and transforms of a ``Compiled`` made again
(``cr.vmap(cr.grad(f))``, ``cr.grad(cr.jit(f))``) compile nothing new, and a bound method made
again (``cr.grad(model.loss)`` per step) reuses its kernels while its object lives unchanged; an
attribute the method reads that changes (rebound, changed in place, read through a helper, a
property or a nested object) traces again, so no result is ever stale. Work is counted (kernels
made, Python runs), never timed."""

from __future__ import annotations

import gc
import sys
import types
import weakref

import numpy as np
import pytest

import chainrule as cr
from chainrule.transforms.function_key import function_key
from chainrule.transforms.reuse import function_entry
from tests.gradient_helpers import numerical_gradient, relative_error

RNG = np.random.default_rng(2424)
X = RNG.standard_normal((6, 3))
W = RNG.standard_normal(3)
BATCH = RNG.standard_normal((5, 3))

RUNS = types.ModuleType("runs")  # a module is keyed by identity: counting here changes no key
RUNS.count = 0  # type: ignore[attr-defined]


def loss(w, x):
    RUNS.count += 1
    return np.sum(np.tanh(x @ w) ** 2)


def expected_gradient(w, x):
    t = np.tanh(x @ w)
    return x.T @ (2.0 * t * (1.0 - t**2))


@pytest.fixture
def kernels_made(monkeypatch):
    """How many kernels the transforms made (the compiled stages a backend turned into code)."""
    compiled = sys.modules["chainrule.transforms.compiled"]
    made = [0]
    original = compiled.make_kernel

    def counting(*args, **kwargs):
        made[0] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(compiled, "make_kernel", counting)
    return made


def work_of(action, made):
    """(Python runs, kernels made) by ``action``."""
    runs, kernels = RUNS.count, made[0]
    action()
    return RUNS.count - runs, made[0] - kernels


# ---- vmap and transforms of a Compiled --------------------------------------------------------


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
def test_vmap_of_grad_made_again_compiles_once(kernels_made, backend):
    def per_example():
        return cr.vmap(cr.grad(loss), in_axes=(0, None), backend=backend)(BATCH, X)

    assert work_of(per_example, kernels_made)[1] >= 1  # (the numpy run's trace serves llvm's)
    assert work_of(lambda: [per_example() for _ in range(4)], kernels_made) == (0, 0)
    for row, result in zip(BATCH, per_example()):
        np.testing.assert_allclose(result, expected_gradient(row, X), rtol=1e-12)


def test_vmap_of_a_lambda_made_again_compiles_once(kernels_made):
    def per_example():
        return cr.vmap(lambda w: loss(w, X))(BATCH)

    assert work_of(per_example, kernels_made) == (1, 1)
    assert work_of(lambda: [per_example() for _ in range(4)], kernels_made) == (0, 0)


@pytest.mark.parametrize(
    ("make", "argument"),
    [
        (lambda f: cr.grad(cr.jit(f)), W),
        (lambda f: cr.jit(cr.grad(f)), W),
        (lambda f: cr.value_and_grad(cr.jit(f)), W),
        (lambda f: cr.jit(cr.vmap(cr.grad(f), in_axes=(0, None))), BATCH),
    ],
    ids=["grad-of-jit", "jit-of-grad", "value_and_grad-of-jit", "jit-of-vmap-of-grad"],
)
def test_a_transform_of_a_compiled_made_again_compiles_once(kernels_made, make, argument):
    def objective(w, x):
        return 0.5 * loss(w, x)

    assert work_of(lambda: make(objective)(argument, X), kernels_made)[1] >= 1
    assert work_of(lambda: [make(objective)(argument, X) for _ in range(3)], kernels_made) == (0, 0)
    assert function_key(make(objective)) == function_key(make(objective))


def test_a_transform_of_a_compiled_over_another_closure_traces_again():
    def gradient_over(x):
        return cr.grad(cr.jit(lambda w: loss(w, x)))

    other = 2.0 * X
    assert function_key(gradient_over(X)) != function_key(gradient_over(other))
    np.testing.assert_allclose(gradient_over(X)(W), expected_gradient(W, X), rtol=1e-12)
    np.testing.assert_allclose(gradient_over(other)(W), expected_gradient(W, other), rtol=1e-12)
    assert function_key(cr.jit(loss, backend="numpy")) != function_key(cr.jit(loss, backend="llvm"))


# ---- bound methods ----------------------------------------------------------------------------


class Model:
    def __init__(self, x):
        self.x = x
        self.steps = 0  # written by the loop, read by no method: does not change the key

    def loss(self, w):
        return loss(w, self.x)


def test_a_bound_method_made_again_per_step_compiles_once(kernels_made):
    model = Model(X.copy())

    def step(w):
        model.steps += 1
        return w - 0.1 * cr.grad(model.loss)(w)

    def train():
        w = W.copy()
        for _ in range(6):
            w = step(w)

    assert work_of(train, kernels_made) == (1, 1)
    np.testing.assert_allclose(cr.grad(model.loss)(W), expected_gradient(W, X), rtol=1e-12)


def test_an_attribute_the_method_reads_rebound_or_changed_in_place_traces_again():
    model = Model(X.copy())
    np.testing.assert_allclose(cr.grad(model.loss)(W), expected_gradient(W, X), rtol=1e-12)
    model.x = 2.0 * X  # rebound
    np.testing.assert_allclose(cr.grad(model.loss)(W), expected_gradient(W, 2.0 * X), rtol=1e-12)
    model.x *= -1.5  # changed in place
    np.testing.assert_allclose(cr.grad(model.loss)(W), expected_gradient(W, -3.0 * X), rtol=1e-12)


class Scaled:
    """Attributes read through a helper method, a property, a function of the module and a nested object."""

    def __init__(self, x):
        self.inner = Model(x)
        self.factor = 1.0

    @property
    def scale(self):
        return 2.0 * self.factor

    def helper(self, w):
        return self.scale * self.inner.loss(w)

    def loss(self, w):
        return offset_loss(self, w)


def offset_loss(model, w):
    return model.helper(w) + model.shift


def test_attributes_read_through_helpers_properties_and_nested_objects_are_part_of_the_key():
    model = Scaled(X.copy())
    model.shift = 0.0
    gradient = cr.grad(model.loss)(W)
    numeric = numerical_gradient(lambda w: 2.0 * np.sum(np.tanh(X @ w) ** 2), (W,), 0)
    assert relative_error(gradient, numeric) < 1e-7
    model.factor = 3.0  # read by the property the helper reads
    np.testing.assert_allclose(cr.grad(model.loss)(W), 6.0 * expected_gradient(W, X), rtol=1e-12)
    model.inner.x = 2.0 * X  # read by the nested object's method
    np.testing.assert_allclose(cr.grad(model.loss)(W), 6.0 * expected_gradient(W, 2.0 * X), rtol=1e-12)
    before = function_key(model.loss)
    model.shift = 1.0  # read by the module's function the method calls with self
    assert function_key(model.loss) != before
    np.testing.assert_allclose(cr.value_and_grad(model.loss)(W)[0], 6.0 * loss(W, 2.0 * X) + 1.0, rtol=1e-12)


def test_an_equal_object_is_another_key_and_the_entry_goes_with_the_object():
    model = Model(X)
    assert function_key(model.loss) == function_key(model.loss)
    assert function_key(model.loss) != function_key(Model(X).loss)  # by identity
    cr.grad(model.loss)(W)
    entry = weakref.ref(function_entry(model.loss))
    del model
    gc.collect()
    assert entry() is None


def test_objects_in_a_list_attribute_are_keyed_like_the_object():
    class Layer:
        def __init__(self, scale):
            self.scale = scale

    class Stack:
        def __init__(self):
            self.layers = [Layer(1.0), Layer(2.0)]

        def loss(self, w):
            for layer in self.layers:
                w = layer.scale * w
            return np.sum(w**2)

    model = Stack()
    assert function_key(model.loss) == function_key(model.loss) is not None
    np.testing.assert_allclose(cr.grad(model.loss)(W), 8.0 * W, rtol=1e-12)
    model.layers[1].scale = 3.0
    np.testing.assert_allclose(cr.grad(model.loss)(W), 18.0 * W, rtol=1e-12)


def test_attributes_read_by_name_at_run_time_make_the_method_unkeyable():
    class ByName:
        def __init__(self):
            self.x = X

        name = "x"

        def loss(self, w):
            return loss(w, getattr(self, self.name))

    class WithGetattr(Model):
        def __getattr__(self, name):
            return X

    model = ByName()
    assert function_key(model.loss) is None
    assert function_key(WithGetattr(X).loss) is None
    np.testing.assert_allclose(cr.grad(model.loss)(W), expected_gradient(W, X), rtol=1e-12)
    model.x = 3.0 * X
    np.testing.assert_allclose(cr.grad(model.loss)(W), expected_gradient(W, 3.0 * X), rtol=1e-12)


def test_a_protocol_method_of_the_object_is_followed():
    class Affine:
        def __init__(self):
            self.a = 2.0

        def __call__(self, v):
            return self.a * v

    class Wrapped:
        def __init__(self):
            self.f = Affine()

        def loss(self, w):
            return np.sum(self.f(w) ** 2)

    model = Wrapped()
    assert function_key(model.loss) is not None  # the callable attribute is keyed as an object
    np.testing.assert_allclose(cr.grad(model.loss)(W), 8.0 * W, rtol=1e-12)
    before = function_key(model.loss)
    model.f.a = 3.0  # read by its __call__, which no code names
    assert function_key(model.loss) != before
    np.testing.assert_allclose(cr.grad(model.loss)(W), 18.0 * W, rtol=1e-12)
