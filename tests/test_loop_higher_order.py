"""Second derivatives and forward mode through loops: ``hessian``/``hvp`` (forward over reverse) and
``grad`` of ``grad`` (reverse over reverse) through ``cr.while_loop`` and ``cr.scan``, and ``jvp``
through ``cr.while_loop``.

Expected values are central finite differences of the gradient (for second derivatives) or of the
function (for forward mode), the gradient taken of the plain Python loop, so nothing here checks a
loop against itself.
"""

import numpy as np
import pytest
from gradient_helpers import relative_error

import chainrule as cr


def python_while(cond_fun, body_fun, value):
    while cond_fun(value):
        value = body_fun(value)
    return value


def python_scan(f, init, xs):
    carry, ys = init, []
    for x in xs:
        carry, y = f(carry, x)
        ys.append(y)
    return carry, np.stack(ys)


def relaxation(while_loop):
    """A while loop with a vector carry, an integer counter and a closed-over scalar and vector."""

    def loss(x, a):
        def body(state):
            v, n = state
            return np.sin(v * a) + 0.9 * v + 0.1 * x[0], n + 1

        v, _ = while_loop(lambda state: state[1] < 7, body, (x, np.int64(0)))
        return np.sum(v**2) + np.sum(v) * a

    return loss


def newton_sqrt(while_loop):
    """Newton's iteration for sqrt(c) until the step is small: the trip count depends on the data
    (and is locally constant, so the derivatives are those of the iteration it ran)."""

    def root(c):
        def body(state):
            y, _ = state
            new = 0.5 * (y + c / y)
            return new, np.abs(new - y)

        y, _ = while_loop(lambda state: state[1] > 1e-3, body, (c, 1.0))
        return y * y * y

    return root


def rnn(scan):
    def loss(h0, W, xs):
        def step(h, x):
            h = np.tanh(h @ W + x)
            return h, np.sum(h * x)

        h, ys = scan(step, h0, xs)
        return np.sum(h**2) + np.sum(ys)

    return loss


def numerical_hessian(fn, args, of, wrt=None, step=1e-5):
    """Central differences along argument ``wrt`` (default ``of``) of ``cr.grad(fn, argnums=of)``:
    shape ``gradient.shape + args[wrt].shape``."""
    wrt = of if wrt is None else wrt
    gradient = cr.grad(fn, argnums=of)
    point = np.asarray(args[wrt], dtype=float)
    columns = []
    for index in np.ndindex(point.shape):
        shifted = []
        for sign in (1.0, -1.0):
            moved = point.copy()
            moved[index] += sign * step
            moved_args = list(args)
            moved_args[wrt] = moved if point.ndim else float(moved)
            shifted.append(np.asarray(gradient(*moved_args)))
        columns.append((shifted[0] - shifted[1]) / (2 * step))
    return np.stack(columns, axis=-1).reshape(columns[0].shape + point.shape)


X, A = np.array([0.3, -0.2, 0.5]), 0.7


@pytest.mark.parametrize("argnum", [0, 1])
def test_hessian_through_while_loop_matches_differences_of_the_gradient(argnum, backend):
    hessian = cr.hessian(relaxation(cr.while_loop), argnums=argnum, backend=backend)(X, A)
    expected = numerical_hessian(relaxation(python_while), (X, A), argnum)
    assert relative_error(hessian, expected) < 1e-7


def test_hvp_through_while_loop():
    direction = np.array([1.0, 2.0, -1.0])
    product = cr.hvp(relaxation(cr.while_loop))(X, A, direction)
    assert relative_error(product, numerical_hessian(relaxation(python_while), (X, A), 0) @ direction) < 1e-7


