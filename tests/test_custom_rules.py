"""cr.custom_vjp and cr.custom_jvp: the user's rule is what differentiation uses, traced into the graph.

Each rule here gives a gradient the function as written does not have (clipped, straight-through,
or smooth but off by a term), so a test passes only when the rule was used. Expected values come
from the rule's formula written again in NumPy, from finite differences of that formula (second
order), or from JAX running the same rules.
"""

import functools
import importlib.util
from pathlib import Path

import numpy as np
import pytest
from gradient_helpers import numerical_gradient, relative_error, weights

import chainrule as cr
from chainrule.compiler import pipeline
from chainrule.compiler.batch import vectorize
from chainrule.ir.custom import CUSTOM_OPS
from chainrule.transforms.compiled import compile_kernel

X = np.array([0.3, 1.2, 2.5, -0.7])
W = weights(X.shape)


# ---- the rules ------------------------------------------------------------------------------------


@cr.custom_vjp
def clipped_sin(x):
    return np.sin(x)


def clipped_sin_fwd(x):
    return np.sin(x), np.cos(x)


def clipped_sin_bwd(cos_x, g):
    return (np.clip(g * cos_x, -0.5, 0.5),)


clipped_sin.defvjp(clipped_sin_fwd, clipped_sin_bwd)


def clipped_sin_gradient(x, w):
    """d/dx sum(w * clipped_sin(x)) by the rule, in NumPy."""
    return np.clip(w * np.cos(x), -0.5, 0.5)


@cr.custom_jvp
def straight_through_round(x):
    return np.round(x)


@straight_through_round.defjvp
def straight_through_round_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    return np.round(x), t


# A smooth function whose rule is off by 0.1 x: d/dx "sin" is taken to be cos(x) + 0.1 x. Second
# derivatives then differ from sin's too, and finite differences of the rule's gradient check them.
@cr.custom_jvp
def tilted_sin(x):
    return np.sin(x)


@tilted_sin.defjvp
def tilted_sin_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    return np.sin(x), (np.cos(x) + 0.1 * x) * t


@cr.custom_vjp
def tilted_sin_vjp(x):
    return np.sin(x)


def tilted_fwd(x):
    return np.sin(x), x


def tilted_bwd(x, g):
    return (g * (np.cos(x) + 0.1 * x),)


tilted_sin_vjp.defvjp(tilted_fwd, tilted_bwd)


def tilted_square_loss(tilted):
    return lambda x: np.sum(W * tilted(x) ** 2)


def tilted_square_gradient(x):
    """The rule's gradient of sum(W * tilted(x)**2), in NumPy: 2 W sin(x) (cos(x) + 0.1 x)."""
    return 2 * W * np.sin(x) * (np.cos(x) + 0.1 * x)


# ---- first order: the rule is what grad and jvp use ---------------------------------------------


def test_grad_of_a_custom_vjp_function_is_the_rules_clipped_gradient(backend):
    gradient = cr.grad(lambda x: np.sum(W * clipped_sin(x)), backend=backend)(X)
    np.testing.assert_allclose(gradient, clipped_sin_gradient(X, W), rtol=1e-14)
    assert np.any(np.abs(W * np.cos(X)) > 0.5)  # the clip is active: the true gradient differs


def test_the_primal_value_is_the_functions(backend):
    value, _ = cr.value_and_grad(lambda x: np.sum(W * clipped_sin(x)), backend=backend)(X)
    assert value == pytest.approx(np.sum(W * np.sin(X)), rel=1e-14)
    np.testing.assert_allclose(cr.jit(straight_through_round, backend=backend)(X), np.round(X))


def test_outside_any_transformation_the_function_just_runs():
    calls = []

    @cr.custom_vjp
    def f(x):
        calls.append("f")
        return 2 * x

    f.defvjp(lambda x: (calls.append("fwd") or 2 * x, None), lambda r, g: (g,))
    assert f(np.float64(3.0)) == 6.0 and calls == ["f"]


def test_straight_through_round_passes_the_gradient_through_in_both_modes(backend):
    loss = lambda x: np.sum(W * straight_through_round(x) ** 2)
    expected = 2 * W * np.round(X)  # d round / dx taken to be 1
    np.testing.assert_allclose(cr.grad(loss, backend=backend)(X), expected, rtol=1e-14)
    tangent = np.array([0.5, -1.0, 2.0, 0.25])
    value, directional = cr.jvp(loss, (X,), (tangent,))
    assert value == pytest.approx(np.sum(W * np.round(X) ** 2))
    assert directional == pytest.approx(np.dot(expected, tangent), rel=1e-14)


