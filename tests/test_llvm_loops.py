"""Loops that stay native loops on the LLVM backend: scan, fori_loop, while_loop and while_loop's
reverse mode compile to a loop in the kernel's own code (chainrule/backends/llvm/loops.py), not to a
Python loop calling the body back once a step.

Expected values come from the plain Python loop each model stands for (evaluated by NumPy), its
finite differences, and the NumPy backend; the kernel's source shows which path ran.
"""

import re

import numpy as np
import pytest
import scipy.special
from gradient_helpers import numerical_gradient, relative_error

import chainrule as cr
from chainrule.backends.llvm.engine import instruction_count
from chainrule.backends.llvm.kernel import compile_graph

DT = 1e-3


def pendulum_step(state, damping):
    """One RK4 step of theta'' = -9.81 sin(theta) - damping theta'."""

    def rate(theta, omega):
        return omega, -9.81 * np.sin(theta) - damping * omega

    theta, omega = state
    k1 = rate(theta, omega)
    k2 = rate(theta + 0.5 * DT * k1[0], omega + 0.5 * DT * k1[1])
    k3 = rate(theta + 0.5 * DT * k2[0], omega + 0.5 * DT * k2[1])
    k4 = rate(theta + DT * k3[0], omega + DT * k3[1])
    return (
        theta + DT / 6 * (k1[0] + 2 * k2[0] + 2 * k3[0] + k4[0]),
        omega + DT / 6 * (k1[1] + 2 * k2[1] + 2 * k3[1] + k4[1]),
    )


def pendulum(steps, fori=cr.fori_loop):
    def final_energy(theta0, omega0, damping):
        theta, omega = fori(0, steps, lambda i, s: pendulum_step(s, damping), (theta0, omega0))
        return 0.5 * omega**2 - 9.81 * np.cos(theta)

    return final_energy


def python_fori(lower, upper, body, init):
    value = init
    for i in range(lower, upper):
        value = body(i, value)
    return value


def native_source(fn, *args):
    """The llvm kernel's source of ``fn`` at ``args``, checked to run every loop natively (other
    nodes, such as the scatter_add of a gradient's packing, may still call NumPy back)."""
    source = fn.source(*args)
    assert "Python-driven" not in source, source
    assert "run_loop" not in source and "run_while" not in source
    return source


def test_a_fori_loop_is_a_native_loop_and_its_gradient_matches_finite_differences():
    point = (1.0, 0.2, 0.5)
    model, reference = pendulum(300), pendulum(300, python_fori)
    gradient = cr.value_and_grad(model, argnums=(0, 1, 2), backend="llvm")
    source = native_source(gradient, *point)
    assert len(re.findall(r"define internal void @\w+_native\d+\(", source)) == 2  # forward and backward
    assert "run by NumPy" not in source  # the gradient's scatter_adds at slices are native too
    value, slopes = gradient(*point)
    assert value == pytest.approx(reference(*point), rel=1e-13)
    for argnum, slope in enumerate(slopes):
        assert relative_error(slope, numerical_gradient(reference, point, argnum)) < 1e-7
    numpy_slopes = cr.grad(model, argnums=(0, 1, 2))(*point)
    np.testing.assert_allclose(slopes, numpy_slopes, rtol=1e-12)


def _shape_of(source: str) -> str:
    """The kernel's text with every number and symbol hash made alike: what remains is its code."""
    return re.sub(r"\d+", "N", re.sub(r"cr_[0-9a-f]{16}_", "cr_", source))


def test_the_kernel_is_the_same_code_for_ten_steps_and_ten_thousand():
    sources = {}
    for steps in (10, 10_000):
        sources[steps] = native_source(
            cr.value_and_grad(pendulum(steps), argnums=(0, 2), backend="llvm"), 1.0, 0.0, 0.5
        )
    assert len(sources[10].splitlines()) == len(sources[10_000].splitlines())
    assert instruction_count(sources[10]) == instruction_count(sources[10_000])
    assert _shape_of(sources[10]) == _shape_of(sources[10_000])  # only the trip count and offsets differ


