"""Loops that stay loops: cr.scan and cr.fori_loop trace their body once into one ``loop`` node.

Every model is written once and run two ways: with the structured loop, and as the plain Python
loop it stands for (unrolled when traced, plain NumPy when evaluated). Values and finite
differences come from the plain loop, so nothing here checks the loop against itself.
"""

import numpy as np
import pytest
from gradient_helpers import numerical_gradient, relative_error

import chainrule as cr


def python_scan(f, init, xs, length=None, reverse=False):
    """What cr.scan means, as a Python loop over the leading axis of the leaves of ``xs``."""
    leaves = xs if isinstance(xs, tuple) else (xs,)
    steps = range(length if xs is None else len(leaves[0]))
    carry, ys = init, []
    for t in reversed(steps) if reverse else steps:
        x = None if xs is None else (tuple(leaf[t] for leaf in leaves) if isinstance(xs, tuple) else xs[t])
        carry, y = f(carry, x)
        ys.append(y)
    if reverse:
        ys.reverse()
    return carry, (np.stack(ys) if ys else np.zeros(0))


def python_fori(lower, upper, body, init):
    value = init
    for i in range(lower, upper):
        value = body(i, value)
    return value


def rnn(scan):
    """A small recurrent net: a dict carry, a tuple of per-step inputs, a closed-over weight matrix."""

    def loss(h0, xs, W, u):
        def step(carry, x):
            x_t, scale = x
            h = np.tanh(carry["h"] @ W + x_t * u + scale)
            return {"h": h, "total": carry["total"] + np.sum(h * h) * scale}, h[0] * scale

        carry, ys = scan(step, {"h": h0, "total": 0.0}, xs)
        return carry["total"] + np.sum(np.sin(ys)) + np.sum(carry["h"])

    return loss


def rnn_arguments():
    rng = np.random.default_rng(3)
    h0 = rng.normal(size=3) * 0.5
    xs = (rng.normal(size=(6, 3)), rng.uniform(0.5, 1.5, size=6))
    return h0, xs, rng.normal(size=(3, 3)) * 0.6, rng.normal(size=3)


def test_scan_computes_what_the_python_loop_computes(backend):
    args = rnn_arguments()
    expected = rnn(python_scan)(*args)
    np.testing.assert_allclose(cr.jit(rnn(cr.scan), backend=backend)(*args), expected, rtol=1e-13)


def test_scan_on_concrete_arrays_runs_at_once():
    carry, ys = cr.scan(lambda c, x: (c + x, c * x), 1.0, np.arange(4.0))
    expected_carry, expected_ys = python_scan(lambda c, x: (c + x, c * x), 1.0, np.arange(4.0))
    assert float(carry) == expected_carry
    np.testing.assert_array_equal(ys, expected_ys)


@pytest.mark.parametrize("argnum", [0, 1, 2, 3])
def test_scan_gradient_matches_finite_differences(argnum, backend):
    args = rnn_arguments()
    flat = list(args)
    flat[1] = args[1][0]  # the per-step vectors; the scales stay fixed

    def plain(h0, x_t, W, u):
        return rnn(python_scan)(h0, (x_t, args[1][1]), W, u)

    def structured(h0, x_t, W, u):
        return rnn(cr.scan)(h0, (x_t, args[1][1]), W, u)

    gradient = cr.grad(structured, argnums=argnum, backend=backend)(*flat)
    numeric = numerical_gradient(plain, tuple(flat), argnum)
    assert relative_error(gradient, numeric) < 1e-7


def test_gradient_with_respect_to_a_pytree_of_per_step_inputs_and_the_init():
    h0, xs, W, u = rnn_arguments()
    grads = cr.grad(rnn(cr.scan), argnums=(0, 1))(h0, xs, W, u)
    unrolled = cr.grad(rnn(python_scan), argnums=(0, 1))(h0, xs, W, u)
    np.testing.assert_allclose(grads[0], unrolled[0], rtol=1e-12)
    for got, want in zip(grads[1], unrolled[1]):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