def test_custom_jvp_reverse_mode_is_the_rule_transposed():
    # a rule that mixes elements (tangent_out = A t): reverse mode must give A^T g, not A g
    a = np.array([[1.0, 2.0, 0.0], [0.5, -1.0, 3.0], [0.0, 1.5, 1.0]])

    @cr.custom_jvp
    def mixed(x):
        return np.sin(x)

    @mixed.defjvp
    def mixed_jvp(primals, tangents):
        (x,), (t,) = primals, tangents
        return np.sin(x), a @ (t * np.cos(x))

    x = np.array([0.2, -0.4, 0.9])
    w = np.array([1.0, 2.0, -1.0])
    np.testing.assert_allclose(cr.grad(lambda x: np.sum(w * mixed(x)))(x), np.cos(x) * (a.T @ w), rtol=1e-14)
    jacobian = cr.jacobian(mixed, mode="fwd")(x)
    np.testing.assert_allclose(jacobian, a * np.cos(x), rtol=1e-14)
    np.testing.assert_allclose(cr.jacobian(mixed)(x), a * np.cos(x), rtol=1e-14)


def test_a_function_of_several_results_with_a_rule():
    @cr.custom_vjp
    def polar(x, y):
        return np.hypot(x, y), np.arctan2(y, x)

    def polar_fwd(x, y):
        return polar(x, y), None

    def polar_bwd(residuals, cotangents):
        g_radius, g_angle = cotangents
        return 2 * g_radius + g_angle, 3 * g_radius - g_angle  # deliberately not the true derivative

    polar.defvjp(polar_fwd, polar_bwd)

    def loss(x, y):
        radius, angle = polar(x, y)
        return np.sum(radius * 1.5 + angle * 0.5)

    x, y = np.array([1.0, 2.0]), np.array([0.5, -1.0])
    gx, gy = cr.grad(loss, argnums=(0, 1))(x, y)
    np.testing.assert_allclose(gx, 2 * 1.5 + 0.5 * np.ones(2))
    np.testing.assert_allclose(gy, 3 * 1.5 - 0.5 * np.ones(2))
    radius, angle = cr.jit(polar)(x, y)
    np.testing.assert_allclose(radius, np.hypot(x, y))
    np.testing.assert_allclose(angle, np.arctan2(y, x))


# ---- second order --------------------------------------------------------------------------------


@pytest.mark.parametrize("tilted", [tilted_sin, tilted_sin_vjp], ids=["custom_jvp", "custom_vjp"])
def test_hessian_is_finite_differences_of_the_rules_gradient(tilted, backend):
    hessian = cr.hessian(tilted_square_loss(tilted), backend=backend)(X)
    rows = [numerical_gradient(lambda x, i=i: tilted_square_gradient(x)[i], (X,), 0) for i in range(X.size)]
    numeric = np.stack(rows)
    assert relative_error(hessian, numeric) < 1e-7


@pytest.mark.parametrize("tilted", [tilted_sin, tilted_sin_vjp], ids=["custom_jvp", "custom_vjp"])
def test_hvp_and_grad_of_grad_follow_the_rules_gradient(tilted):
    loss = tilted_square_loss(tilted)
    direction = np.array([1.0, -0.5, 0.25, 2.0])
    along = lambda x: np.dot(tilted_square_gradient(x), direction)
    numeric = numerical_gradient(along, (X,), 0)
    assert relative_error(cr.hvp(loss)(X, direction), numeric) < 1e-7
    second = cr.grad(lambda x: np.dot(cr.grad(loss)(x), direction))(X)
    assert relative_error(second, numeric) < 1e-7


