"""cr.vmap: JAX's semantics (in_axes and out_axes as ints, None or pytrees, negative axes,
axis_size, nesting, errors), one vectorized kernel (one matmul for a batched matmul), and the
composition matrix with grad, jit, jacobian, hessian, jvp and vjp, checked against a Python loop
over the examples, central finite differences and, where installed, JAX."""

from __future__ import annotations

import numpy as np
import pytest
from gradient_helpers import numerical_gradient, relative_error

import chainrule as cr

RNG = np.random.default_rng(18)
BACKENDS = ["numpy", "llvm"]


def loop(fn, *args, in_axes=0):
    """The reference: ``fn`` (NumPy) on each example, the results stacked on axis 0."""
    axes = in_axes if isinstance(in_axes, tuple) else (in_axes,) * len(args)
    size = next(np.shape(a)[axis] for a, axis in zip(args, axes) if axis is not None)
    picked = [[a if axis is None else np.take(a, k, axis=axis) for a, axis in zip(args, axes)] for k in range(size)]
    return np.stack([np.asarray(fn(*example)) for example in picked])


def loss(w, x, y):
    """A per-example loss: a tanh unit's squared error."""
    return (np.tanh(x @ w) - y) ** 2


# ---- semantics ----------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("axis", [0, 1, -1, -2])
def test_in_axes_int_maps_every_argument_over_that_axis(axis, backend):
    a, b = RNG.normal(size=(3, 4)), RNG.normal(size=(3, 4))

    def f(u, v):
        return np.sin(u) * v + np.sum(u)

    result = cr.vmap(f, in_axes=axis, backend=backend)(a, b)
    np.testing.assert_allclose(result, loop(f, a, b, in_axes=axis), rtol=1e-14)


@pytest.mark.parametrize("backend", BACKENDS)
def test_none_passes_an_argument_to_every_example(backend):
    w, xs = RNG.normal(size=3), RNG.normal(size=(5, 3))
    result = cr.vmap(lambda w, x: np.dot(w, x) * w, in_axes=(None, 0), backend=backend)(w, xs)
    np.testing.assert_allclose(result, np.stack([np.dot(w, x) * w for x in xs]), rtol=1e-14)


def test_in_axes_pytrees_are_prefixes_of_the_arguments():
    params = {"w": RNG.normal(size=(2, 3)), "b": RNG.normal(size=4)}
    pair = (RNG.normal(size=(4, 2)), RNG.normal(size=(3, 4)))

    def f(p, xy):
        x, y = xy
        return np.sum(p["w"] * x[:, None]) + p["b"] * np.sum(y)

    mapped = cr.vmap(f, in_axes=({"w": None, "b": 0}, (0, 1)))
    expected = [f({"w": params["w"], "b": params["b"][k]}, (pair[0][k], pair[1][:, k])) for k in range(4)]
    np.testing.assert_allclose(mapped(params, pair), expected, rtol=1e-14)


def test_a_top_level_list_of_in_axes_is_read_as_the_tuple_of_arguments():
    a, b = RNG.normal(size=(2, 3)), RNG.normal(size=3)
    np.testing.assert_allclose(cr.vmap(lambda u, v: u * v, in_axes=[1, 0])(a, b), (a * b).T, rtol=1e-15)


@pytest.mark.parametrize("backend", BACKENDS)
def test_out_axes_places_the_batch_axis_per_output(backend):
    xs = RNG.normal(size=(4, 2, 3))

    def f(x):
        return {"same": x, "summed": np.sum(x, axis=0), "shared": np.ones(2)}

    result = cr.vmap(f, out_axes={"same": -1, "summed": 1, "shared": None}, backend=backend)(xs)
    np.testing.assert_array_equal(result["same"], np.moveaxis(xs, 0, -1))
    np.testing.assert_allclose(result["summed"], np.sum(xs, axis=1).T, rtol=1e-15)
    np.testing.assert_array_equal(result["shared"], np.ones(2))


def test_axis_size_gives_the_batch_when_no_argument_is_mapped():
    result = cr.vmap(lambda x: 2 * x, in_axes=None, axis_size=3)(np.arange(2.0))
    np.testing.assert_array_equal(result, np.tile(2 * np.arange(2.0), (3, 1)))


