"""Python numbers are traced, as in JAX; static_argnums/static_argnames compile values in.

A Python int or float argument is a weakly typed 0-d input: a new value reuses the kernel, it
combines with float32 arrays as a Python float does, and Python control flow on it is a
TraceError that names the argument and says to declare it static. Static arguments are compiled
in by value (a new value compiles again); keyword arguments are traced like positional ones.
Expected values are derived by hand or by central finite differences, and compared with JAX
where it is installed.
"""

import numpy as np
import pytest

import chainrule as cr

BACKENDS = ["numpy", "llvm"]
X = np.array([0.3, -1.2, 2.0])


def central_difference(f, x: float, step: float = 1e-6) -> float:
    return (f(x + step) - f(x - step)) / (2 * step)


# ---- Python numbers are traced ------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_new_python_float_reuses_the_kernel(backend):
    scaled = cr.jit(lambda x, scale: x * scale, backend=backend)
    for scale in (2.0, -0.5, 1e300, float("inf")):
        np.testing.assert_array_equal(scaled(X, scale), X * scale)
    info = scaled.cache_info()
    assert (info.misses, info.traces, info.hits) == (1, 1, 3)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_python_int_is_a_traced_int64_and_a_new_value_reuses_the_kernel(backend):
    # the bias correction of Adam, with the step a Python int
    corrected = cr.jit(lambda m, step: m / (1 - 0.9**step), backend=backend)
    for step in (1, 2, 10, 1000):
        np.testing.assert_allclose(corrected(X, step), X / (1 - 0.9**step), rtol=1e-15)
    assert corrected.cache_info().misses == 1
    graph = cr.trace(lambda m, step: m * step, X, 3)
    assert [(graph.type(i).shape, graph.type(i).dtype) for i in graph.inputs] == [((3,), "float64"), ((), "int64")]


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_gradient_with_respect_to_a_python_float_is_a_python_float(backend):
    def loss(x, rate):
        return np.sum(np.tanh(rate * x) ** 2)

    gradient = cr.grad(loss, argnums=1, backend=backend)(X, 0.7)
    assert type(gradient) is float
    expected = central_difference(lambda r: float(loss(X, r)), 0.7)
    assert gradient == pytest.approx(expected, rel=1e-7)


def test_a_traced_python_int_is_not_differentiable():
    with pytest.raises(cr.ArgumentError, match=r"argument 1 \(n\), a Python int"):
        cr.grad(lambda x, n: np.sum(x) * n, argnums=1)(X, 3)


def test_a_python_int_outside_int64_must_be_static():
    with pytest.raises(cr.ArgumentError, match="does not fit a traced int64; declare it static"):
        cr.jit(lambda x, n: x * n)(X, 2**70)
    assert cr.jit(lambda x, n: x * float(n), static_argnums=1)(X, 2**70)[0] == pytest.approx(0.3 * 2.0**70)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_python_float_next_to_float32_arrays_keeps_float32(backend):
    x32 = X.astype(np.float32)

    def step(x, rate, count):
        return x - rate * x / (1 - 0.9**count)  # the weak values stay weak through ** and -

    out = cr.jit(step, backend=backend)(x32, 0.1, 3)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, step(x32, 0.1, 3), rtol=1e-6)
    assert out.dtype == step(x32, 0.1, 3).dtype  # NumPy 2's weak Python scalars agree
    gradient = cr.grad(lambda x, rate: np.sum(step(x, rate, 3) ** 2), backend=backend)(x32, 0.1)
    assert gradient.dtype == np.float32


def test_a_python_float_read_by_a_loop_body_stays_weakly_typed():
    x32 = X.astype(np.float32)

    def decay(x, rate):
        return cr.fori_loop(0, 3, lambda i, carry: carry * rate, x)  # a float64 carry would not fit

    out = cr.jit(decay)(x32, 0.5)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, x32 * 0.125, rtol=1e-7)
    # d/drate sum(x rate^3) = 3 rate^2 sum(x)
    gradient = cr.grad(lambda x, rate: np.sum(decay(x, rate)), argnums=1)(X, 0.5)
    assert gradient == pytest.approx(3 * 0.25 * np.sum(X), rel=1e-14)


def test_a_python_int_next_to_int32_arrays_keeps_int32():
    counts = np.array([1, 2, 3], np.int32)
    out = cr.jit(lambda c, n: c * n + 1)(counts, 4)
    assert out.dtype == np.int32
    np.testing.assert_array_equal(out, [5, 9, 13])


def test_weak_typing_agrees_with_jax():
    jax = pytest.importorskip("jax")
    jnp = pytest.importorskip("jax.numpy")
    x32 = X.astype(np.float32)

    def loss(x, rate, count):
        return (x * rate / (1 - 0.9**count)).sum()

    ours = cr.grad(loss)(x32, 0.25, 2)
    theirs = np.asarray(jax.grad(loss)(jnp.asarray(x32), 0.25, 2))
    assert ours.dtype == theirs.dtype == np.float32
    np.testing.assert_allclose(ours, theirs, rtol=1e-6)
    ours_rate = cr.grad(loss, argnums=1)(X, 0.25, 2)
    with jax.enable_x64(True):
        theirs_rate = float(jax.grad(loss, argnums=1)(jnp.asarray(X), 0.25, 2))
    assert ours_rate == pytest.approx(theirs_rate, rel=1e-12)