def test_grad_of_grad_of_a_custom_vjp_differentiates_its_bwd():
    # d/dx of the clipped gradient: zero where the clip holds, -w sin(x) where it does not
    gradient = cr.grad(lambda x: np.sum(cr.grad(lambda x: np.sum(W * clipped_sin(x)))(x)))(X)
    inside = np.abs(W * np.cos(X)) < 0.5
    np.testing.assert_allclose(gradient, np.where(inside, -W * np.sin(X), 0.0), rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("tilted", [tilted_sin, tilted_sin_vjp], ids=["custom_jvp", "custom_vjp"])
def test_hessian_through_a_scan_is_finite_differences_of_its_custom_gradient(tilted):
    def with_scan(xs):
        carry, _ = cr.scan(lambda c, x: (c * 0.5 + tilted(x * c + x), None), 1.0, xs)
        return carry

    def unrolled(xs):
        carry = 1.0
        for x in xs:
            carry = carry * 0.5 + tilted(x * carry + x)
        return carry

    xs = np.array([0.4, -1.1, 0.8])
    gradient = cr.grad(unrolled)
    numeric = np.stack([numerical_gradient(lambda x, i=i: gradient(x)[i], (xs,), 0) for i in range(xs.size)])
    hessian = cr.hessian(with_scan)(xs)
    assert relative_error(hessian, numeric) < 1e-7
    np.testing.assert_allclose(hessian, cr.hessian(unrolled)(xs), rtol=1e-12, atol=1e-14)
    direction = np.array([1.0, 0.5, -2.0])
    np.testing.assert_allclose(cr.hvp(with_scan)(xs, direction), hessian @ direction, rtol=1e-12, atol=1e-14)


def test_a_rule_the_inner_derivative_does_not_reach_is_used_by_the_outer_one():
    y = np.array([0.1, 1.4, -2.2, 0.6])
    inner = cr.grad(lambda x, y: np.sum(x * clipped_sin(y)))  # d/dx = sin(y): the rule is not used
    np.testing.assert_allclose(inner(X, y), np.sin(y), rtol=1e-14)
    outer = cr.grad(lambda y: np.sum(W * inner(X, y)))(y)  # d/dy sum(W sin(y)), through the rule
    np.testing.assert_allclose(outer, clipped_sin_gradient(y, W), rtol=1e-14)


# ---- arguments -----------------------------------------------------------------------------------


def test_nondiff_argnums_are_passed_first_to_the_rules():
    def fwd(scale, x):
        return scale(np.sin(x)), np.cos(x)

    def bwd(scale, cos_x, g):
        return (scale(g) * cos_x * 0.5,)  # half the true gradient

    @functools.partial(cr.custom_vjp, nondiff_argnums=(0,))
    def scaled_sin(scale, x):
        return scale(np.sin(x))

    scaled_sin.defvjp(fwd, bwd)
    triple = lambda v: 3 * v
    gradient = cr.grad(lambda x: np.sum(W * scaled_sin(triple, x)))(X)
    np.testing.assert_allclose(gradient, 1.5 * W * np.cos(X), rtol=1e-14)

    def power(n, x):
        return x**n

    powered = cr.custom_jvp(power, nondiff_argnums=(0,))

    @powered.defjvp
    def power_jvp(n, primals, tangents):
        (x,), (t,) = primals, tangents
        return x**n, n * t  # slope n everywhere

    np.testing.assert_allclose(cr.grad(lambda x: np.sum(W * powered(3, x)))(X), 3 * W)


def test_pytree_arguments_and_pytree_residuals():
    @cr.custom_vjp
    def affine(params, x):
        return params["w"] * x + params["b"]

    def affine_fwd(params, x):
        return affine(params, x), {"x": x, "parts": (params["w"], params["b"])}

    def affine_bwd(residuals, g):
        w, _ = residuals["parts"]
        # the true cotangents, each doubled: the rule, not the function, decides
        return {"w": 2 * np.sum(g * residuals["x"]), "b": 2 * np.sum(g)}, 2 * g * w

    affine.defvjp(affine_fwd, affine_bwd)
    params = {"w": np.float64(1.5), "b": np.float64(-0.5)}
    grad_params, grad_x = cr.grad(lambda p, x: np.sum(W * affine(p, x)), argnums=(0, 1))(params, X)
    assert grad_params["w"] == pytest.approx(2 * np.sum(W * X), rel=1e-14)
    assert grad_params["b"] == pytest.approx(2 * np.sum(W), rel=1e-14)
    np.testing.assert_allclose(grad_x, 2 * W * 1.5, rtol=1e-14)


def test_none_as_a_cotangent_is_zero():
    @cr.custom_vjp
    def product(a, b):
        return a * b

    product.defvjp(lambda a, b: (a * b, a), lambda a, g: (None, g * a))
    ga, gb = cr.grad(lambda a, b: np.sum(product(a, b)), argnums=(0, 1))(X, 2 * X)
    np.testing.assert_array_equal(ga, np.zeros_like(X))
    np.testing.assert_allclose(gb, X)


# ---- composition -----------------------------------------------------------------------------------


def test_grad_of_a_jitted_custom_function_still_uses_the_rule(backend):
    jitted = cr.jit(clipped_sin, backend=backend)
    np.testing.assert_allclose(jitted(X), np.sin(X))
    gradient = cr.grad(lambda x: np.sum(W * jitted(x)), backend=backend)(X)
    np.testing.assert_allclose(gradient, clipped_sin_gradient(X, W), rtol=1e-14)


def test_inside_a_scan_body_the_rule_is_used(backend):
    def step(carry, inputs):
        x, w = inputs
        return carry * 0.9 + w * clipped_sin(x * carry + x), None

    def with_scan(xs):
        carry, _ = cr.scan(step, 1.0, (xs, W))
        return carry

    def unrolled(xs):  # the same recurrence as a Python loop: one custom node per step
        carry = 1.0
        for x, w in zip(xs, W):
            carry, _ = step(carry, (x, w))
        return carry

    def by_hand(xs):  # reverse mode of the recurrence with the rule's clipped cotangent, in NumPy
        carries = [1.0]
        for x, w in zip(xs, W):
            carries.append(carries[-1] * 0.9 + w * np.sin(x * carries[-1] + x))
        g_carry, gradient = 1.0, np.zeros_like(xs)
        for t in reversed(range(len(xs))):
            c, x = carries[t], xs[t]
            g_inner = np.clip(g_carry * W[t] * np.cos(x * c + x), -0.5, 0.5)
            gradient[t] = g_inner * (c + 1)
            g_carry = g_carry * 0.9 + g_inner * x
        return gradient

    xs = np.array([0.4, -1.1, 0.8, 1.9])
    expected = by_hand(xs)
    np.testing.assert_allclose(cr.grad(with_scan, backend=backend)(xs), expected, rtol=1e-13)
    np.testing.assert_allclose(cr.grad(unrolled, backend=backend)(xs), expected, rtol=1e-13)
    assert cr.jit(with_scan, backend=backend)(xs) == pytest.approx(float(unrolled(xs)), rel=1e-14)


def test_a_custom_function_in_an_eager_scan_runs_its_primal():
    carry, ys = cr.scan(lambda c, x: (c + clipped_sin(x), straight_through_round(x)), 0.0, X)
    assert carry == pytest.approx(np.sum(np.sin(X)), rel=1e-14)
    np.testing.assert_array_equal(ys, np.round(X))


def test_batching_vectorizes_the_bodies_and_keeps_the_rule(backend):
    def loss(x, w):
        return np.sum(w * clipped_sin(x)) + np.sum(straight_through_round(x) * x)

    traced = cr.trace(loss, X, W)
    rows = np.stack([X, 2 * X, X - 1])
    batched = vectorize(traced, [0], 3)
    assert sum(node.op in CUSTOM_OPS for node in batched.nodes) == 2  # still custom nodes
    kernel = compile_kernel(pipeline.run(batched).final, "batched", backend)
    np.testing.assert_allclose(kernel.fn(rows, W)[0], [loss(row, W) for row in rows], rtol=1e-14)
    # reverse mode over the batched graph: the rules hold per row, and w's cotangent is summed
    gradients = compile_kernel(pipeline.run(batched_sum(batched), [0, 1]).final, "grad", backend).fn(rows, W)
    expected_x = [clipped_sin_gradient(row, W) + row + np.round(row) for row in rows]  # round' taken as 1
    np.testing.assert_allclose(gradients[1], expected_x, rtol=1e-14)
    np.testing.assert_allclose(gradients[2], np.sum([np.sin(row) for row in rows], axis=0), rtol=1e-14)


def batched_sum(graph):
    """``graph`` (one output, batched) with its output summed: a scalar to differentiate."""
    from chainrule.ir import F, Graph, Value

    summed = Graph.continuing(graph)
    summed.set_outputs([F.sum(Value(summed, graph.outputs[0]), axis=(0,), keepdims=False).id])
    return summed


# ---- the IR ----------------------------------------------------------------------------------------


def test_the_ir_shows_the_node_with_its_rule_bodies_and_the_compiled_graph_has_none():
    loss = cr.grad(lambda x: np.sum(W * clipped_sin(x)))
    traced = loss.ir(X, stage="traced")
    assert "custom_vjp" in traced
    for body in ("def clipped_sin(", "def clipped_sin_fwd(", "def clipped_sin_bwd("):
        assert body in traced  # nested under the node, like a loop's body
    assert "clip" in traced.split("def clipped_sin_bwd(")[1]
    final = loss.graph(X)
    assert not any(node.op in CUSTOM_OPS for node in final.nodes)


def test_chainrule_dump_prints_the_rule_and_its_use(tmp_path, capsys):
    from chainrule.cli.main import main

    source = tmp_path / "clipped.py"
    source.write_text(
        "import numpy as np\n"
        "import chainrule as cr\n\n"
        "@cr.custom_vjp\n"
        "def clip_gradient(x):\n"
        "    return x\n\n"
        "clip_gradient.defvjp(lambda x: (x, None), lambda r, g: (np.clip(g, -1.0, 1.0),))\n\n"
        "def loss(x):\n"
        "    return np.sum(np.tanh(clip_gradient(3.0 * x)))\n"
    )
    assert main(["dump", f"{source}:loss", "--grad", "--shape", "x=3", "--stage", "traced"]) == 0
    traced = capsys.readouterr().out
    assert "custom_vjp" in traced and "def clip_gradient_bwd(g0: f64[3]) -> f64[3]:" in traced
    assert main(["dump", f"{source}:loss", "--grad", "--shape", "x=3", "--stage", "grad"]) == 0
    grad = capsys.readouterr().out
    assert "custom_vjp" not in grad and "clip" in grad  # the rule's clip, in the backward pass


# ---- mistakes --------------------------------------------------------------------------------------


def test_a_function_whose_rule_was_never_set_is_an_argument_error():
    @cr.custom_vjp
    def no_rule(x):
        return x

    with pytest.raises(cr.ArgumentError, match=r"no_rule.defvjp\(fwd, bwd\)") as raised:
        cr.grad(lambda x: np.sum(no_rule(x)))(X)
    assert raised.value.loc is not None and raised.value.loc.function == "no_rule"


def test_a_fwd_that_does_not_return_a_pair_names_itself():
    @cr.custom_vjp
    def f(x):
        return np.sin(x)

    def f_fwd_without_residuals(x):
        return np.sin(x)

    f.defvjp(f_fwd_without_residuals, lambda r, g: (g,))
    with pytest.raises(cr.ArgumentError, match="f_fwd_without_residuals must return a pair") as raised:
        cr.grad(lambda x: np.sum(f(x)))(X)
    assert raised.value.loc.lineno == f_fwd_without_residuals.__code__.co_firstlineno


def test_a_bwd_returning_the_wrong_number_or_shape_of_cotangents_names_itself():
    @cr.custom_vjp
    def f(x, y):
        return x * y

    def bwd_one_short(residuals, g):
        return (g,)

    f.defvjp(lambda x, y: (x * y, None), bwd_one_short)
    with pytest.raises(cr.ArgumentError, match="bwd_one_short returned 1 cotangents, but f has 2"):
        cr.grad(lambda x: np.sum(f(x, x)))(X)

    def bwd_summed(residuals, g):
        return np.sum(g), g

    f.defvjp(lambda x, y: (x * y, None), bwd_summed)
    with pytest.raises(cr.ShapeError, match=r"bwd_summed returned a cotangent of shape \[\], expected f64\[4\]"):
        cr.grad(lambda x: np.sum(f(x, x)))(X)


def test_forward_mode_of_a_custom_vjp_function_is_an_error_as_in_jax():
    with pytest.raises(cr.UnsupportedError, match=r"clipped_sin, a cr\.custom_vjp function"):
        cr.jvp(lambda x: np.sum(clipped_sin(x)), (X,), (np.ones_like(X),))


def test_a_rule_that_closes_over_a_differentiated_value_is_an_error():
    def loss(x, scale):
        @cr.custom_vjp
        def scaled(v):
            return v * scale

        scaled.defvjp(lambda v: (v * scale, None), lambda r, g: (g * scale,))
        return np.sum(scaled(x))

    np.testing.assert_allclose(cr.grad(loss)(X, 2.0), 2.0 * np.ones_like(X))  # scale not differentiated
    with pytest.raises(cr.UnsupportedError, match="pass that value to the function as an argument"):
        cr.grad(loss, argnums=1)(X, 2.0)


# ---- against JAX ---------------------------------------------------------------------------------


def test_the_same_rules_in_jax_give_the_same_derivatives():
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    jnp = jax.numpy

    @jax.custom_vjp
    def jax_clipped_sin(x):
        return jnp.sin(x)

    jax_clipped_sin.defvjp(lambda x: (jnp.sin(x), jnp.cos(x)), lambda c, g: (jnp.clip(g * c, -0.5, 0.5),))

    @jax.custom_jvp
    def jax_tilted_sin(x):
        return jnp.sin(x)

    @jax_tilted_sin.defjvp
    def jax_tilted_jvp(primals, tangents):
        (x,), (t,) = primals, tangents
        return jnp.sin(x), (jnp.cos(x) + 0.1 * x) * t

    @jax.custom_jvp
    def jax_round(x):
        return jnp.round(x)

    jax_round.defjvp(lambda primals, tangents: (jnp.round(primals[0]), tangents[0]))

    @jax.custom_vjp
    def jax_tilted_sin_vjp(x):
        return jnp.sin(x)

    jax_tilted_sin_vjp.defvjp(lambda x: (jnp.sin(x), x), lambda x, g: (g * (jnp.cos(x) + 0.1 * x),))

    w = jnp.asarray(W)
    pairs = [
        (lambda x: np.sum(W * clipped_sin(x)), lambda x: jnp.sum(w * jax_clipped_sin(x))),
        (lambda x: np.sum(W * straight_through_round(x) ** 2), lambda x: jnp.sum(w * jax_round(x) ** 2)),
        (tilted_square_loss(tilted_sin), lambda x: jnp.sum(w * jax_tilted_sin(x) ** 2)),
    ]
    for ours, theirs in pairs:
        np.testing.assert_allclose(cr.grad(ours)(X), jax.grad(theirs)(jnp.asarray(X)), rtol=1e-13)
    hessian = cr.hessian(tilted_square_loss(tilted_sin))(X)
    np.testing.assert_allclose(hessian, jax.hessian(pairs[2][1])(jnp.asarray(X)), rtol=1e-12, atol=1e-14)
    hessian = cr.hessian(tilted_square_loss(tilted_sin_vjp))(X)
    jax_vjp_square = lambda x: jnp.sum(w * jax_tilted_sin_vjp(x) ** 2)
    np.testing.assert_allclose(hessian, jax.hessian(jax_vjp_square)(jnp.asarray(X)), rtol=1e-12, atol=1e-14)
    jax_square = lambda x: jnp.sum(w * jax_tilted_sin(x) ** 2)
    second = jax.grad(lambda x: jnp.sum(jax.grad(jax_square)(x)))(jnp.asarray(X))
    ours = cr.grad(lambda x: np.sum(cr.grad(tilted_square_loss(tilted_sin))(x)))(X)
    np.testing.assert_allclose(ours, second, rtol=1e-12, atol=1e-14)


# ---- the example -----------------------------------------------------------------------------------


def test_custom_gradients_example_shows_stable_clipped_and_straight_through_gradients(capsys):
    path = Path(__file__).resolve().parent.parent / "examples" / "custom_gradients.py"
    spec = importlib.util.spec_from_file_location("custom_gradients", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    results = example.main([])
    out = capsys.readouterr().out
    stable = results["stable"]
    assert all(custom < 1e-14 for _, _, custom in stable)  # against 50-digit mpmath
    assert not np.isfinite(stable[-1][1])  # the naive trace overflows at x = 1000
    plain, clipped = results["clipping"]
    assert plain > 1000 and clipped < plain / 1000  # the clip holds the cotangent at every layer
    no_ste, ste = results["straight_through"]
    assert no_ste[-1] == no_ste[0]  # round has a zero gradient: nothing learns
    assert ste[-1] < 1e-3 * ste[0]
    assert "custom_jvp" in out and "def quantize_jvp(" in out
