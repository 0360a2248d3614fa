"""A transform called inside a traced function, on a function that reads the traced function's
values through its closure (JAX's closure conversion): ``cr.grad(lambda x: u(W, x))(x0)`` inside
``cr.grad(loss)(W)``, as physics-informed losses, MAML and per-example gradients write it.

The inner function's trace takes each value it reads from the enclosing trace as an extra input
(``TraceContext.capture``); the compiled inner graph is inlined into the enclosing trace with those
values passed in, and never cached (the values are that trace's alone). Every gradient here is
checked against fourth-order finite differences of the same program run eagerly, where the inner
transforms run their own kernels.
"""

import sys
from pathlib import Path

import numpy as np
import pytest

import chainrule as cr

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gradient_helpers import numerical_gradient, relative_error

BACKENDS = ("numpy", "llvm")
RNG = np.random.default_rng(7)
W0 = RNG.standard_normal((3, 3)) * 0.7
XS = RNG.standard_normal((4, 3))
V = RNG.standard_normal(3)


def assert_matches_finite_differences(loss, backend, *args):
    for argnum in range(len(args)):
        gradient = cr.grad(loss, argnums=argnum, backend=backend)(*args)
        assert relative_error(gradient, numerical_gradient(loss, args, argnum)) < 1e-7


def physics_informed(W):
    """The squared input-gradients of u(x) = sum(tanh(W x)) at four points (a PINN's residual)."""

    def u(x):
        return np.sum(np.tanh(W @ x))

    return np.sum(np.stack([cr.grad(u)(x) for x in XS]) ** 2)


def maml(W):
    """One inner gradient step on a support loss, then the query loss at the adapted weights."""
    adapted = W - 0.1 * cr.grad(lambda V: np.sum((np.tanh(XS @ V) - 0.5) ** 2))(W)
    return np.sum(np.tanh(adapted @ XS[0]))


def per_example_gradients(W):
    """The norm of each example's input gradient, by vmap of grad over a closure on W."""
    gradients = cr.vmap(cr.grad(lambda x: np.sum(np.sin(W @ x))))(XS)
    return np.sum(gradients**2)


def vmapped_closure(W):
    return np.sum(cr.vmap(lambda x: np.tanh(W @ x))(XS) ** 2)


def jit_returning_the_closure_value(W):
    kept, doubled = cr.jit(lambda x: (W, 2 * x))(XS[0])
    return np.sum(kept**2 * doubled)


def grad_inside_a_scan_body(W):
    """The inner function reads the loop's carry and the outer W: it is inlined into the body."""

    def step(carry, x):
        return carry + cr.grad(lambda z: np.sum(np.tanh(W @ z) * carry))(x), None

    return np.sum(cr.scan(step, np.full(3, 0.5), XS)[0] ** 2)


def jvp_of_a_closure(W):
    return np.sum(cr.jvp(lambda x: np.tanh(W @ x), (XS[0],), (V,))[1] ** 2)


def vjp_of_a_closure(W):
    _, pullback = cr.vjp(lambda x: np.tanh(W @ x), XS[0])
    return np.sum(pullback(V)[0] ** 2)


def hvp_of_a_closure(W):
    return np.sum(cr.hvp(lambda x: np.sum(np.tanh(W @ x)))(XS[0], V) ** 2)