def test_reverse_scan_runs_backwards_and_differentiates(backend):
    def model(scan):
        def loss(a, xs):
            carry, ys = scan(lambda c, x: (np.sin(c) * a + x, c * x), 0.3, xs, reverse=True)
            return carry + np.sum(ys * np.arange(1.0, 6.0))

        return loss

    xs = np.linspace(-1.0, 1.0, 5)
    assert cr.jit(model(cr.scan), backend=backend)(0.7, xs) == pytest.approx(model(python_scan)(0.7, xs), rel=1e-14)
    for argnum, point in [(0, (0.7, xs)), (1, (0.7, xs))]:
        gradient = cr.grad(model(cr.scan), argnums=argnum, backend=backend)(*point)
        assert relative_error(gradient, numerical_gradient(model(python_scan), point, argnum)) < 1e-7


def damped_oscillator(fori):
    def final_position(k, damping):
        def body(i, state):
            x, v = state
            a = -k * x - damping * v + 0.01 * np.cos(0.1 * i)
            return (x + 0.05 * v, v + 0.05 * a)

        x, _ = fori(0, 40, body, (1.0, 0.0))
        return x

    return final_position


def test_fori_loop_value_and_gradient(backend):
    model, reference = damped_oscillator(cr.fori_loop), damped_oscillator(python_fori)
    assert cr.jit(model, backend=backend)(2.0, 0.3) == pytest.approx(reference(2.0, 0.3), rel=1e-13)
    for argnum in (0, 1):
        gradient = cr.grad(model, argnums=argnum, backend=backend)(2.0, 0.3)
        assert relative_error(gradient, numerical_gradient(reference, (2.0, 0.3), argnum)) < 1e-7


def test_the_ir_has_one_loop_node_whatever_the_trip_count():
    def steps(n):
        return lambda x: cr.fori_loop(0, n, lambda i, c: np.sin(c) * x, x)

    sizes = {n: len(cr.trace(steps(n), np.float64(0.5))) for n in (10, 10_000)}
    assert sizes[10] == sizes[10_000]
    text = str(cr.trace(steps(10), np.float64(0.5)))
    assert text.count("= loop[") == 1 and "length=10" in text
    assert "    def " in text and "sin" in text  # the body printed nested, like a jaxpr


def test_forward_mode_through_a_loop_agrees_with_reverse_mode():
    h0, xs, W, u = rnn_arguments()
    rng = np.random.default_rng(5)
    tangents = (rng.normal(size=3), (rng.normal(size=(6, 3)), rng.normal(size=6)), rng.normal(size=(3, 3)))
    value, tangent = cr.jvp(lambda h, x, w: rnn(cr.scan)(h, x, w, u), (h0, xs, W), tangents)
    grads = cr.grad(rnn(cr.scan), argnums=(0, 1, 2))(h0, xs, W, u)
    expected = np.sum(grads[0] * tangents[0]) + np.sum(grads[2] * tangents[2])
    expected += sum(np.sum(g * t) for g, t in zip(grads[1], tangents[1]))
    assert value == pytest.approx(rnn(python_scan)(h0, xs, W, u), rel=1e-13)
    assert tangent == pytest.approx(expected, rel=1e-11)


def test_hessian_vector_product_through_a_loop_is_forward_over_the_backward_loop():
    model = damped_oscillator(cr.fori_loop)
    reference = cr.grad(damped_oscillator(python_fori), argnums=1)
    h = 1e-4
    numeric = (
        8 * (reference(2.0, 0.3 + h) - reference(2.0, 0.3 - h))
        - (reference(2.0, 0.3 + 2 * h) - reference(2.0, 0.3 - 2 * h))
    ) / (12 * h)
    assert cr.hvp(model, argnums=1)(2.0, 0.3, 1.0) == pytest.approx(numeric, rel=1e-7)


def test_nested_loops_differentiate():
    def model(scan, fori):
        def loss(w):
            def outer(c, x):
                inner = fori(0, 3, lambda i, d: np.tanh(d * w + x), c)
                return inner, inner * x

            carry, ys = scan(outer, 0.1, np.linspace(0.2, 1.0, 4))
            return carry + np.sum(ys)

        return loss

    gradient = cr.grad(model(cr.scan, cr.fori_loop))(0.8)
    assert relative_error(gradient, numerical_gradient(model(python_scan, python_fori), (0.8,), 0)) < 1e-7