def test_grad_of_grad_through_while_loop_is_reverse_over_reverse(backend):
    direction = np.array([1.0, 2.0, -1.0])

    def directional(model):
        return lambda x, a: np.sum(cr.grad(model, argnums=0)(x, a) * direction) + cr.grad(model, argnums=1)(x, a)

    got = cr.grad(directional(relaxation(cr.while_loop)), argnums=(0, 1), backend=backend)(X, A)
    plain, args = relaxation(python_while), (X, A)
    expected_x = numerical_hessian(plain, args, 0) @ direction + numerical_hessian(plain, args, 1, 0)
    expected_a = numerical_hessian(plain, args, 0, 1) @ direction + numerical_hessian(plain, args, 1)
    assert relative_error(got[0], expected_x) < 1e-7
    assert relative_error(got[1], expected_a) < 1e-7


def test_second_derivative_through_a_data_dependent_trip_count():
    # the Python loop cannot be traced (its condition reads a traced value): the differences are of
    # the while loop's own gradient, which test_loops checks against differences of the function
    expected = numerical_hessian(newton_sqrt(cr.while_loop), (2.0,), 0)
    assert relative_error(cr.hessian(newton_sqrt(cr.while_loop))(2.0), expected) < 1e-7
    assert relative_error(cr.grad(cr.grad(newton_sqrt(cr.while_loop)))(2.0), expected) < 1e-7
    assert expected == pytest.approx(3 / (4 * np.sqrt(2.0)), rel=1e-6)  # (c^1.5)'' = 3 / (4 sqrt(c))


def test_fori_loop_with_a_traced_bound_has_second_derivatives():
    def model(a, n):
        return cr.fori_loop(0, n, lambda i, v: np.cos(v) * a + 0.1 * i, a)

    def plain(a):
        v = a
        for i in range(5):
            v = np.cos(v) * a + 0.1 * i
        return v

    expected = numerical_hessian(plain, (0.6,), 0)
    assert relative_error(cr.grad(cr.grad(model))(0.6, np.int64(5)), expected) < 1e-7
    assert relative_error(cr.hessian(model)(0.6, np.int64(5)), expected) < 1e-7


def test_forward_mode_through_while_loop_matches_differences(backend):
    direction = (np.array([1.0, 2.0, -1.0]), 0.5)
    _, tangent = cr.jvp(relaxation(cr.while_loop), (X, A), direction, backend=backend)
    plain, step = relaxation(python_while), 1e-6
    numeric = (plain(X + step * direction[0], A + step * direction[1])) - plain(
        X - step * direction[0], A - step * direction[1]
    )
    assert relative_error(tangent, numeric / (2 * step)) < 1e-7


@pytest.fixture
def rnn_arguments():
    rng = np.random.default_rng(5)
    return rng.normal(size=3) * 0.5, rng.normal(size=(3, 3)) * 0.5, rng.normal(size=(8, 3))


@pytest.mark.parametrize("argnum", [0, 1])
def test_hessian_through_scan_matches_differences_of_the_gradient(argnum, rnn_arguments, backend):
    hessian = cr.hessian(rnn(cr.scan), argnums=argnum, backend=backend)(*rnn_arguments)
    expected = numerical_hessian(rnn(python_scan), rnn_arguments, argnum)
    assert relative_error(hessian, expected) < 1e-7


def test_grad_of_grad_through_scan_is_reverse_over_reverse(rnn_arguments):
    direction = np.array([0.5, -1.0, 2.0])

    def directional(model):
        return lambda h0, W, xs: np.sum(cr.grad(model)(h0, W, xs) * direction)

    got = cr.grad(directional(rnn(cr.scan)), argnums=0)(*rnn_arguments)
    expected = numerical_hessian(rnn(python_scan), rnn_arguments, 0) @ direction
    assert relative_error(got, expected) < 1e-7
    weights = cr.grad(directional(rnn(cr.scan)), argnums=1)(*rnn_arguments)
    expected_weights = direction @ numerical_hessian(rnn(python_scan), rnn_arguments, 0, 1).reshape(3, 9)
    assert relative_error(weights, expected_weights.reshape(3, 3)) < 1e-7


def test_hvp_through_scan(rnn_arguments):
    direction = np.array([0.5, -1.0, 2.0])
    product = cr.hvp(rnn(cr.scan))(*rnn_arguments, direction)
    assert relative_error(product, numerical_hessian(rnn(python_scan), rnn_arguments, 0) @ direction) < 1e-7