PROGRAMS = [
    physics_informed,
    maml,
    per_example_gradients,
    vmapped_closure,
    jit_returning_the_closure_value,
    grad_inside_a_scan_body,
    jvp_of_a_closure,
    vjp_of_a_closure,
    hvp_of_a_closure,
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("program", PROGRAMS, ids=lambda p: p.__name__)
def test_the_gradient_through_a_closure_matches_finite_differences(program, backend):
    assert_matches_finite_differences(program, backend, W0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_grad_of_grad_of_a_closure_with_a_python_float_argument(backend):
    # d/da of d/db [sin(a b) b] = 2 b cos(a b) - a b^2 sin(a b); the inner argument is a Python float
    a, b = 0.3, 2.0
    result = cr.grad(lambda a: cr.grad(lambda b: np.sin(a * b) * b)(b), backend=backend)(a)
    assert result == pytest.approx(2 * b * np.cos(a * b) - a * b**2 * np.sin(a * b), rel=1e-14)


@pytest.mark.parametrize("backend", BACKENDS)
def test_third_derivative_through_three_nested_closures(backend):
    # f = sin(abc): f_c = ab cos(abc), f_cb = a cos(abc) - a^2 bc sin(abc), at b = c = 1
    # a cos(a) - a^2 sin(a), whose derivative in a is cos(a) - 3a sin(a) - a^2 cos(a)
    a = 0.5
    result = cr.grad(lambda a: cr.grad(lambda b: cr.grad(lambda c: np.sin(a * b * c))(1.0))(1.0), backend=backend)(a)
    assert result == pytest.approx(np.cos(a) - 3 * a * np.sin(a) - a**2 * np.cos(a), rel=1e-14)


@pytest.mark.parametrize("backend", BACKENDS)
def test_vmap_of_a_gradient_that_reads_the_mapped_value(backend):
    # per example: d/dy [sin(x y) y] at y = 1.5 is x y cos(x y) + sin(x y)
    xs, y = np.linspace(0.1, 1.0, 5), 1.5
    result = cr.vmap(lambda x: cr.grad(lambda y: np.sin(x * y) * y)(y), backend=backend)(xs)
    np.testing.assert_allclose(result, xs * y * np.cos(xs * y) + np.sin(xs * y), rtol=1e-14)


def test_a_trace_of_closure_values_is_never_kept():
    holder: dict = {}
    kept = cr.grad(lambda x: np.sum(np.tanh(holder["W"] @ x)))  # made once, reads the enclosing W

    def loss(W):
        holder["W"] = W
        return np.sum(kept(XS[0]) ** 2)

    def fresh(W):  # the same program with its inner function made anew, for finite differences
        return np.sum(cr.grad(lambda x: np.sum(np.tanh(W @ x)))(XS[0]) ** 2)

    for W in (W0, RNG.standard_normal((3, 3)), RNG.standard_normal((5, 3)) * 0.5):  # a new shape retraces
        assert relative_error(cr.grad(loss)(W), numerical_gradient(fresh, (W,), 0)) < 1e-7
    assert kept.cache_info().currsize == 0
    with pytest.raises(cr.TraceError, match="after its trace ended"):
        kept(XS[0])  # holder["W"] is the last trace's value


def test_a_graph_made_apart_says_to_pass_the_value_as_an_argument():
    with pytest.raises(cr.TraceError, match="pass the value as an argument"):
        cr.grad(lambda W: np.sum(cr.trace(lambda x: np.tanh(W @ x), XS[0]).outputs))(W0)


def laplacian_residual(W):
    """The trace of each point's Hessian of u(x) = sum(tanh(W x)) (a Laplacian), by cr.hessian."""
    return sum(np.trace(cr.hessian(lambda x: np.sum(np.tanh(W @ x)))(x)) ** 2 for x in XS)


def jacobian_of_a_closure(W):
    forward = cr.jacobian(lambda x: {"a": np.tanh(W @ x), "b": np.sin(x)}, mode="fwd")(XS[0])
    backward = cr.jacobian(lambda v: np.tanh(v[:2]) * np.sum(v), mode="rev")(W @ XS[1])
    return np.sum(forward["a"] ** 2) + np.sum(backward**2)


def vmap_of_a_jacobian(W):
    return np.sum(cr.vmap(cr.jacobian(lambda x: np.tanh(W @ x)))(XS) ** 2)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "program", [laplacian_residual, jacobian_of_a_closure, vmap_of_a_jacobian], ids=lambda p: p.__name__
)
def test_jacobians_and_hessians_inside_a_trace_match_finite_differences(program, backend):
    assert_matches_finite_differences(program, backend, W0)


def test_an_unvectorized_jacobian_inside_a_trace_says_so():
    jacobian = cr.jacobian(np.tanh, vectorize=False)
    with pytest.raises(cr.UnsupportedError, match="vectorize=False cannot run inside a traced function"):
        cr.grad(lambda v: np.sum(jacobian(v)))(XS[0])


class Planted(Exception):
    pass


def test_a_trace_that_fails_leaves_no_trace_open():
    from chainrule.frontends.tracer import innermost_open

    def fails(x):
        raise Planted

    cases = [
        (fails, XS[0]),
        (lambda x: cr.scan(lambda carry, _: fails(carry), x, XS), XS[0]),  # in a loop body
        (lambda W: cr.grad(lambda x: fails(W @ x))(XS[0]), W0),  # in a trace inside a trace
    ]
    for program, argument in cases:
        with pytest.raises(Planted):
            cr.grad(program)(argument)
        assert innermost_open() is None
