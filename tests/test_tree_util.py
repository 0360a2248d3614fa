"""Pytrees (issue 18, item 4): ``cr.tree_util`` against ``jax.tree_util``, classes registered both
ways, dataclasses and NamedTuples as parameters of every transformation, the optimizers and
``fit``, and the errors.

Expected gradients come from fourth-order central differences on the plain arrays
(``gradient_helpers``), optimizer steps from Adam's formula written out, fitted parameters from
``np.linalg.lstsq``.
"""

import dataclasses
from typing import NamedTuple

import numpy as np
import pytest
from gradient_helpers import numerical_gradient, relative_error

import chainrule as cr
from chainrule import optim
from chainrule.tree_util import (
    register_dataclass,
    register_pytree_node,
    register_pytree_node_class,
    tree_flatten,
    tree_leaves,
    tree_map,
    tree_structure,
    tree_unflatten,
)

RNG = np.random.default_rng(18)
X = RNG.uniform(-1.0, 1.0, size=(5, 3))


@dataclasses.dataclass
class Linear:
    w: np.ndarray
    b: np.ndarray
    activation: str = dataclasses.field(default="tanh", metadata={"static": True})


class Moments(NamedTuple):
    mean: np.ndarray
    scale: np.ndarray


class Pair:
    """A class of the user's, registered with register_pytree_node."""

    def __init__(self, first, second):
        self.first, self.second = first, second


register_pytree_node(Pair, lambda p: ((p.first, p.second), None), lambda _, children: Pair(*children))


@register_pytree_node_class
class Scaled:
    """A class registered by its tree_flatten/tree_unflatten methods, with a static factor."""

    def __init__(self, value, factor):
        self.value, self.factor = value, factor

    def tree_flatten(self):
        return (self.value,), self.factor

    @classmethod
    def tree_unflatten(cls, factor, children):
        return cls(children[0], factor)


def linear_loss(model, x):
    z = x @ model.w + model.b
    return np.sum(np.tanh(z) if model.activation == "tanh" else z * z)


def a_model():
    return Linear(RNG.uniform(-1, 1, size=3), np.array(0.3))


# ---- tree_util itself, against jax.tree_util ----------------------------------------------


def jax_and_ours_trees():
    # dict keys already sorted: JAX sorts them, chainrule keeps insertion order
    return [
        {"a": np.ones(2), "b": [1.0, (2.0, None)], "c": {"d": 3.0}},
        [None, (), [], {}],
        (np.zeros(3),),
        Moments(np.ones(2), 4.0),
        {"m": [Moments(1.0, 2.0), Moments(3.0, 4.0)]},
    ]


@pytest.mark.parametrize("index", range(5))
def test_leaves_structure_and_tree_map_agree_with_jax(index):
    jax_tree_util = pytest.importorskip("jax.tree_util")
    tree = jax_and_ours_trees()[index]
    ours, jaxs = tree_leaves(tree), jax_tree_util.tree_leaves(tree)
    assert len(ours) == len(jaxs) and all(a is b for a, b in zip(ours, jaxs))
    assert tree_structure(tree).num_leaves == jax_tree_util.tree_structure(tree).num_leaves
    doubled, expected = tree_map(lambda v: v * 2, tree), jax_tree_util.tree_map(lambda v: v * 2, tree)
    assert tree_structure(doubled) == tree_structure(expected) == tree_structure(tree)
    for a, b in zip(tree_leaves(doubled), jax_tree_util.tree_leaves(expected)):
        np.testing.assert_array_equal(a, b)


def test_tree_map_over_several_trees_and_is_leaf_agree_with_jax():
    jax_tree_util = pytest.importorskip("jax.tree_util")
    first = {"a": [1.0, 2.0], "b": (3.0,)}
    second = {"a": [10.0, {"deep": 20.0}], "b": ([30.0, 40.0],)}  # subtrees where first has leaves
    ours = tree_map(lambda x, y: (x, y), first, second)
    assert ours == jax_tree_util.tree_map(lambda x, y: (x, y), first, second)
    is_pair = lambda node: isinstance(node, list) and len(node) == 2
    assert tree_leaves(second, is_leaf=is_pair) == jax_tree_util.tree_leaves(second, is_leaf=is_pair)
    assert tree_map(len, second, is_leaf=is_pair) == jax_tree_util.tree_map(len, second, is_leaf=is_pair)