def test_a_scan_with_large_carry_strided_xs_and_stacked_ys_agrees_with_python_and_numpy():
    # a carry of 600 float64 (4,800 bytes) is written by the body through a pointer and double
    # buffered; ys of 600 per step are written straight into the result; xs.T is strided per step
    rng = np.random.default_rng(5)
    h0, xs, w = rng.normal(size=600) * 0.3, rng.normal(size=(600, 7)), rng.uniform(0.5, 1.0, size=600)

    def model(scan):
        def loss(h0, xs, w):
            def step(h, x):
                h = np.tanh(w * h + x)
                return h, h * x

            h, ys = scan(step, h0, xs.T)
            return np.sum(h**2) + np.sum(np.cos(ys) * w)

        return loss

    def python_scan(step, h, xs):
        ys = []
        for x in xs:
            h, y = step(h, x)
            ys.append(y)
        return h, np.stack(ys)

    compiled = cr.value_and_grad(model(cr.scan), argnums=(0, 1, 2), backend="llvm")
    native_source(compiled, h0, xs, w)
    value, gradients = compiled(h0, xs, w)
    assert value == pytest.approx(model(python_scan)(h0, xs, w), rel=1e-12)
    for got, expected in zip(gradients, cr.grad(model(cr.scan), argnums=(0, 1, 2))(h0, xs, w)):
        np.testing.assert_allclose(got, expected, rtol=1e-11, atol=1e-13)
    small = (h0[:3], xs[:3, :4], w[:3])  # finite differences on a small copy of the same model
    small_gradients = cr.grad(model(cr.scan), argnums=(0, 1, 2), backend="llvm")(*small)
    for argnum, gradient in enumerate(small_gradients):
        assert relative_error(gradient, numerical_gradient(model(python_scan), small, argnum)) < 1e-7


def test_a_reverse_scan_with_an_integer_carry_beside_a_float_one():
    def model(x, xs):
        def step(carry, xi):
            count, total = carry
            return (count + 1, total * x + xi * count), total

        (count, total), ys = cr.scan(step, (np.int64(0), 0.0), xs, reverse=True)
        return total + np.sum(ys) + count

    def reference(x, xs):
        count, total, ys = 0, 0.0, []
        for xi in xs[::-1]:
            ys.append(total)
            count, total = count + 1, total * x + xi * count
        return total + np.sum(ys) + count

    xs = np.linspace(0.5, 1.5, 9)
    compiled = cr.value_and_grad(model, backend="llvm")
    native_source(compiled, 0.8, xs)
    value, slope = compiled(0.8, xs)
    assert value == pytest.approx(reference(0.8, xs), rel=1e-14)
    assert relative_error(slope, numerical_gradient(reference, (0.8, xs), 0)) < 1e-7


def python_while(cond_fun, body_fun, value):
    while cond_fun(value):
        value = body_fun(value)
    return value


def newton_sqrt(while_loop):
    """sqrt(a) by Newton's iteration from x = a until x^2 is within 1e-12 of a: the trip count
    depends on a, so reverse mode needs the while loop's tape."""

    def root(a, scale):
        _, x = while_loop(
            lambda s: (np.abs(s[1] * s[1] - a) > 1e-12) & (s[0] < 100),
            lambda s: (s[0] + 1, 0.5 * (s[1] + a / s[1])),
            (np.int64(0), a),
        )
        return np.sin(x * scale)

    return root


def test_reverse_mode_through_a_while_loop_runs_natively():
    compiled = cr.value_and_grad(newton_sqrt(cr.while_loop), argnums=(0, 1), backend="llvm")
    reference = newton_sqrt(python_while)
    for a in (2.0, 30.0):  # different trip counts, one kernel
        source = native_source(compiled, a, 0.7)
        assert "(a native while loop" in source and "(a native while loop's reverse mode" in source
        value, slopes = compiled(a, 0.7)
        assert value == pytest.approx(reference(a, 0.7), rel=1e-14)
        for argnum in (0, 1):
            assert relative_error(slopes[argnum], numerical_gradient(reference, (a, 0.7), argnum)) < 1e-7
        np.testing.assert_allclose(slopes, cr.grad(newton_sqrt(cr.while_loop), argnums=(0, 1))(a, 0.7), rtol=1e-13)


def test_a_fori_loop_inside_a_scan_body_is_a_native_loop_inside_a_native_loop():
    def model(scan, fori):
        def loss(x0, xs, rate):
            def outer(x, xi):
                x = fori(0, 5, lambda i, v: v + 0.1 * np.sin(v * rate + xi + i), x)
                return x, x * xi

            x, ys = scan(outer, x0, xs)
            return np.sum(x) + np.sum(ys**2)

        return loss

    def python_scan(f, carry, xs):
        ys = []
        for x in xs:
            carry, y = f(carry, x)
            ys.append(y)
        return carry, np.stack(ys)

    point = (np.array([0.3, -0.2]), np.linspace(-1.0, 1.0, 6), 0.9)
    compiled = cr.value_and_grad(model(cr.scan, cr.fori_loop), argnums=(0, 1, 2), backend="llvm")
    source = native_source(compiled, *point)
    assert source.count("(a native loop of 5 steps") >= 2  # inside the forward body and the backward one
    reference = model(python_scan, python_fori)
    value, gradients = compiled(*point)
    assert value == pytest.approx(reference(*point), rel=1e-13)
    for argnum, gradient in enumerate(gradients):
        assert relative_error(gradient, numerical_gradient(reference, point, argnum)) < 1e-7


