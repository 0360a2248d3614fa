"""``cr.grad``'s NumPy kernel returns None in place of the value it never reads, and computes
nothing only the value needs (transforms/specialization.make_kernel; issue 16: the gradient of a
linear function is a constant, and took a forward pass). The LLVM kernel drops the value where it
needs a call of its own (compiler/dce.without_value: slogdet's factorization)."""

import numpy as np
import pytest

import chainrule as cr


def _central_differences(f, x, step=1e-6):
    gradient = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[index] = step
        gradient[index] = (f(x + e) - f(x - e)) / (2 * step)
    return gradient


def test_the_gradient_of_a_linear_function_runs_no_forward_pass():
    w = np.arange(6.0).reshape(2, 3)
    loss = lambda x: np.sum(w * np.einsum("ij->ji", x).T)
    x = np.ones((2, 3))
    f = cr.grad(loss)
    source = f.source(x)
    assert "return (None," in source and ".sum(" not in source
    for _ in range(2):  # the second call through the array guard
        gradient = f(x)
        np.testing.assert_allclose(gradient, _central_differences(loss, x), rtol=1e-7)
        gradient[...] = -1.0  # the caller's own array: the next call's is the constant again
    np.testing.assert_allclose(f(x), w)


def test_value_and_grad_and_has_aux_still_compute_the_value():
    w = np.linspace(-1, 1, 5)

    def loss(x):
        return np.sum(w * np.sin(x))

    def with_aux(x):
        return loss(x), {"value": loss(x)}

    x = np.linspace(0.1, 0.9, 5)
    expected = _central_differences(loss, x)
    grad, value_and_grad = cr.grad(loss), cr.value_and_grad(loss)
    for _ in range(2):  # interleaved: one compilation, two kernels
        np.testing.assert_allclose(grad(x), expected, rtol=1e-7)
        value, gradient = value_and_grad(x)
        assert value == pytest.approx(loss(x), rel=1e-14)
        np.testing.assert_allclose(gradient, expected, rtol=1e-7)
    gradient, aux = cr.grad(with_aux, has_aux=True)(x)
    np.testing.assert_allclose(gradient, expected, rtol=1e-7)
    assert aux["value"] == pytest.approx(loss(x), rel=1e-14)
    assert "return (None," in grad.source(x) and "None" not in value_and_grad.source(x)


@pytest.mark.parametrize("argnums", [0, 1, (1, 0)])
def test_gradients_of_several_arguments_and_python_floats(argnums):
    def loss(a, scale):
        return np.sum(np.tanh(a)) * scale**2

    a, scale = np.linspace(-1, 1, 4), 1.5
    f = cr.grad(loss, argnums=argnums)
    expected = {0: (1 - np.tanh(a) ** 2) * scale**2, 1: 2 * scale * np.sum(np.tanh(a))}
    for _ in range(2):
        result = f(a, scale)
        wanted = expected[argnums] if isinstance(argnums, int) else tuple(expected[n] for n in argnums)
        if argnums == 1:
            assert type(result) is float and result == pytest.approx(wanted, rel=1e-14)
        elif isinstance(argnums, int):
            np.testing.assert_allclose(result, wanted, rtol=1e-14)
        else:
            assert type(result[0]) is float and result[0] == pytest.approx(wanted[0], rel=1e-14)
            np.testing.assert_allclose(result[1], wanted[1], rtol=1e-14)


def test_the_llvm_kernel_keeps_its_layout():
    pytest.importorskip("llvmlite")
    w = np.arange(4.0)
    f = cr.grad(lambda x: np.sum(w * x), backend="llvm")
    np.testing.assert_allclose(f(np.ones(4)), w)
    np.testing.assert_allclose(f(np.ones(4)), w)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_on_llvm_the_gradient_of_slogdet_factors_the_matrix_once(dtype):
    """The log-determinant's LU factorization (getrf) is the value's alone: grad's LLVM kernel
    solves for inv(A).T (gesv) and runs no getrf; value_and_grad still runs both."""
    rng = np.random.default_rng(5)
    a = rng.standard_normal((6, 6))
    a = (a @ a.T + 6 * np.eye(6)).astype(dtype)
    loss = lambda a: np.linalg.slogdet(a)[1] * 2.0
    gradient = cr.grad(loss, backend="llvm")
    np.testing.assert_allclose(gradient(a), 2 * np.linalg.inv(a).T, rtol=1e-5 if dtype == np.float32 else 1e-12)
    kernel_ir = gradient._specialize((a,))[0].kernel.lowered.ir
    assert "getrf(" not in kernel_ir and "gesv(" in kernel_ir
    both = cr.value_and_grad(loss, backend="llvm")
    value, _ = both(a)
    assert np.isclose(value, 2 * np.linalg.slogdet(a)[1], rtol=1e-5)
    assert "getrf(" in both._specialize((a,))[0].kernel.lowered.ir