# ---- Python control flow on a traced number -------------------------------------------------


def repeat_doubling(x, n):
    for _ in range(n):  # needs n's value
        x = x * 2
    return x


def sign_flip(x, n):
    if n > 0:  # needs n's value
        return x
    return -x


@pytest.mark.parametrize("fn, line", [(repeat_doubling, "for _ in range(n)"), (sign_flip, "if n > 0")])
def test_python_control_flow_on_a_traced_number_says_to_declare_it_static(fn, line):
    with pytest.raises(cr.TraceError) as raised:
        cr.jit(fn)(X, 3)
    message = str(raised.value)
    assert "test_static_args.py:" in message and line in message  # the user's line, quoted
    assert "Python number argument 'n'" in message
    assert "static_argnames=('n',)" in message


def test_a_traced_number_used_as_a_shape_says_to_declare_it_static():
    with pytest.raises(cr.TraceError, match=r"argument 'n'.*static_argnames=\('n',\)"):
        cr.jit(lambda x, n: np.zeros(n) + x)(1.0, 3)


def test_control_flow_on_an_array_keeps_its_own_advice():
    with pytest.raises(cr.TraceError, match=r"np\.where") as raised:
        cr.jit(lambda x, n: x if np.sum(x) > n else -x)(X, 1.0)
    assert "static_argnames" not in str(raised.value)  # declaring n static would not help


# ---- static arguments ----------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_static_argument_is_compiled_in_and_a_new_value_compiles_again(backend):
    f = cr.jit(repeat_doubling, static_argnums=1, backend=backend)
    np.testing.assert_array_equal(f(X, 3), X * 8)
    np.testing.assert_array_equal(f(X, 3), X * 8)
    np.testing.assert_array_equal(f(X, 1), X * 2)
    info = f.cache_info()
    assert (info.hits, info.misses, info.currsize) == (1, 2, 2)


def test_static_argnames_covers_the_argument_passed_by_position_and_by_keyword():
    f = cr.jit(sign_flip, static_argnames="n")
    np.testing.assert_array_equal(f(X, 1), X)
    np.testing.assert_array_equal(f(X, n=-1), -X)
    g = cr.jit(sign_flip, static_argnums=1)
    np.testing.assert_array_equal(g(X, n=-2), -X)


def test_an_unhashable_static_argument_is_an_argument_error():
    with pytest.raises(cr.ArgumentError, match="static argument n is a list, which is unhashable"):
        cr.jit(lambda x, n: x * len(n), static_argnums=1)(X, [1, 2])
    # a tuple is fine
    np.testing.assert_array_equal(cr.jit(lambda x, n: x * len(n), static_argnums=1)(X, (1, 2)), 2 * X)


def test_argnums_that_are_static_too_are_an_argument_error():
    with pytest.raises(cr.ArgumentError, match="both differentiated"):
        cr.grad(lambda x, y: np.sum(x * y), argnums=(0, 1), static_argnums=1)
    with pytest.raises(cr.ArgumentError, match="both differentiated"):
        cr.grad(lambda x, y: np.sum(x * y), argnums=-1, static_argnums=1)(X, X)
    with pytest.raises(cr.ArgumentError, match="static_argnums must be an int or a tuple of ints"):
        cr.jit(np.sin, static_argnums="x")


def test_bools_and_strings_stay_static_without_declaring_them():
    def pick(x, flag, mode):
        out = x if flag else -x
        return out * 2 if mode == "double" else out

    f = cr.jit(pick)
    np.testing.assert_array_equal(f(X, True, "double"), 2 * X)
    np.testing.assert_array_equal(f(X, False, "double"), -2 * X)
    np.testing.assert_array_equal(f(X, False, "keep"), -X)
    assert f.cache_info().misses == 3


@pytest.mark.parametrize("backend", BACKENDS)
def test_grad_with_a_static_exponent_matches_finite_differences(backend):
    def loss(x, n, rate):
        total = 0.0
        for k in range(1, n + 1):  # Python control flow on the static n
            total = total + np.sum(np.sin(rate * x) ** k) / k
        return total

    grads = cr.grad(loss, argnums=(0, 2), static_argnames="n", backend=backend)(X, 3, 0.8)
    for i in range(3):
        e = np.eye(3)[i]
        expected = central_difference(lambda t, e=e: float(loss(X + t * e, 3, 0.8)), 0.0)
        assert grads[0][i] == pytest.approx(expected, rel=1e-7)
    assert grads[1] == pytest.approx(central_difference(lambda r: float(loss(X, 3, r)), 0.8), rel=1e-7)