def test_an_integer_carry_rides_along_without_a_gradient():
    def model(fori):
        def loss(x):
            count, total = fori(0, 5, lambda i, c: (c[0] + 2, c[1] * x + c[0]), (np.int64(1), 1.0))
            return total * count

        return loss

    assert cr.jit(model(cr.fori_loop))(0.9) == pytest.approx(model(python_fori)(0.9), rel=1e-14)
    gradient = cr.grad(model(cr.fori_loop))(0.9)
    assert relative_error(gradient, numerical_gradient(model(python_fori), (0.9,), 0)) < 1e-7


def test_a_carry_that_changes_type_is_a_trace_error_naming_the_line():
    def loss(x):
        return cr.fori_loop(0, 3, lambda i, c: c * x, 1)  # an int carry made float by the body

    with pytest.raises(
        cr.TraceError, match=r"test_loops.py:\d+.*carry came in as i64\[\] but the body returns f64\[\]"
    ):
        cr.jit(loss)(np.float64(2.0))


def test_python_if_on_a_traced_value_points_to_the_structured_forms():
    def loss(x):
        if x > 0:
            return x
        return -x

    with pytest.raises(cr.TraceError) as info:
        cr.grad(loss)(1.0)
    message = str(info.value)
    assert "cr.cond" in message and "cr.while_loop" in message and "np.where" in message


def branchy(cond):
    """A model whose branch depends on the data: sin(x) * w when sum(x) > 0, else x**2 + w."""

    def loss(x, w):
        return np.sum(cond(np.sum(x) > 0, lambda a: np.sin(a) * w, lambda a: a**2 + w, x))

    return loss


def python_cond(pred, true_fun, false_fun, *operands):
    return true_fun(*operands) if pred else false_fun(*operands)


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_cond_runs_and_differentiates_the_branch_taken(sign, backend):
    x, w = sign * np.array([0.3, 0.5]), 1.3
    model, reference = branchy(cr.cond), branchy(python_cond)
    assert cr.jit(model, backend=backend)(x, w) == pytest.approx(reference(x, w), rel=1e-14)
    for argnum in (0, 1):
        gradient = cr.grad(model, argnums=argnum, backend=backend)(x, w)
        assert relative_error(gradient, numerical_gradient(reference, (x, w), argnum)) < 1e-7
    _, tangent = cr.jvp(model, (x, w), (np.array([1.0, -2.0]), 0.5))
    grads = cr.grad(model, argnums=(0, 1))(x, w)
    assert tangent == pytest.approx(grads[0] @ np.array([1.0, -2.0]) + grads[1] * 0.5, rel=1e-12)


def test_one_compiled_cond_serves_both_branches():
    compiled = cr.grad(branchy(cr.cond))
    for x in (np.array([0.3, 0.5]), np.array([-0.3, -0.5])):
        expected = numerical_gradient(branchy(python_cond), (x, 1.3), 0)
        assert relative_error(compiled(x, 1.3), expected) < 1e-7
    assert len(compiled._cache) == 1  # one specialization: the branch is chosen at run time


def test_switch_clamps_its_index_and_differentiates_the_chosen_branch():
    branches = [lambda a: a, lambda a: 2.0 * a, lambda a: np.exp(a)]

    def model(x, k):
        return np.sum(cr.switch(k + np.int64(0) * np.sum(x).astype(np.int64), branches, x))

    x = np.array([0.2, 0.4])
    for k, expected in [(-3, np.ones(2)), (1, 2.0 * np.ones(2)), (2, np.exp(x)), (7, np.exp(x))]:
        np.testing.assert_allclose(cr.grad(model)(x, np.int64(k)), expected, rtol=1e-14)


def test_branches_that_disagree_in_type_are_a_trace_error():
    def model(x):
        return cr.cond(np.sum(x) > 0, lambda a: a, lambda a: np.sum(a), x)

    with pytest.raises(cr.TraceError, match="branch 1 returns"):
        cr.jit(model)(np.ones(3))


