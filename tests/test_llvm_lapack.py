"""The linear-algebra ops on the llvm backend call SciPy's LAPACK from the native code.

Each op's kernel must call the LAPACK routine (its symbol is in the module) and run no NumPy
callback for a linear-algebra node; its values are NumPy's/SciPy's (to 1e-12 in float64),
batched, on transposed and broadcast operands, in float32; gradients match central differences;
a singular or non-positive-definite matrix behaves as on the NumPy backend.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
from gradient_helpers import numerical_gradient, relative_error, weighted_sum

import chainrule as cr

LINALG_OPS = {"cholesky", "solve", "triangular_solve", "slogdet", "eigh", "svd", "qr"}


def kernel_of(compiled, *args):
    entry, _ = compiled._specialize(args)
    return entry.kernel


def assert_native(compiled, args, routines):
    """The kernel calls each LAPACK routine and calls back into NumPy for no linear-algebra node."""
    kernel = kernel_of(compiled, *args)
    for routine in routines:
        assert f"call void @chainrule_lapack_{routine}(" in kernel.source, routine
    assert not [f.op for f in kernel.lowered.fallbacks if f.op in LINALG_OPS]


def rng_for(seed):
    return np.random.default_rng(seed)


def positive_definite(shape, seed=0):
    x = rng_for(seed).standard_normal(shape)
    return x @ np.swapaxes(x, -1, -2) + shape[-1] * np.eye(shape[-1])


def column_signs_fixed(v):
    """Eigen/singular vectors (columns) with each column's largest entry positive: a sign is arbitrary."""
    rows = np.argmax(np.abs(v), axis=-2)[..., None, :]
    return v * np.sign(np.take_along_axis(v, rows, axis=-2))


def close(got, expected, rtol=1e-12):
    got, expected = np.asarray(got), np.asarray(expected)
    assert got.dtype == expected.dtype and got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=rtol * max(1.0, float(np.max(np.abs(expected)))))


A = positive_definite((5, 5))
STACK = positive_definite((2, 3, 4, 4), seed=1)
GENERAL = rng_for(2).standard_normal((2, 5, 3))

# (name, fn, args, routines, reference)
VALUE_CASES = [
    ("cholesky", np.linalg.cholesky, (A,), ["dpotrf"], np.linalg.cholesky(A)),
    ("cholesky-batched", np.linalg.cholesky, (STACK,), ["dpotrf"], np.linalg.cholesky(STACK)),
    ("cholesky-of-transpose", lambda a: np.linalg.cholesky(a.T + 0.0 * a), (A,), ["dpotrf"], np.linalg.cholesky(A.T)),
    ("solve", np.linalg.solve, (A, GENERAL[0]), ["dgesv"], np.linalg.solve(A, GENERAL[0])),
    (
        "solve-broadcast-batch",
        lambda a, b: np.linalg.solve(a, b),
        (STACK[0, 0], STACK),
        ["dgesv"],
        np.linalg.solve(STACK[0, 0], STACK),
    ),
    ("inv", np.linalg.inv, (STACK,), ["dgesv"], np.linalg.inv(STACK)),
    (
        "solve_triangular-lower",
        lambda a, b: scipy.linalg.solve_triangular(a, b, lower=True),
        (np.tril(A), GENERAL[0]),
        ["dtrsm"],
        scipy.linalg.solve_triangular(np.tril(A), GENERAL[0], lower=True),
    ),
    (
        "solve_triangular-upper",
        lambda a, b: scipy.linalg.solve_triangular(a, b),
        (np.triu(A), GENERAL[1]),
        ["dtrsm"],
        scipy.linalg.solve_triangular(np.triu(A), GENERAL[1]),
    ),
    ("slogdet", lambda a: np.stack(np.linalg.slogdet(a)), (STACK - 5 * np.eye(4),), ["dgetrf"], None),
    ("det", np.linalg.det, (STACK - 5 * np.eye(4),), ["dgetrf"], np.linalg.det(STACK - 5 * np.eye(4))),
    ("eigvalsh", np.linalg.eigvalsh, (STACK,), ["dsyevd"], np.linalg.eigvalsh(STACK)),
    ("eigh-upper-values", lambda a: np.linalg.eigh(a, UPLO="U")[0], (np.triu(A),), ["dsyevd"], None),
    ("svd-values", lambda a: np.linalg.svd(a, compute_uv=False), (GENERAL,), ["dgesdd"], None),
    ("qr-tall", lambda a: np.linalg.qr(a)[1], (GENERAL,), ["dgeqrf", "dorgqr"], np.linalg.qr(GENERAL)[1]),
    ("qr-wide-q", lambda a: np.linalg.qr(a)[0], (GENERAL.mT,), ["dgeqrf", "dorgqr"], np.linalg.qr(GENERAL.mT)[0]),
    (
        "lstsq",
        lambda a, b: np.linalg.lstsq(a, b)[0],
        (GENERAL[0], GENERAL[1][:, 0]),
        ["dgesdd"],
        np.linalg.lstsq(GENERAL[0], GENERAL[1][:, 0])[0],
    ),
]