def test_static_arguments_agree_with_jax():
    jax = pytest.importorskip("jax")
    jnp = pytest.importorskip("jax.numpy")

    def loss(x, n):
        return jnp.sum(x**n) if n % 2 else jnp.sum(jnp.cos(x) * n)

    def ours_loss(x, n):
        return np.sum(x**n) if n % 2 else np.sum(np.cos(x) * n)

    with jax.enable_x64(True):
        for n in (3, 4):
            theirs = np.asarray(jax.grad(loss, argnums=0)(jnp.asarray(X), n))
            np.testing.assert_allclose(cr.grad(ours_loss, static_argnums=1)(X, n), theirs, rtol=1e-13)
        jitted = jax.jit(loss, static_argnums=1)
        np.testing.assert_allclose(
            cr.jit(ours_loss, static_argnums=1)(X, 3), float(jitted(jnp.asarray(X), 3)), rtol=1e-13
        )


# ---- keyword arguments ----------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_keyword_arguments_are_traced_like_positional_ones(backend):
    def loss(x, y=None, scale=1.0):
        return np.sum(x * y) * scale

    f = cr.value_and_grad(loss, backend=backend)
    value, gradient = f(X, y=2 * X, scale=0.5)
    assert value == pytest.approx(np.sum(X * X), rel=1e-15)
    np.testing.assert_allclose(gradient, X, rtol=1e-15)
    f(X, scale=3.0, y=X)  # other values, keyword order: the same kernel
    assert f.cache_info().misses == 1
    f(X, y=np.ones(3, np.float32))  # another dtype and no scale: new kernels
    assert f.cache_info().misses == 2
    out = cr.jit(loss, backend=backend)(X, y=X)
    assert out == pytest.approx(np.sum(X * X), rel=1e-15)


def test_argnums_counts_positional_arguments_only():
    with pytest.raises(cr.ArgumentError, match="argnums counts positional ones only"):
        cr.grad(lambda x, y: np.sum(x * y), argnums=1)(X, y=X)


# ---- the other transformations --------------------------------------------------------------


def power_loss(x, n, rate):
    return np.sum(np.sin(rate * x) ** n) if n > 1 else np.sum(x)


@pytest.mark.parametrize("backend", BACKENDS)
def test_hessian_and_hvp_take_static_arguments(backend):
    # d2/dx2 sin(r x)^2 = 2 r^2 cos(2 r x), a diagonal Hessian
    expected = np.diag(2 * 0.8**2 * np.cos(2 * 0.8 * X))
    hessian = cr.hessian(power_loss, static_argnums=1, backend=backend)(X, 2, 0.8)
    np.testing.assert_allclose(hessian, expected, rtol=1e-12, atol=1e-14)
    v = np.array([1.0, 2.0, -1.0])
    hv = cr.hvp(power_loss, static_argnames="n", backend=backend)(X, 2, 0.8, v)
    np.testing.assert_allclose(hv, expected @ v, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("backend", BACKENDS)
def test_jacobian_takes_static_arguments(backend):
    jacobian = cr.jacobian(lambda x, n: x**n, static_argnames="n", backend=backend)
    np.testing.assert_allclose(jacobian(X, 3), np.diag(3 * X**2), rtol=1e-14)
    np.testing.assert_allclose(jacobian(X, 2), np.diag(2 * X), rtol=1e-14)


def test_jvp_and_vjp_take_static_arguments_with_none_in_their_place():
    # f(x, n, rate) = sum(sin(rate x)^2): df/dx = rate sin(2 rate x), df/drate = sum(x sin(2 rate x))
    out, tangent = cr.jvp(power_loss, (X, 2, 0.8), (np.ones(3), None, 1.0), static_argnums=1)
    assert out == pytest.approx(np.sum(np.sin(0.8 * X) ** 2), rel=1e-14)
    expected = np.sum(0.8 * np.sin(1.6 * X)) + np.sum(X * np.sin(1.6 * X))
    assert tangent == pytest.approx(expected, rel=1e-12)
    with pytest.raises(cr.ArgumentError, match="static: its tangent must be None"):
        cr.jvp(power_loss, (X, 2, 0.8), (np.ones(3), 1, 1.0), static_argnums=1)
    out, vjp_fn = cr.vjp(power_loss, X, 2, 0.8, static_argnames="n")
    dx, dn, drate = vjp_fn(np.float64(1.0))
    assert dn is None and type(drate) is not type(None)
    np.testing.assert_allclose(dx, 0.8 * np.sin(1.6 * X), rtol=1e-12)
    assert float(drate) == pytest.approx(np.sum(X * np.sin(1.6 * X)), rel=1e-12)


def test_jvp_and_vjp_with_static_arguments_compose_under_grad():
    def cubed_sum(x, n):
        return np.sum(x**n)

    def through_vjp(x):
        _, vjp_fn = cr.vjp(cubed_sum, x, 3, static_argnums=1)
        gradient, no_cotangent = vjp_fn(np.float64(1.0))
        assert no_cotangent is None
        return np.sum(gradient)  # sum(3 x^2)

    np.testing.assert_allclose(cr.grad(through_vjp)(X), 6 * X, rtol=1e-14)

    def through_jvp(x):
        return cr.jvp(cubed_sum, (x, 2), (np.ones(3), None), static_argnums=1)[1]  # sum(2 x)

    np.testing.assert_allclose(cr.grad(through_jvp)(X), 2 * np.ones(3), rtol=1e-14)