def test_an_output_that_does_not_depend_on_the_batch_is_broadcast_along_it():
    result = cr.vmap(lambda x, c: (x + 1, c * 2), in_axes=(0, None))(np.arange(3.0), np.float64(4.0))
    np.testing.assert_array_equal(result[1], np.full(3, 8.0))


@pytest.mark.parametrize("backend", BACKENDS)
def test_nested_vmap_maps_two_axes(backend):
    a, b = RNG.normal(size=(3, 2)), RNG.normal(size=(4, 2))
    pairwise = cr.vmap(cr.vmap(lambda u, v: np.dot(u, v), in_axes=(None, 0)), in_axes=(0, None), backend=backend)
    np.testing.assert_allclose(pairwise(a, b), a @ b.T, rtol=1e-14)


def test_a_batched_matmul_is_one_matmul_in_the_generated_code():
    w, xs = RNG.normal(size=(3, 5)), RNG.normal(size=(8, 3))
    mapped = cr.vmap(lambda w, x: np.tanh(x @ w), in_axes=(None, 0))
    source = mapped.source(w, xs)
    assert source.count("@") == 1 and "for " not in source and "matmul(" not in source
    native = cr.vmap(lambda w, x: np.tanh(x @ w), in_axes=(None, 0), backend="llvm").source(w, xs)
    assert native.count("call void @chainrule_dgemm") == 1  # the 8 examples' rows in one GEMM
    stacked = cr.vmap(lambda a, b: a @ b)
    a, b = RNG.normal(size=(6, 2, 3)), RNG.normal(size=(6, 3, 4))
    assert stacked.source(a, b).count("@") == 1 and "for " not in stacked.source(a, b)
    np.testing.assert_allclose(stacked(a, b), np.matmul(a, b), rtol=1e-14)


def test_vmap_shows_its_ir_and_shares_kernels_between_objects_of_one_function():
    def f(x):
        return np.cos(x) * x

    xs = RNG.normal(size=(3, 2))
    first = cr.vmap(f)
    first(xs)
    assert "cos" in first.ir(xs)
    assert cr.vmap(f)._cache is first._cache
    assert cr.vmap(f, in_axes=1)._cache is not first._cache


# ---- errors -------------------------------------------------------------------------------------


def test_mapped_sizes_that_disagree_name_the_arguments_and_shapes():
    with pytest.raises(cr.ArgumentError, match=r"u has shape \(3, 2\).*v has shape \(4,\)"):
        cr.vmap(lambda u, v: u[0] * v)(np.ones((3, 2)), np.ones(4))


def test_axis_size_that_disagrees_with_the_arguments_is_an_error():
    with pytest.raises(cr.ArgumentError, match="axis_size=5"):
        cr.vmap(lambda u: u, axis_size=5)(np.ones(3))


@pytest.mark.parametrize(
    ("in_axes", "args", "message"),
    [
        (2, (np.ones((3, 2)),), r"axis 2, but it has shape \(3, 2\)"),
        (-3, (np.ones((3, 2)),), r"axis -3, but it has shape \(3, 2\)"),
        ((0, 0), (np.ones(3),), "in_axes has 2 entries but .* 1 arguments"),
        (None, (np.ones(3),), "no argument is mapped"),
        (0, (2.0,), "scalar, which has no axis"),
        (({"a": 0},), ({"b": np.ones(2)},), "keys"),
        (([0, 0],), ([np.ones(2)],), "1 entries|2 entries"),
    ],
)
def test_bad_axes_raise_argument_errors_that_say_what_is_wrong(in_axes, args, message):
    with pytest.raises(cr.ArgumentError, match=message):
        cr.vmap(lambda *a: a[0], in_axes=in_axes)(*args)


def test_out_axes_none_for_a_batched_output_is_an_error():
    with pytest.raises(cr.ArgumentError, match=r"out_axes is None .* depends on the mapped arguments"):
        cr.vmap(lambda x: x * 2, out_axes=None)(np.ones(3))