@pytest.mark.parametrize("name, fn, args, routines, reference", VALUE_CASES, ids=[c[0] for c in VALUE_CASES])
def test_each_op_calls_lapack_natively_and_computes_what_numpy_does(name, fn, args, routines, reference):
    compiled = cr.jit(fn, backend="llvm")
    expected = fn(*args) if reference is None else reference  # the plain NumPy/SciPy call
    close(compiled(*args), expected)
    assert_native(compiled, args, routines)


@pytest.mark.parametrize("shape", [(4, 4), (2, 3, 5, 5)])
@pytest.mark.parametrize("lower", [True, False])
def test_eigenvectors_are_numpys_up_to_sign(shape, lower):
    a = positive_definite(shape, seed=3)
    compiled = cr.jit(lambda a: np.linalg.eigh(a, UPLO="L" if lower else "U"), backend="llvm")
    w, v = compiled(a)
    expected_w, expected_v = np.linalg.eigh(a, UPLO="L" if lower else "U")
    close(w, expected_w)
    close(column_signs_fixed(v), column_signs_fixed(expected_v))
    assert_native(compiled, (a,), ["dsyevd"])


@pytest.mark.parametrize("shape", [(5, 3), (3, 5), (2, 4, 4)])
def test_singular_vectors_are_numpys_up_to_sign(shape):
    a = rng_for(4).standard_normal(shape)
    u, s, vh = cr.jit(lambda a: np.linalg.svd(a, full_matrices=False), backend="llvm")(a)
    expected_u, expected_s, expected_vh = np.linalg.svd(a, full_matrices=False)
    close(s, expected_s)
    # a pair (u_i, v_i) flips together: fix u's signs and carry them over to vh
    signs = np.sign(np.take_along_axis(u, np.argmax(np.abs(u), axis=-2)[..., None, :], axis=-2))
    expected_signs = np.sign(
        np.take_along_axis(expected_u, np.argmax(np.abs(expected_u), axis=-2)[..., None, :], axis=-2)
    )
    close(u * signs, expected_u * expected_signs)
    close(vh * np.swapaxes(signs, -1, -2), expected_vh * np.swapaxes(expected_signs, -1, -2))


def eye(x):
    return np.eye(x.shape[-1], dtype=x.dtype)


GRADIENT_CASES = [
    ("cholesky", lambda x: weighted_sum(np.linalg.cholesky(x @ x.mT + eye(x))), ["dpotrf", "dtrsm"]),
    ("solve", lambda x: weighted_sum(np.linalg.solve(x + 4 * eye(x), np.sin(x))), ["dgesv"]),
    # grad never reads the value: its factorization (getrf) is dropped (compiler/dce.without_value)
    ("slogdet", lambda x: weighted_sum(np.linalg.slogdet(x + 4 * eye(x))[1]), ["dgesv"]),
    ("eigh", lambda x: weighted_sum(np.linalg.eigh(x + x.mT)[1] ** 2), ["dsyevd"]),
    ("svd", lambda x: weighted_sum(np.linalg.svd(x, compute_uv=False)), ["dgesdd"]),
    ("qr", lambda x: weighted_sum(np.linalg.qr(x)[1]), ["dgeqrf", "dtrsm"]),
]


@pytest.mark.parametrize("shape", [(4, 4), (2, 4, 4)])
@pytest.mark.parametrize("name, fn, routines", GRADIENT_CASES, ids=[c[0] for c in GRADIENT_CASES])
def test_gradients_are_native_and_match_central_differences(name, fn, routines, shape):
    x = rng_for(5).standard_normal(shape)
    grad = cr.grad(fn, backend="llvm")
    assert relative_error(grad(x), numerical_gradient(fn, (x,), 0)) < 1e-7
    assert_native(grad, (x,), routines)


