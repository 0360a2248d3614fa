"""The array builtin of small llvm kernels (backends/llvm/array_entry.py), the values-only LAPACK
calls that read Aᵀ, and outputs computed straight into the caller's array (issue 16)."""

import threading

import numpy as np
import pytest

import chainrule as cr
from chainrule.backends.llvm import array_entry
from chainrule.errors import ChainruleError, ShapeError

pytestmark = pytest.mark.skipif(not array_entry.available(), reason="no CPython/NumPy layout for array builtins")


def _matrix(n, seed=0):
    m = np.random.default_rng(seed).standard_normal((n, n))
    return m @ m.T / n + np.eye(n)


def test_a_small_kernel_of_arrays_runs_through_its_array_builtin():
    f = cr.jit(lambda a, b: a @ b + np.sin(a), backend="llvm")
    a, b = _matrix(4), _matrix(4, 1)
    f(a, b)
    assert f._array_call is not None
    for seed in range(3):  # new values each call: nothing is kept from the last one
        a, b = _matrix(4, seed), _matrix(4, seed + 5)
        np.testing.assert_allclose(f(a, b), a @ b + np.sin(a), rtol=1e-14)
    assert f.cache_info().misses == 1


class _Subclass(np.ndarray):
    pass


def test_arguments_the_builtin_does_not_take_go_the_general_way():
    f = cr.jit(lambda x: np.cumsum(x * 2.0, axis=0), backend="llvm")
    x = np.arange(12.0).reshape(4, 3)
    np.testing.assert_allclose(f(x), np.cumsum(x * 2, axis=0))
    other = [
        np.asfortranarray(x),  # not C-contiguous: copied by the general path
        x.astype(">f8" if np.little_endian else "<f8"),  # another byte order: another dtype object
        x.astype(np.float32),  # another dtype: another kernel
        x.view(_Subclass),  # a subclass
        x[:, :2],  # another shape
        np.arange(24.0).reshape(4, 3, 2)[..., 0],  # a strided view
    ]
    for value in other:
        expected = np.cumsum(np.asarray(value) * 2.0, axis=0)
        result = f(value)
        np.testing.assert_allclose(result, expected, rtol=1e-6)
        assert np.asarray(result).dtype == expected.dtype
    np.testing.assert_allclose(f(x), np.cumsum(x * 2, axis=0))


def test_a_wrong_shape_after_the_fast_path_still_raises_at_the_users_line():
    w = np.ones(3)
    f = cr.jit(lambda x: x @ w, backend="llvm")
    assert f(np.arange(3.0)) == 3.0
    assert f(np.arange(3.0)) == 3.0  # through the builtin
    with pytest.raises(ShapeError) as error:
        f(np.arange(4.0))
    assert "test_array_entry.py" in str(error.value)


def test_a_lapack_failure_through_the_builtin_raises_numpys_error():
    f = cr.jit(lambda a: np.sum(np.linalg.cholesky(a)), backend="llvm")
    a = _matrix(5)
    np.testing.assert_allclose(f(a), np.sum(np.linalg.cholesky(a)), rtol=1e-13)
    assert f._array_call is not None
    with pytest.raises(np.linalg.LinAlgError, match="not positive definite") as error:
        f(-a)
    assert isinstance(error.value, ChainruleError)
    np.testing.assert_allclose(f(a), np.sum(np.linalg.cholesky(a)), rtol=1e-13)  # the status was cleared


def test_gradients_and_scalar_outputs_through_the_builtin():
    a = _matrix(8, 3)
    grad = cr.grad(lambda a: np.linalg.slogdet(a)[1], backend="llvm")
    value_and_grad = cr.value_and_grad(lambda a: np.linalg.slogdet(a)[1], backend="llvm")
    for _ in range(2):
        np.testing.assert_allclose(grad(a), np.linalg.inv(a).T, rtol=1e-12)
        value, gradient = value_and_grad(a)
        np.testing.assert_allclose(value, np.linalg.slogdet(a)[1], rtol=1e-13)
        np.testing.assert_allclose(gradient, np.linalg.inv(a).T, rtol=1e-12)
    zero_d = cr.jit(lambda s, x: s * np.sum(x), backend="llvm")  # a 0-d array input: staged
    for s in (2.0, 3.0):
        assert zero_d(np.array(s), np.ones(4)) == 4 * s


def test_threads_calling_one_kernel_through_both_paths_get_their_own_results():
    f = cr.jit(lambda a: np.linalg.eigvalsh(a) * 2.0, backend="llvm")
    matrices = [_matrix(6, seed) for seed in range(8)]
    f(matrices[0])
    failures = []

    def work(seed):
        for _ in range(50):
            a = matrices[seed]
            argument = a if seed % 2 else np.asfortranarray(a)  # odd threads: the builtin; even: the lock
            if not np.allclose(f(argument), np.linalg.eigvalsh(a) * 2.0, rtol=1e-12):
                failures.append(seed)

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("lower", [True, False])
def test_eigvalsh_reading_the_transpose_gives_numpys_values(dtype, lower):
    rng = np.random.default_rng(4)
    a = rng.standard_normal((3, 5, 5)).astype(dtype)  # not symmetric: only one triangle is read
    uplo = "L" if lower else "U"
    f = cr.jit(lambda a: np.linalg.eigvalsh(a, UPLO=uplo), backend="llvm")
    tolerance = 1e-5 if dtype == "float32" else 1e-12
    for operand in (a, np.swapaxes(a, -1, -2)):
        np.testing.assert_allclose(f(operand), np.linalg.eigvalsh(operand, UPLO=uplo), rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("shape", [(4, 7), (7, 4), (2, 5, 5), (6, 3)])
def test_singular_values_of_the_transpose_are_numpys(shape):
    a = np.random.default_rng(5).standard_normal(shape)
    f = cr.jit(lambda a: np.linalg.svd(a, compute_uv=False), backend="llvm")
    np.testing.assert_allclose(f(a), np.linalg.svd(a, compute_uv=False), rtol=1e-12)
    transposed = np.swapaxes(a, -1, -2)
    np.testing.assert_allclose(f(transposed), np.linalg.svd(transposed, compute_uv=False), rtol=1e-12)


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
@pytest.mark.parametrize("n", [3, 40])
def test_the_gradient_of_a_trace_is_the_identity(backend, n):
    x = np.random.default_rng(n).standard_normal((n, n))
    grad = cr.grad(lambda x: np.einsum("ii->", x) * 3.0, backend=backend)
    for _ in range(2):
        np.testing.assert_array_equal(grad(x), 3.0 * np.eye(n))


def test_an_output_reshaping_a_value_other_nodes_read_is_still_right():
    f = cr.jit(lambda x: (np.exp(x).reshape(-1), np.sum(np.exp(x) * 2.0)), backend="llvm")
    x = np.linspace(-1, 1, 40 * 40).reshape(40, 40)
    flat, total = f(x)
    np.testing.assert_allclose(flat, np.exp(x).reshape(-1), rtol=1e-15)
    np.testing.assert_allclose(total, np.sum(np.exp(x) * 2.0), rtol=1e-12)