def test_a_class_registered_in_both_flattens_the_same_in_both():
    jax_tree_util = pytest.importorskip("jax.tree_util")

    class Triple:
        def __init__(self, a, b, c):
            self.a, self.b, self.c = a, b, c

    flatten = lambda t: ((t.a, t.b), t.c)
    unflatten = lambda c, children: Triple(*children, c)
    register_pytree_node(Triple, flatten, unflatten)
    jax_tree_util.register_pytree_node(Triple, flatten, unflatten)
    tree = [Triple(1.0, Pair(2.0, 3.0), "static"), 4.0]
    jax_tree_util.register_pytree_node(Pair, lambda p: ((p.first, p.second), None), lambda _, c: Pair(*c))
    assert tree_leaves(tree) == jax_tree_util.tree_leaves(tree) == [1.0, 2.0, 3.0, 4.0]
    rebuilt = tree_map(lambda v: -v, tree)
    assert isinstance(rebuilt[0], Triple) and rebuilt[0].c == "static" and rebuilt[0].b.second == -3.0


def test_flatten_and_unflatten_round_trip_every_kind_of_node():
    tree = {"lin": a_model(), "mom": Moments(np.ones(2), np.zeros(2)), "pair": Pair(1.0, [2.0]), "s": Scaled(5.0, 2)}
    leaves, treedef = tree_flatten(tree)
    assert len(leaves) == 2 + 2 + 2 + 1 == treedef.num_leaves
    rebuilt = tree_unflatten(treedef, leaves)
    assert isinstance(rebuilt["lin"], Linear) and rebuilt["lin"].activation == "tanh"
    assert isinstance(rebuilt["mom"], Moments) and isinstance(rebuilt["pair"], Pair)
    assert rebuilt["s"].factor == 2 and rebuilt["s"].value == 5.0
    assert tree_structure(rebuilt) == treedef and hash(tree_structure(rebuilt)) == hash(treedef)
    assert str(tree_structure(a_model())) == "Linear(w=*, b=*, activation='tanh')"
    assert (
        str(tree_structure([Scaled(1.0, 2), None, Moments(1.0, (2.0,))]))
        == "[Scaled(*; 2), None, Moments(mean=*, scale=(*,))]"
    )


def test_none_is_an_empty_subtree_and_aux_data_is_structure():
    assert tree_leaves([None, {"x": None}]) == [] and tree_structure(None).num_leaves == 0
    assert tree_map(lambda v: v + 1, [1, None]) == [2, None]
    assert tree_structure(Scaled(1.0, 2)) == tree_structure(Scaled(5.0, 2))
    assert tree_structure(Scaled(1.0, 2)) != tree_structure(Scaled(1.0, 3))
    assert tree_structure(a_model()) != tree_structure(Linear(np.ones(3), np.ones(()), "square"))


def test_a_dataclass_is_rebuilt_without_running_post_init():
    @dataclasses.dataclass
    class Checked:
        w: np.ndarray

        def __post_init__(self):
            if not isinstance(self.w, np.ndarray):
                raise TypeError("w must be an array")

    assert tree_map(lambda v: "not an array", Checked(np.ones(2))).w == "not an array"


def test_register_dataclass_with_explicit_fields_replaces_the_automatic_split():
    @dataclasses.dataclass(frozen=True)
    class Layer:
        weight: np.ndarray
        size: int

    assert len(tree_leaves(Layer(np.ones(2), 2))) == 2  # automatic: every field is a child
    register_dataclass(Layer, data_fields=["weight"], meta_fields=["size"])
    assert tree_leaves(Layer(np.ones(2), 2))[0] is not None and len(tree_leaves(Layer(np.ones(2), 2))) == 1
    gradient = cr.grad(lambda layer: np.sum(layer.weight * layer.size))(Layer(np.ones(2), 3))
    assert isinstance(gradient, Layer) and gradient.size == 3
    np.testing.assert_array_equal(gradient.weight, [3.0, 3.0])


def test_the_examples_in_tree_utils_docstrings_hold():
    import doctest

    import chainrule.tree_util

    failures, tried = doctest.testmod(chainrule.tree_util)
    assert tried >= 10 and failures == 0