@pytest.mark.parametrize("name, fn, routines", GRADIENT_CASES, ids=[c[0] for c in GRADIENT_CASES])
def test_float32_calls_the_single_precision_routines(name, fn, routines):
    x = rng_for(6).standard_normal((2, 4, 4))
    value_and_grad = cr.value_and_grad(fn, backend="llvm")
    value, gradient = value_and_grad(x.astype(np.float32))
    expected_value, expected_gradient = cr.value_and_grad(fn, backend="llvm")(x)
    assert np.asarray(value).dtype == np.float32 and gradient.dtype == np.float32
    assert abs(float(value) - float(expected_value)) <= 1e-4 * max(1.0, abs(float(expected_value)))
    assert relative_error(gradient, expected_gradient) < 1e-4
    assert_native(value_and_grad, (x.astype(np.float32),), ["s" + r[1:] for r in routines])


NOT_POSITIVE_DEFINITE = np.array([[1.0, 2.0], [2.0, 1.0]])
SINGULAR = np.array([[1.0, 2.0], [2.0, 4.0]])


@pytest.mark.parametrize(
    "fn, args",
    [
        (np.linalg.cholesky, (NOT_POSITIVE_DEFINITE,)),
        (np.linalg.cholesky, (np.stack([np.eye(2), NOT_POSITIVE_DEFINITE]),)),  # the second of a batch
        (np.linalg.solve, (SINGULAR, np.ones((2, 1)))),
        (np.linalg.inv, (np.stack([np.eye(2), SINGULAR]),)),
        (np.linalg.inv, (SINGULAR.astype(np.float32),)),
        (np.linalg.eigvalsh, (np.full((3, 3), np.nan),)),  # syevd does not converge
        (lambda a: np.linalg.svd(a, compute_uv=False), (np.full((3, 3), np.nan),)),  # gesdd: info = -4
    ],
)
def test_a_failed_factorization_raises_numpys_error_and_message(fn, args):
    with pytest.raises(np.linalg.LinAlgError) as on_numpy:
        cr.jit(fn, backend="numpy")(*args)
    compiled = cr.jit(fn, backend="llvm")
    with pytest.raises(np.linalg.LinAlgError) as on_llvm:
        compiled(*args)
    assert isinstance(on_llvm.value, cr.ChainruleError)
    assert on_llvm.value.bare_message == str(on_numpy.value)  # NumPy's message, after the user's line
    good = tuple(np.broadcast_to(np.eye(a.shape[-1], dtype=a.dtype), a.shape).copy() for a in args[:1]) + args[1:]
    close(compiled(*good), fn(*good))  # the status is cleared: the next call succeeds


def test_slogdet_of_a_singular_matrix_is_zero_and_minus_infinity_as_in_numpy():
    a = np.stack([SINGULAR, np.zeros((2, 2)), np.eye(2) * 3])
    compiled = cr.jit(lambda a: np.linalg.slogdet(a), backend="llvm")
    for got, expected in zip(compiled(a), np.linalg.slogdet(a)):
        np.testing.assert_array_equal(got, expected)
    assert_native(compiled, (a,), ["dgetrf"])


def test_several_lapack_nodes_share_one_workspace_and_agree_with_the_numpy_backend():
    def f(a, b):
        chol = np.linalg.cholesky(a @ a.mT + np.eye(4))
        return np.linalg.solve(chol + np.eye(4), b), np.linalg.svd(a + chol, compute_uv=False), np.linalg.det(a)

    a, b = rng_for(8).standard_normal((3, 4, 4)), rng_for(9).standard_normal((3, 4, 2))
    for got, expected in zip(cr.jit(f, backend="llvm")(a, b), cr.jit(f, backend="numpy")(a, b)):
        close(got, expected)
    assert_native(cr.jit(f, backend="llvm"), (a, b), ["dpotrf", "dgesv", "dgesdd", "dgetrf"])


def test_a_small_lapack_kernel_runs_blas_on_one_thread_and_restores_scipys_setting():
    from chainrule.backends.llvm import blas, lapack

    if not lapack.can_set_threads():
        pytest.skip("SciPy's BLAS is not an OpenBLAS whose threads can be set")
    before = blas.get_blas_threads()
    small, large = positive_definite((8, 8)), positive_definite((300, 300))
    try:
        blas.set_blas_threads(2)
        for matrix, single in ((small, True), (large, False)):
            compiled = cr.jit(np.linalg.cholesky, backend="llvm")
            close(compiled(matrix), np.linalg.cholesky(matrix))
            assert ("call void @chainrule_blas_set_threads(i32 1)" in kernel_of(compiled, matrix).source) is single
            assert blas.get_blas_threads() == 2
    finally:
        blas.set_blas_threads(before)