def test_axes_that_are_not_ints_none_or_containers_are_rejected_at_once():
    with pytest.raises(cr.ArgumentError, match="in_axes must be an int, None"):
        cr.vmap(np.sin, in_axes="0")
    with pytest.raises(cr.ArgumentError, match="has no option 'spmd_axis_name'"):
        cr.vmap(np.sin, spmd_axis_name="i")


# ---- the composition matrix ---------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_vmap_of_grad_gives_per_example_gradients(backend):
    w, xs, ys = RNG.normal(size=3), RNG.normal(size=(6, 3)), RNG.normal(size=6)
    per_example = cr.vmap(cr.grad(loss), in_axes=(None, 0, 0), backend=backend)(w, xs, ys)
    assert per_example.shape == (6, 3)
    for k in range(6):
        numeric = numerical_gradient(loss, (w, xs[k], ys[k]), 0)
        assert relative_error(per_example[k], numeric) < 1e-7
    np.testing.assert_allclose(per_example, loop(cr.grad(loss), w, xs, ys, in_axes=(None, 0, 0)), rtol=1e-13)


@pytest.mark.parametrize("backend", BACKENDS)
def test_grad_of_a_sum_over_vmap_is_the_batch_gradient(backend):
    w, xs, ys = RNG.normal(size=3), RNG.normal(size=(6, 3)), RNG.normal(size=6)

    def total(w):
        return np.sum(cr.vmap(loss, in_axes=(None, 0, 0))(w, xs, ys))

    gradient = cr.grad(total, backend=backend)(w)
    numeric = numerical_gradient(lambda v: np.sum(loss(v, xs, ys)), (w,), 0)
    assert relative_error(gradient, numeric) < 1e-7