def test_a_dataclass_nested_5000_deep_flattens_without_recursion():
    @dataclasses.dataclass
    class Cell:
        value: float
        next: object

    tree = None
    for depth in range(5000):
        tree = Cell(float(depth), tree)
    leaves, treedef = tree_flatten(tree)
    assert leaves[0] == 4999.0 and len(leaves) == 5000
    assert tree_unflatten(treedef, leaves[::-1]).value == 0.0 and hash(treedef) == hash(tree_structure(tree))


# ---- through the transformations ------------------------------------------------------------


def numerical_linear_gradient(model, x):
    """The finite-difference gradient of linear_loss as a Linear, from the plain arrays."""
    plain = lambda w, b: linear_loss(Linear(w, b, model.activation), x)
    return Linear(
        numerical_gradient(plain, (model.w, model.b), 0),
        numerical_gradient(plain, (model.w, model.b), 1),
        model.activation,
    )


def assert_close_gradients(analytic, numeric):
    assert type(analytic) is type(numeric)
    for a, n in zip(tree_leaves(analytic), tree_leaves(numeric), strict=True):
        assert relative_error(a, n) < 1e-7


def test_grad_of_a_dataclass_is_the_same_dataclass_of_gradients(backend):
    model = a_model()
    gradient = cr.grad(linear_loss, backend=backend)
    for activation in ("tanh", "square", "tanh"):  # a static field: a new value compiles again
        model = dataclasses.replace(model, activation=activation)
        for _ in range(2):  # the second call takes the cached path
            assert_close_gradients(gradient(model, X), numerical_linear_gradient(model, X))
    assert len(gradient._cache) == 2


def test_value_and_grad_of_a_namedtuple_and_a_registered_class():
    def loss(moments, pair, x):
        standardized = (x - moments.mean) / moments.scale
        return np.sum(standardized**2) * pair.first + np.sum(pair.second)

    moments, pair = Moments(np.array([0.1, -0.2, 0.3]), np.array([1.5, 2.0, 0.5])), Pair(0.7, np.ones(2))
    value, (d_moments, d_pair) = cr.value_and_grad(loss, argnums=(0, 1))(moments, pair, X)
    assert value == pytest.approx(loss(moments, pair, X), rel=1e-12)
    assert isinstance(d_moments, Moments) and isinstance(d_pair, Pair) and type(d_pair.first) is float
    for field, argnum in (("mean", 0), ("scale", 1)):
        plain = lambda mean, scale: loss(Moments(mean, scale), pair, X)
        expected = numerical_gradient(plain, (moments.mean, moments.scale), argnum)
        assert relative_error(getattr(d_moments, field), expected) < 1e-7
    expected_first = numerical_gradient(lambda a: loss(moments, Pair(a, pair.second), X), (np.array(0.7),), 0)
    assert relative_error(d_pair.first, expected_first) < 1e-7
    np.testing.assert_array_equal(d_pair.second, np.ones(2))


def test_jit_returns_a_dataclass_and_jacobian_lays_out_its_blocks_in_it():
    model = a_model()
    forward = cr.jit(lambda m, x: Linear(np.tanh(x @ m.w), m.b * 2.0, "out"))
    out = forward(model, X)
    assert isinstance(out, Linear) and out.activation == "out"
    np.testing.assert_allclose(out.w, np.tanh(X @ model.w), rtol=1e-14)
    jacobian = cr.jacobian(lambda m: np.tanh(X @ m.w + m.b))(model)
    assert isinstance(jacobian, Linear) and jacobian.w.shape == (5, 3) and jacobian.b.shape == (5,)
    for row in range(5):
        plain = lambda w, b, row=row: np.tanh(X @ w + b)[row]
        assert relative_error(jacobian.w[row], numerical_gradient(plain, (model.w, model.b), 0)) < 1e-7
        assert relative_error(jacobian.b[row], numerical_gradient(plain, (model.w, model.b), 1)) < 1e-7