def test_kernels_on_several_threads_at_once_leave_scipys_thread_count_as_it_was():
    import threading

    from chainrule.backends.llvm import blas, lapack

    if not lapack.can_set_threads():
        pytest.skip("SciPy's BLAS is not an OpenBLAS whose threads can be set")
    before = blas.get_blas_threads()
    matrices = [positive_definite((6, 6), seed=s) for s in range(4)]
    kernels = [cr.jit(np.linalg.cholesky, backend="llvm") for _ in matrices]  # one lock each: they overlap
    results: list[bool] = []

    def work(kernel, matrix):
        results.append(all(np.allclose(kernel(matrix), np.linalg.cholesky(matrix)) for _ in range(200)))

    try:
        blas.set_blas_threads(2)
        threads = [threading.Thread(target=work, args=pair) for pair in zip(kernels, matrices)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert results == [True] * len(matrices)
        assert blas.get_blas_threads() == 2
    finally:
        blas.set_blas_threads(before)


@pytest.mark.parametrize(
    "a_shape, b_shape", [((70, 3, 4), (4, 2)), ((2, 1, 3, 4), (5, 4, 2)), ((4,), (4, 5)), ((3, 4), (4,))]
)
def test_matmuls_gemm_cannot_read_directly_copy_their_operands_and_call_gemm(a_shape, b_shape):
    """Broadcast operands (stride 0) and more batch elements than gemm.py unrolls: natively too,
    so a kernel never mixes NumPy's BLAS (and its thread pool) with SciPy's."""
    a, b = rng_for(10).standard_normal(a_shape), rng_for(11).standard_normal(b_shape)
    compiled = cr.jit(lambda a, b: np.broadcast_to(a, a.shape) @ b, backend="llvm")
    close(compiled(a, b), a @ b)
    kernel = kernel_of(compiled, a, b)
    assert not kernel.lowered.fallbacks
    assert "@chainrule_dgemm(" in kernel.source or "@chainrule_lapack_dgemm(" in kernel.source
    ones = np.ones((4, 4))
    gradient = cr.grad(lambda a: np.sum(np.linalg.cholesky(a)), backend="llvm")  # Lᵀ @ (broadcast ones)
    close(gradient(ones + 4 * np.eye(4)), cr.grad(lambda a: np.sum(np.linalg.cholesky(a)))(ones + 4 * np.eye(4)))
    assert not kernel_of(gradient, ones + 4 * np.eye(4)).lowered.fallbacks


def test_a_strided_vector_times_a_matrix_and_a_matrix_times_a_strided_vector():
    v, m = rng_for(12).standard_normal(8), rng_for(13).standard_normal((4, 4))
    for fn in (lambda v, m: v[::2] @ m, lambda v, m: m @ v[::2], lambda v, m: v[::2] @ v[1::2]):
        compiled = cr.jit(fn, backend="llvm")
        close(compiled(v, m), fn(v, m))
        assert not kernel_of(compiled, v, m).lowered.fallbacks


@pytest.mark.parametrize("lower", [True, False])
@pytest.mark.parametrize("layout", ["row-major", "column-major", "strided"])
def test_trsm_reads_a_triangular_matrix_where_it_is_when_blas_can(lower, layout):
    triangle = np.tril if lower else np.triu
    a = triangle(rng_for(8).standard_normal((2, 6, 6))) + 6 * np.eye(6)
    b = rng_for(9).standard_normal((2, 6, 3))
    # exp: a computed (row-major) array, which the column-major and strided cases view
    views = {
        "row-major": lambda x: x,
        # (a transpose of exp of a transpose would be simplified away: exp of x, row-major)
        "column-major": lambda x: np.swapaxes(np.exp(x), -1, -2),
        "strided": lambda x: np.exp(np.concatenate([x, x[..., :1]], axis=-1))[..., :6],
    }
    view = views[layout]
    compiled = cr.jit(lambda x, y: scipy.linalg.solve_triangular(view(x), y, lower=lower), backend="llvm")
    expected = np.stack([scipy.linalg.solve_triangular(view(a)[k], b[k], lower=lower) for k in range(2)])
    close(compiled(a, b), expected)
    source = kernel_of(compiled, a, b).source
    call = next(line for line in source.splitlines() if "call void @chainrule_lapack_dtrsm(" in line)
    # a row-major A is read as the column-major Aᵀ: transa 'T' and the other triangle
    assert ("%char.T" in call) == (layout != "column-major")
