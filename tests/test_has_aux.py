"""has_aux=True, as in JAX: the function returns (value, aux); aux comes back as NumPy values and
is not differentiated. grad gives (gradients, aux), value_and_grad ((value, aux), gradients),
vjp (out, vjp_fn, aux), jacobian (jacobian, aux).

The aux values here would change the gradient if they were differentiated (they are large
multiples of x), so a gradient equal to the value's alone shows that none flowed from aux.
Expected gradients are derived by hand and checked against finite differences.
"""

import numpy as np
import pytest

import chainrule as cr

BACKENDS = ["numpy", "llvm"]
X = np.array([0.5, -1.5, 2.0])


def loss_with_aux(x):
    loss = np.sum(np.sin(x) ** 2)
    return loss, {"scaled": 1000.0 * x, "norm": np.sqrt(np.sum(x * x)), "positive": x > 0}


def loss_gradient(x):
    return np.sin(2 * x)  # d/dx sin(x)^2


def test_the_expected_gradient_is_the_loss_gradient_by_finite_differences():
    step = 1e-6
    for i in range(3):
        e = np.eye(3)[i] * step
        difference = (loss_with_aux(X + e)[0] - loss_with_aux(X - e)[0]) / (2 * step)
        assert loss_gradient(X)[i] == pytest.approx(difference, rel=1e-7)


def check_aux(aux):
    assert set(aux) == {"scaled", "norm", "positive"}
    assert all(isinstance(v, (np.ndarray, np.generic)) for v in aux.values())
    np.testing.assert_allclose(aux["scaled"], 1000.0 * X, rtol=1e-15)
    assert float(aux["norm"]) == pytest.approx(np.linalg.norm(X), rel=1e-15)
    np.testing.assert_array_equal(aux["positive"], X > 0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_grad_with_aux_returns_the_gradients_and_aux(backend):
    gradient, aux = cr.grad(loss_with_aux, has_aux=True, backend=backend)(X)
    np.testing.assert_allclose(gradient, loss_gradient(X), rtol=1e-14)
    check_aux(aux)


@pytest.mark.parametrize("backend", BACKENDS)
def test_value_and_grad_with_aux_returns_the_value_and_aux_then_the_gradients(backend):
    (value, aux), gradient = cr.value_and_grad(loss_with_aux, has_aux=True, backend=backend)(X)
    assert float(value) == pytest.approx(np.sum(np.sin(X) ** 2), rel=1e-15)
    np.testing.assert_allclose(gradient, loss_gradient(X), rtol=1e-14)
    check_aux(aux)


def test_grad_with_aux_and_several_argnums_and_static_arguments():
    def loss(x, w, target):
        prediction = np.sum(x * w)
        offset = 1.0 if target == "one" else 0.0  # Python control flow on the static target
        return (prediction - offset) ** 2, {"prediction": prediction}

    (gx, gw), aux = cr.grad(loss, argnums=(0, 1), has_aux=True, static_argnames="label")(X, 2 * X, "one")
    residual = np.sum(X * 2 * X) - 1.0
    np.testing.assert_allclose(gx, 2 * residual * 2 * X, rtol=1e-14)
    np.testing.assert_allclose(gw, 2 * residual * X, rtol=1e-14)
    assert float(aux["prediction"]) == pytest.approx(residual + 1.0, rel=1e-15)


def test_vjp_with_aux_returns_the_output_the_vjp_function_and_aux():
    def f(x):
        return np.sin(x), {"total": np.sum(x) * 1000.0}

    out, vjp_fn, aux = cr.vjp(f, X, has_aux=True)
    np.testing.assert_allclose(out, np.sin(X), rtol=1e-15)
    (cotangent,) = vjp_fn(np.ones(3))
    np.testing.assert_allclose(cotangent, np.cos(X), rtol=1e-15)
    assert float(aux["total"]) == pytest.approx(1000.0 * np.sum(X), rel=1e-15)


@pytest.mark.parametrize("backend", BACKENDS)
def test_jacobian_with_aux_returns_the_jacobian_and_aux(backend):
    def f(x):
        return x**2, [np.sum(x), x * 1000.0]

    jacobian, aux = cr.jacobian(f, has_aux=True, backend=backend)(X)
    np.testing.assert_allclose(jacobian, np.diag(2 * X), rtol=1e-15)
    assert float(aux[0]) == pytest.approx(np.sum(X), rel=1e-15)
    np.testing.assert_allclose(aux[1], 1000.0 * X, rtol=1e-15)


def test_a_function_that_returns_no_pair_is_an_output_error():
    with pytest.raises(cr.OutputError, match=r"has_aux=True, .* must return a pair \(value, aux\)"):
        cr.grad(lambda x: np.sum(x), has_aux=True)(X)
    with pytest.raises(cr.OutputError, match="must return a pair"):
        cr.vjp(lambda x: (x, x, x), X, has_aux=True)


def test_the_value_must_still_be_a_scalar():
    with pytest.raises(cr.OutputError, match=r"grad needs a function with one scalar output.*\(value, aux\)"):
        cr.grad(lambda x: ((np.sum(x), np.sum(x)), x), has_aux=True)(X)


def test_has_aux_agrees_with_jax():
    jax = pytest.importorskip("jax")
    jnp = pytest.importorskip("jax.numpy")

    def loss(x):
        return jnp.sum(jnp.sin(x) ** 2), {"scaled": 1000.0 * x}

    with jax.enable_x64(True):
        (value, aux), gradient = jax.value_and_grad(loss, has_aux=True)(jnp.asarray(X))
        (our_value, our_aux), our_gradient = cr.value_and_grad(loss_with_aux, has_aux=True)(X)
    assert float(our_value) == pytest.approx(float(value), rel=1e-15)
    np.testing.assert_allclose(our_gradient, np.asarray(gradient), rtol=1e-14)
    np.testing.assert_allclose(our_aux["scaled"], np.asarray(aux["scaled"]), rtol=1e-15)


def test_vjp_with_aux_inside_grad_composes():
    def outer(x):
        _, vjp_fn, aux = cr.vjp(lambda x: (np.sin(x), np.sum(x)), x, has_aux=True)
        return np.sum(vjp_fn(np.ones(3))[0]) + aux  # sum(cos x) + sum(x)

    np.testing.assert_allclose(cr.grad(outer)(X), 1 - np.sin(X), rtol=1e-14)