def test_a_loop_of_a_hundred_thousand_steps_runs():
    def model(x0, rate):
        return cr.fori_loop(0, 100_000, lambda i, x: x + 1e-5 * np.cos(x * rate), x0)

    compiled = cr.value_and_grad(model, argnums=(0, 1), backend="llvm")
    native_source(compiled, 0.1, 1.3)
    value, slopes = compiled(0.1, 1.3)
    numpy_value, numpy_slopes = cr.value_and_grad(model, argnums=(0, 1))(0.1, 1.3)
    assert value == pytest.approx(numpy_value, rel=1e-13)
    np.testing.assert_allclose(slopes, numpy_slopes, rtol=1e-11)


def test_a_body_with_a_numpy_node_keeps_the_python_driven_loop_and_says_so():
    def zeta(x):  # Hurwitz's zeta stays on NumPy (SciPy's ufunc; cython_special lacks it)
        return scipy.special.zeta(2.0 + x * x, 1.0)

    def model(xs):
        carry, ys = cr.scan(lambda c, x: (c + np.max(zeta(x)) * x[0], zeta(x) * x[1]), 0.0, xs)
        return carry + np.sum(ys)

    xs = np.array([[3.0, 1.0, 2.0, 0.5], [0.25, 4.0, -1.0, 2.0], [1.5, -2.0, 0.0, 3.0]])
    compiled = cr.jit(model, backend="llvm")
    assert "Python-driven loop" in compiled.source(xs) and "fused through NumPy" in compiled.source(xs)
    expected = sum(np.max(zeta(x)) * x[0] for x in xs) + sum(np.sum(zeta(x) * x[1]) for x in xs)
    assert compiled(xs) == pytest.approx(expected, rel=1e-14)


def test_a_while_loop_kernel_compiled_directly_has_no_callback():
    def model(x):
        return cr.while_loop(lambda v: v < 10.0, lambda v: v * 1.5 + 0.1, x)

    kernel = compile_graph(cr.trace(model, np.asarray(1.0)))
    assert kernel.lowered is not None and kernel.lowered.fallbacks == []
    expected = python_while(lambda v: v < 10.0, lambda v: v * 1.5 + 0.1, 1.0)
    assert kernel.fn(np.asarray(1.0))[0] == pytest.approx(expected, rel=1e-15)


def test_a_cond_inside_a_scan_body_is_a_native_switch_and_differentiates_the_branch_taken():
    def model(cond):
        def loss(x0, xs):
            def step(c, x):
                c = cond(x > 0, lambda a: a * x + np.sin(a), lambda a: a - x * x, c)
                return c, 2 * c

            c, ys = cr.scan(step, x0, xs) if cond is cr.cond else python_scan_pairs(step, x0, xs)
            return c + np.sum(ys)

        return loss

    def python_cond(pred, true_fun, false_fun, operand):
        return true_fun(operand) if pred else false_fun(operand)

    def python_scan_pairs(step, c, xs):
        ys = []
        for x in xs:
            c, y = step(c, x)
            ys.append(y)
        return c, np.stack(ys)

    xs = np.array([0.5, -0.3, 0.8, -1.1, 0.2])
    compiled = cr.value_and_grad(model(cr.cond), backend="llvm")
    source = native_source(compiled, 0.4, xs)
    assert "(a native switch" in source
    value, slope = compiled(0.4, xs)
    assert value == pytest.approx(model(python_cond)(0.4, xs), rel=1e-14)
    assert relative_error(slope, numerical_gradient(model(python_cond), (0.4, xs), 0)) < 1e-7


@pytest.mark.parametrize("index", [-3, 0, 1, 2, 7])
def test_a_native_switch_clamps_its_index_and_returns_large_and_integer_results(index):
    # 700 float64 per result (5,600 bytes: written by the branch through a pointer) beside an int
    branches = [lambda a: (a + 1, np.int64(1)), lambda a: (a * 2, np.int64(2)), lambda a: (np.sin(a), np.int64(3))]
    compiled = cr.jit(lambda i, a: cr.switch(i, branches, a), backend="llvm")
    a = np.linspace(-1.0, 1.0, 700)
    assert "(a native switch" in native_source(compiled, np.int64(index), a)
    values, tag = compiled(np.int64(index), a)
    expected_values, expected_tag = branches[min(max(index, 0), 2)](a)
    np.testing.assert_allclose(values, expected_values, rtol=1e-15)
    assert tag == expected_tag and np.asarray(tag).dtype == np.int64
