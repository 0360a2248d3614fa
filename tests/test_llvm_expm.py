"""expm and its Fréchet derivative on the llvm backend: native code (BLAS, LAPACK), no NumPy callback.

Values are SciPy's ``expm`` / ``expm_frechet`` to ~1e-13 on matrices whose norms reach every Padé
degree and the scaling branch; gradients also match central differences, in reverse and forward
mode, batched, on transposed operands and in float32; a non-finite matrix gives NaN, not a hang.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
from gradient_helpers import numerical_gradient, relative_error

import chainrule as cr

# ‖A‖₁ in each of expm's degree ranges (θ₃ ≈ 0.015, θ₅ ≈ 0.25, θ₇ ≈ 0.95, θ₉ ≈ 2.1, θ₁₃ ≈ 5.4) and
# well past θ₁₃ (scaled and squared), and likewise for the Fréchet derivative's thetas
NORMS = [0.005, 0.1, 0.5, 1.5, 3.0, 12.0, 60.0]


def matrix(n, norm, seed=0):
    a = np.random.default_rng(seed).standard_normal((n, n))
    return a * (norm / np.linalg.norm(a, 1))


def kernel_of(compiled, *args):
    entry, _ = compiled._specialize(args)
    return entry.kernel


def assert_native(compiled, args, routines):
    kernel = kernel_of(compiled, *args)
    assert not [f.op for f in kernel.lowered.fallbacks if f.op in ("expm", "expm_frechet")]
    for routine in routines:
        assert f"@chainrule_lapack_{routine}(" in kernel.source, routine


def close(got, expected, rtol):
    assert got.dtype == expected.dtype and got.shape == expected.shape
    scale = float(np.max(np.abs(expected)))
    np.testing.assert_allclose(got, expected, rtol=0, atol=rtol * scale)


@pytest.mark.parametrize("n", [1, 2, 5, 17])
@pytest.mark.parametrize("norm", NORMS)
def test_expm_is_native_and_is_scipys(n, norm):
    a = matrix(n, norm, seed=n)
    compiled = cr.jit(scipy.linalg.expm, backend="llvm")
    close(compiled(a), scipy.linalg.expm(a), 1e-13)
    assert_native(compiled, (a,), ["dgemm", "dgesv", "dlange"])


@pytest.mark.parametrize("n", [1, 3, 8])
@pytest.mark.parametrize("norm", NORMS)
def test_the_gradient_is_a_native_frechet_derivative_and_is_scipys(n, norm):
    a, w = matrix(n, norm, seed=n), np.random.default_rng(1).standard_normal((n, n))
    grad = cr.grad(lambda x: np.sum(w * scipy.linalg.expm(x)), backend="llvm")
    # ⟨W, L(A, E)⟩ = ⟨L(Aᵀ, W), E⟩: the gradient is the Fréchet derivative at Aᵀ in direction W
    close(grad(a), scipy.linalg.expm_frechet(a.T, w, compute_expm=False), 1e-13)
    assert_native(grad, (a,), ["dgemm", "dgetrf", "dgetrs"])


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
@pytest.mark.parametrize("norm", [0.3, 4.0])
def test_gradients_match_central_differences_in_both_modes(backend, norm):
    a = matrix(4, norm, seed=3)
    w = np.random.default_rng(4).standard_normal((4, 4))

    def loss(x):
        return np.sum(w * np.sin(scipy.linalg.expm(x)))

    numeric = numerical_gradient(loss, (a,), 0)
    assert relative_error(cr.grad(loss, backend=backend)(a), numeric) < 1e-7
    jacobian = cr.jacobian(loss, mode="fwd", backend=backend)(a)
    assert relative_error(jacobian, numeric) < 1e-7


def test_second_derivatives_agree_across_backends():
    a = matrix(3, 2.0, seed=5)

    def loss(x):
        return np.sum(np.cos(scipy.linalg.expm(x)))

    on_numpy, on_llvm = (cr.hessian(loss, backend=b)(a) for b in ("numpy", "llvm"))
    np.testing.assert_allclose(on_llvm, on_numpy, rtol=1e-10, atol=1e-12)
    gradient = cr.grad(loss)
    numeric = numerical_gradient(lambda y: gradient(y)[0, 1], (a,), 0)
    assert relative_error(on_llvm[0, 1], numeric) < 1e-7


def test_batched_and_transposed_operands():
    stack = np.stack([matrix(4, norm, seed=k) for k, norm in enumerate([0.01, 0.7, 9.0])]).reshape(3, 1, 4, 4)
    compiled = cr.jit(lambda x: scipy.linalg.expm(np.swapaxes(x, -1, -2)), backend="llvm")
    close(compiled(stack), scipy.linalg.expm(np.swapaxes(stack, -1, -2)), 1e-13)
    assert_native(compiled, (stack,), ["dgesv"])
    w = np.random.default_rng(6).standard_normal((4, 4))
    grad = cr.grad(lambda x: np.sum(w * scipy.linalg.expm(x)), backend="llvm")
    expected = np.stack([scipy.linalg.expm_frechet(m.T, w, compute_expm=False) for m in stack.reshape(3, 4, 4)])
    close(grad(stack), expected.reshape(stack.shape), 1e-13)


def test_float32_computes_in_single_precision():
    a = matrix(5, 3.0, seed=7)
    compiled = cr.jit(lambda x: scipy.linalg.expm(x.astype(np.float32)), backend="llvm")
    result = compiled(a)
    assert result.dtype == np.float32
    close(result, scipy.linalg.expm(a.astype(np.float32)), 1e-5)
    assert_native(compiled, (a,), ["sgemm", "sgesv", "slange"])
    grad = cr.grad(lambda x: np.sum(scipy.linalg.expm(x)), backend="llvm")
    gradient = grad(a.astype(np.float32))
    assert gradient.dtype == np.float32
    close(gradient, scipy.linalg.expm_frechet(a.T, np.ones((5, 5)), compute_expm=False).astype(np.float32), 1e-5)


@pytest.mark.parametrize("bad", [np.inf, np.nan])
def test_a_non_finite_matrix_gives_nan_and_terminates(bad):
    a = matrix(3, 1.0)
    a[1, 2] = bad
    result = cr.jit(scipy.linalg.expm, backend="llvm")(a)
    assert np.isnan(result).any()