@pytest.mark.parametrize("backend", BACKENDS)
def test_jacobian_of_vmap_is_block_diagonal(backend):
    xs = RNG.normal(size=(3, 2))

    def f(x):
        return np.sin(x) * np.sum(x**2)

    jac = cr.jacobian(cr.vmap(f, backend=backend))(xs)
    assert jac.shape == (3, 2, 3, 2)
    for k in range(3):
        for i in range(2):
            numeric = numerical_gradient(lambda v, k=k, i=i: cr.vmap(f)(v)[k, i], (xs,), 0)
            assert relative_error(jac[k, i], numeric) < 1e-7
    assert np.all(jac[0, :, 1:] == 0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_vmap_of_hessian_gives_a_hessian_per_example(backend):
    xs = RNG.normal(size=(4, 3))

    def f(x):
        return np.sum(np.sin(x) * x[0] ** 2)

    hessians = cr.vmap(cr.hessian(f), backend=backend)(xs)
    assert hessians.shape == (4, 3, 3)
    for k in range(4):
        numeric = numerical_gradient(lambda v, i=0: cr.grad(f)(v)[i], (xs[k],), 0)
        assert relative_error(hessians[k, 0], numeric) < 1e-7
    np.testing.assert_allclose(hessians, loop(cr.hessian(f), xs), rtol=1e-13)


@pytest.mark.parametrize("backend", BACKENDS)
def test_vmap_and_jit_compose_in_both_orders(backend):
    xs = RNG.normal(size=(5, 3))

    def f(x):
        return np.exp(-x) @ x

    expected = loop(f, xs)
    np.testing.assert_allclose(cr.vmap(cr.jit(f), backend=backend)(xs), expected, rtol=1e-14)
    np.testing.assert_allclose(cr.jit(cr.vmap(f), backend=backend)(xs), expected, rtol=1e-14)


@pytest.mark.parametrize("backend", BACKENDS)
def test_jvp_and_vjp_of_vmap_agree_with_finite_differences(backend):
    xs, tangent = RNG.normal(size=(4, 3)), RNG.normal(size=(4, 3))

    def f(x):
        return np.tanh(x) * np.sum(x)

    mapped = cr.vmap(f)
    _, jvp_out = cr.jvp(mapped, (xs,), (tangent,), backend=backend)
    h = 1e-6
    np.testing.assert_allclose(jvp_out, (mapped(xs + h * tangent) - mapped(xs - h * tangent)) / (2 * h), rtol=1e-6)
    _, vjp_fn = cr.vjp(mapped, xs, backend=backend)
    cotangent = RNG.normal(size=(4, 3))
    (pulled,) = vjp_fn(cotangent)
    np.testing.assert_allclose(np.sum(pulled * tangent), np.sum(cotangent * jvp_out), rtol=1e-10)


def test_vmap_of_jvp_pushes_one_tangent_per_example():
    xs, tangents = RNG.normal(size=(4, 3)), RNG.normal(size=(4, 3))
    pushed = cr.vmap(lambda x, t: cr.jvp(np.sin, (x,), (t,))[1])(xs, tangents)
    np.testing.assert_allclose(pushed, np.cos(xs) * tangents, rtol=1e-14)


@pytest.mark.parametrize("backend", BACKENDS)
def test_vmap_of_vmap_of_grad_and_grad_of_vmap_of_vmap(backend):
    w, xs, ys = RNG.normal(size=3), RNG.normal(size=(2, 3, 3)), RNG.normal(size=(2, 3))
    inner = cr.vmap(cr.grad(loss), in_axes=(None, 0, 0))
    grads = cr.vmap(inner, in_axes=(None, 0, 0), backend=backend)(w, xs, ys)
    assert grads.shape == (2, 3, 3)
    np.testing.assert_allclose(grads[1, 2], cr.grad(loss)(w, xs[1, 2], ys[1, 2]), rtol=1e-13)
    twice = cr.vmap(cr.vmap(loss, in_axes=(None, 0, 0)), in_axes=(None, 0, 0))
    gradient = cr.grad(lambda v: np.sum(twice(v, xs, ys)), backend=backend)(w)
    numeric = numerical_gradient(lambda v: np.sum(loss(v, xs, ys)), (w,), 0)
    assert relative_error(gradient, numeric) < 1e-7


# ---- against JAX --------------------------------------------------------------------------------


@pytest.fixture
def jax():
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    return jax


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_composition_matrix_agrees_with_jax(jax, backend):
    jnp = jax.numpy
    w, xs, ys = RNG.normal(size=3), RNG.normal(size=(5, 3)), RNG.normal(size=5)

    def jax_loss(w, x, y):
        return (jnp.tanh(x @ w) - y) ** 2

    def cubic(x):
        return np.sum(np.sin(x) * x[0] ** 2)

    def jax_cubic(x):
        return jnp.sum(jnp.sin(x) * x[0] ** 2)

    pairs = [
        (cr.vmap(cr.grad(loss), in_axes=(None, 0, 0)), jax.vmap(jax.grad(jax_loss), in_axes=(None, 0, 0)), (w, xs, ys)),
        (
            cr.grad(lambda v: np.sum(cr.vmap(loss, in_axes=(None, 0, 0))(v, xs, ys))),
            jax.grad(lambda v: jnp.sum(jax.vmap(jax_loss, in_axes=(None, 0, 0))(v, xs, ys))),
            (w,),
        ),
        (cr.jacobian(cr.vmap(np.sin)), jax.jacobian(jax.vmap(jnp.sin)), (xs,)),
        (cr.vmap(cr.hessian(cubic)), jax.vmap(jax.hessian(jax_cubic)), (xs,)),
        (cr.jit(cr.vmap(cubic)), jax.jit(jax.vmap(jax_cubic)), (xs,)),
        (cr.vmap(cr.jit(cubic), in_axes=1, backend=backend), jax.vmap(jax_cubic, in_axes=1), (xs,)),
    ]
    for ours, theirs, args in pairs:
        np.testing.assert_allclose(ours(*args), np.asarray(theirs(*args)), rtol=1e-12, atol=1e-14)


def test_control_flow_under_vmap_agrees_with_jax(jax):
    jnp = jax.numpy
    xs = RNG.uniform(0.1, 4.0, size=6)

    def ours(x):
        return cr.while_loop(lambda s: s < 10.0, lambda s: 2 * s + x, np.abs(x) + 0.5)

    def theirs(x):
        return jax.lax.while_loop(lambda s: s < 10.0, lambda s: 2 * s + x, jnp.abs(x) + 0.5)

    np.testing.assert_allclose(cr.vmap(ours)(xs), np.asarray(jax.vmap(theirs)(xs)), rtol=1e-14)