def test_hessian_of_a_dataclass_nests_the_dataclass_in_itself_and_hvp_takes_one():
    @dataclasses.dataclass
    class Cubic:
        w: np.ndarray
        b: np.ndarray

    f = lambda m: np.sum(m.w**3) * m.b  # d2f/dw2 = diag(6 w b), d2f/dw db = 3 w^2, d2f/db2 = 0
    point = Cubic(np.array([1.0, 2.0]), np.array(2.0))
    hessian = cr.hessian(f)(point)
    assert isinstance(hessian, Cubic) and isinstance(hessian.w, Cubic) and isinstance(hessian.b, Cubic)
    np.testing.assert_allclose(hessian.w.w, np.diag(6 * point.w * point.b), rtol=1e-14)
    np.testing.assert_allclose(hessian.w.b, 3 * point.w**2, rtol=1e-14)
    np.testing.assert_allclose(hessian.b.w, 3 * point.w**2, rtol=1e-14)
    assert hessian.b.b == 0.0
    product = cr.hvp(f)(point, Cubic(np.ones(2), np.array(0.0)))
    np.testing.assert_allclose(product.w, 6 * point.w * point.b, rtol=1e-14)
    assert product.b == pytest.approx(np.sum(3 * point.w**2), rel=1e-14)


def test_jvp_and_vjp_take_tangents_and_give_cotangents_as_the_dataclass():
    model = a_model()
    direction = Linear(RNG.uniform(-1, 1, 3), np.array(0.5))
    _, tangent = cr.jvp(lambda m: linear_loss(m, X), (model,), (direction,))
    expected = numerical_linear_gradient(model, X)
    assert tangent == pytest.approx(expected.w @ direction.w + expected.b * direction.b, rel=1e-7)
    _, pullback = cr.vjp(lambda m: linear_loss(m, X), model)
    (cotangent,) = pullback(np.float64(1.0))
    assert_close_gradients(cotangent, expected)


def test_a_dataclass_carry_through_scan_and_a_namedtuple_through_fori_loop():
    def scanned(model):
        def step(carry, x_row):
            new = Linear(carry.w * np.cos(x_row), carry.b + np.sum(x_row * carry.w), carry.activation)
            return new, np.sum(new.w) * new.b

        final, per_step = cr.scan(step, model, X)
        assert isinstance(final, Linear)
        return np.sum(per_step) + np.sum(final.w)

    model = a_model()
    gradient = cr.grad(scanned)(model)
    plain = lambda w, b: scanned(Linear(w, b))
    assert relative_error(gradient.w, numerical_gradient(plain, (model.w, model.b), 0)) < 1e-7
    assert relative_error(gradient.b, numerical_gradient(plain, (model.w, model.b), 1)) < 1e-7

    def looped(moments):
        body = lambda i, m: Moments(m.mean * m.scale, m.scale * 0.5)
        return np.sum(cr.fori_loop(0, 3, body, moments).mean)

    moments = Moments(np.array([1.0, 2.0]), np.array([1.1, 0.9]))
    d_moments = cr.grad(looped)(moments)
    plain = lambda mean, scale: looped(Moments(mean, scale))
    assert isinstance(d_moments, Moments)
    assert relative_error(d_moments.scale, numerical_gradient(plain, tuple(moments), 1)) < 1e-7


def test_a_registered_class_static_aux_data_keys_the_cache():
    scaled_sum = cr.grad(lambda s: np.sum(s.value) * s.factor)
    for factor in (2, 2, 3):
        gradient = scaled_sum(Scaled(np.ones(2), factor))
        assert isinstance(gradient, Scaled) and gradient.factor == factor
        np.testing.assert_array_equal(gradient.value, [factor, factor])
    assert len(scaled_sum._cache) == 2


# ---- the optimizers and fit -----------------------------------------------------------------


def test_adam_updates_dataclass_parameters_by_its_formula():
    params = Linear(np.array([1.0, -2.0, 0.5]), np.array(0.25))
    grads = Linear(np.array([0.5, -1.0, 2.0]), np.array(-0.1))
    adam = optim.adam(0.1)
    state = adam.init(params)
    assert isinstance(state["m"], Linear) and isinstance(state["v"], Linear)
    new_params, state = adam.update(grads, state, params)
    new_params, _ = adam.update(grads, state, new_params)
    assert isinstance(new_params, Linear) and new_params.activation == "tanh"
    for p, g, new in zip((params.w, params.b), (grads.w, grads.b), (new_params.w, new_params.b)):
        expected = np.asarray(p, dtype=float)
        for t in (1, 2):
            m = (1 - 0.9**t) * g  # the same gradient each step: m = (1 - b1^t) g, v = (1 - b2^t) g^2
            v = (1 - 0.999**t) * g * g
            expected = expected - 0.1 * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1e-8)
        np.testing.assert_allclose(new, expected, rtol=1e-12)