def halving(while_loop):
    def loss(x):
        value, count = while_loop(lambda c: c[0] < 10.0, lambda c: (c[0] * x + 1.0, c[1] + 1), (1.0, np.int64(0)))
        return value * count

    return loss


def python_while(cond_fun, body_fun, value):
    while cond_fun(value):
        value = body_fun(value)
    return value


def test_while_loop_value_and_reverse_mode(backend):
    model, reference = halving(cr.while_loop), halving(python_while)
    compiled = cr.grad(model, backend=backend)
    for x in (1.5, 1.2, 2.5):  # different trip counts, one compiled function
        assert cr.jit(model, backend=backend)(x) == pytest.approx(reference(x), rel=1e-14)
        assert relative_error(compiled(x), numerical_gradient(reference, (x,), 0)) < 1e-7
        # (0-d arrays: cr.jvp's llvm fast path for scalar arguments mishandles the tangent tuple, on main too)
        value, tangent = cr.jvp(model, (np.asarray(x),), (np.asarray(1.0),), backend=backend)
        assert value == pytest.approx(reference(x), rel=1e-14)
        assert tangent == pytest.approx(compiled(x), rel=1e-12)


def test_fori_loop_with_a_traced_bound_is_a_while_loop():
    def model(x, n):
        return cr.fori_loop(0, n, lambda i, c: c * x + 0.1 * i, 1.0)

    def reference(x, n):
        return python_fori(0, int(n), lambda i, c: c * x + 0.1 * i, 1.0)

    for n in (0, 3, 6):
        assert cr.jit(model)(1.1, np.int64(n)) == pytest.approx(reference(1.1, n), rel=1e-14)
        gradient = cr.grad(model)(1.1, np.int64(n))
        assert relative_error(gradient, numerical_gradient(lambda x, n=n: reference(x, n), (1.1,), 0)) < 1e-7
    assert "= while[" in str(cr.trace(model, 1.1, np.int64(3)))


def test_grad_of_grad_differentiates_the_backward_loop_and_its_tape():
    def model(scan):
        def f(x):
            carry, ys = scan(lambda c, xi: (np.sin(c) * xi, c**2), x, np.linspace(0.5, 1.5, 4))
            return np.sum(carry + np.sum(ys, axis=0))

        return f

    def squared_gradient(scan):
        return lambda x: np.sum(cr.grad(model(scan))(x) ** 2)

    x = np.array([0.3, 0.7])
    reference = cr.grad(squared_gradient(python_scan))  # the unrolled loop, differentiated twice
    np.testing.assert_allclose(cr.grad(squared_gradient(cr.scan))(x), reference(x), rtol=1e-12)
    np.testing.assert_allclose(cr.hessian(model(cr.scan))(x), cr.hessian(model(python_scan))(x), rtol=1e-12)


def test_a_scan_function_that_returns_no_pair_is_a_trace_error_naming_the_line():
    def loss(x):
        carry, _ = cr.scan(lambda c, xi: c * xi, x, np.arange(3.0))  # forgot the y
        return carry

    with pytest.raises(cr.TraceError, match=r"test_loops.py:\d+.*must return a pair \(carry, y\)"):
        cr.jit(loss)(np.float64(2.0))


def test_scan_without_xs_takes_a_length_and_a_zero_length_loop_returns_its_init():
    def model(scan, steps):
        def loss(a):
            carry, ys = scan(lambda c, _: (c * a + 1.0, c), 0.5, None, length=steps)
            return carry + np.sum(ys)

        return loss

    for steps in (0, 4):
        assert cr.jit(model(cr.scan, steps))(1.3) == pytest.approx(model(python_scan, steps)(1.3), rel=1e-14)
    gradient = cr.grad(model(cr.scan, 4))(1.3)
    assert relative_error(gradient, numerical_gradient(model(python_scan, 4), (1.3,), 0)) < 1e-7
    assert cr.grad(model(cr.scan, 0))(1.3) == 0.0