def test_fit_trains_a_model_whose_parameters_are_a_dataclass():
    inputs = RNG.normal(size=(96, 3))
    targets = inputs @ np.array([1.0, -2.0, 0.5]) + 0.3 + 0.01 * RNG.normal(size=96)
    start = Linear(np.zeros(3), np.zeros(()), "identity")
    result = cr.train.fit(
        lambda p, x: x @ p.w + p.b, start, inputs, targets,
        loss="mse", optimizer=optim.adam(0.05), epochs=60, batch_size=32, progress=False,
    )  # fmt: skip
    assert isinstance(result.params, Linear) and result.params.activation == "identity"
    solution = np.linalg.lstsq(np.hstack([inputs, np.ones((96, 1))]), targets, rcond=None)[0]
    np.testing.assert_allclose(result.params.w, solution[:3], atol=2e-2)
    np.testing.assert_allclose(result.params.b, solution[3], atol=2e-2)
    assert result.history["loss"][-1] < result.history["loss"][0] / 50


def test_a_fused_train_step_keeps_namedtuple_parameters():
    loss = lambda m, x: np.sum((x - m.mean) ** 2 * m.scale)
    step = optim.train_step(loss, optim.sgd(0.1))
    params = Moments(np.zeros(3), np.ones(3))
    opt_state = optim.sgd(0.1).init(params)
    value, params, opt_state = step(params, opt_state, X[0])
    assert value == pytest.approx(np.sum(X[0] ** 2), rel=1e-12) and isinstance(params, Moments)
    np.testing.assert_allclose(params.mean, 0.1 * 2 * X[0], rtol=1e-12)  # d/dmean = -2 (x - mean) scale
    np.testing.assert_allclose(params.scale, 1.0 - 0.1 * X[0] ** 2, rtol=1e-12)


# ---- errors ---------------------------------------------------------------------------------


class Box:
    """Not registered: a leaf, which cannot be differentiated or hold arrays as a static value."""

    def __init__(self, w):
        self.w = w


def test_an_unregistered_object_is_an_argument_error_naming_its_type_and_argument():
    loss = lambda params, x: np.sum(params["box"].w * x)
    with pytest.raises(cr.ArgumentError, match=r"argument 0 \(params\.box\), a Box.*register_pytree_node"):
        cr.grad(loss)({"box": Box(np.ones(2))}, np.ones(2))
    with pytest.raises(cr.ArgumentError, match=r"argument 0 \(params\.box\) is a Box.*compiled in as constants"):
        cr.grad(loss, argnums=1)({"box": Box(np.ones(2))}, np.ones(2))
    with pytest.raises(cr.TraceError, match=r"output out\[1\] of .* is a Box.*pytree node"):
        cr.jit(lambda x: (x, Box(x)))(np.ones(2))


def test_tree_map_over_different_structures_names_where_they_differ():
    with pytest.raises(cr.ArgumentError, match=r"rest\[0\]\.a is a tuple of 2 where the first tree has a list of 2"):
        tree_map(lambda a, b: a + b, {"a": [1, 2]}, {"a": (1, 2)})
    with pytest.raises(cr.ArgumentError, match=r"rest\[0\] is a dict with keys \('b',\)"):
        tree_map(lambda a, b: a + b, {"a": 1}, {"b": 1})
    with pytest.raises(cr.ArgumentError, match=r"rest\[0\]\[1\] is a Scaled where the first tree has a Scaled"):
        tree_map(lambda a, b: a + b, [1.0, Scaled(1.0, 2)], [1.0, Scaled(1.0, 3)])  # aux_data differs


def test_registration_and_unflatten_mistakes_are_argument_errors():
    with pytest.raises(cr.ArgumentError, match="already registered"):
        register_pytree_node(Pair, lambda p: ((), None), lambda _, c: Pair(1, 2))
    with pytest.raises(cr.ArgumentError, match="built-in pytree container"):
        register_pytree_node(dict, lambda d: ((), None), lambda _, c: {})
    with pytest.raises(cr.ArgumentError, match="tree_flatten method"):
        register_pytree_node_class(Box)
    with pytest.raises(cr.ArgumentError, match="has 2 leaves, got 3"):
        tree_unflatten(tree_structure([1.0, 2.0]), [1.0, 2.0, 3.0])
    with pytest.raises(cr.ArgumentError, match="unhashable aux_data"):
        tree_leaves(Linear(np.ones(2), np.ones(()), ["a list"]))  # type: ignore[arg-type]
