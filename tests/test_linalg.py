"""np.linalg and scipy.linalg on traced values: values, gradients, forward mode, both backends.

Every case is a scalar function of one general matrix argument (a weighted sum of the linear
algebra result, so a transposed or mis-summed cotangent cannot pass); where the function needs
a symmetric or positive definite matrix the case builds one from its argument, so finite
differences on the argument are the derivative the case claims. Expected values are NumPy's and
SciPy's own results and fourth-order central differences -- never chainrule's output.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
import scipy.linalg
from gradient_helpers import numerical_gradient, relative_error, weighted_sum

import chainrule as cr
from chainrule.errors import UnsupportedError
from chainrule.ir import OPS


def well_conditioned(x):
    return x + 4.0 * np.eye(x.shape[-1])


def positive_definite(x):
    return x @ np.swapaxes(x, -1, -2) + np.eye(x.shape[-1])


def symmetric(x):
    return x + np.swapaxes(x, -1, -2)


def lower_triangular(x):
    return np.tril(np.ones(x.shape[-2:])) * x + 3.0 * np.eye(x.shape[-1])


@dataclass(frozen=True)
class Case:
    id: str
    covers: str  # the primitive the case exercises
    fn: Callable
    shape: tuple


CASES: list[Case] = []
SQUARE = [(4, 4), (3, 4, 4)]  # one matrix, and a stack of three


def case(name: str, covers: str, fn: Callable, shapes=SQUARE) -> None:
    for shape in shapes:
        CASES.append(Case(f"{name}-{'x'.join(map(str, shape))}", covers, fn, shape))


def _rhs(x):
    return np.sin(x[..., :2])  # right-hand sides that depend on the argument too


case("np.linalg.solve", "solve", lambda x: weighted_sum(np.linalg.solve(well_conditioned(x), _rhs(x))))
case("np.linalg.solve-vector", "solve", lambda x: weighted_sum(np.linalg.solve(well_conditioned(x), x[0])), [(4, 4)])
case(
    "np.linalg.solve-broadcast",
    "solve",
    lambda x: weighted_sum(np.linalg.solve(well_conditioned(x[0]), _rhs(x))),
    [(3, 4, 4)],
)
case("np.linalg.inv", "solve", lambda x: weighted_sum(np.linalg.inv(well_conditioned(x))))
case("np.linalg.det", "slogdet", lambda x: weighted_sum(np.linalg.det(well_conditioned(x))))
case("np.linalg.slogdet", "slogdet", lambda x: weighted_sum(np.linalg.slogdet(x)[1] * np.linalg.slogdet(x)[0]))
case("np.linalg.cholesky", "cholesky", lambda x: weighted_sum(np.linalg.cholesky(positive_definite(x))))
case(
    "np.linalg.cholesky-upper", "cholesky", lambda x: weighted_sum(np.linalg.cholesky(positive_definite(x), upper=True))
)
case("np.linalg.eigh-values", "eigh", lambda x: weighted_sum(np.linalg.eigh(symmetric(x))[0]))
# an eigenvector's sign is arbitrary: functions of the squares of its entries are not
case("np.linalg.eigh-vectors", "eigh", lambda x: weighted_sum(np.linalg.eigh(symmetric(x), UPLO="U")[1] ** 2))
case("np.linalg.eigvalsh", "eigh", lambda x: weighted_sum(np.linalg.eigvalsh(symmetric(x))))
case(
    "np.linalg.svd-values", "svd", lambda x: weighted_sum(np.linalg.svd(x, compute_uv=False)), SQUARE + [(5, 3), (3, 5)]
)
case(
    "np.linalg.svd-vectors",
    "svd",
    lambda x: (
        weighted_sum(np.linalg.svd(x, full_matrices=False)[0] ** 2)
        + weighted_sum(np.linalg.svd(x, full_matrices=False)[2] ** 2)
    ),
    SQUARE + [(5, 3), (3, 5), (2, 5, 3)],
)
case(
    "np.linalg.qr",
    "qr",
    lambda x: weighted_sum(np.linalg.qr(x)[0]) + weighted_sum(np.linalg.qr(x)[1]),
    SQUARE + [(5, 3), (2, 5, 3)],
)
case("np.linalg.qr-r", "qr", lambda x: weighted_sum(np.linalg.qr(x, mode="r")), [(5, 3)])
# one factor used: the rules leave the other's terms out (tests/test_unused_factors.py)
case("np.linalg.qr-q", "qr", lambda x: weighted_sum(np.linalg.qr(x)[0]), [(5, 3)])
case("np.linalg.svd-u", "svd", lambda x: weighted_sum(np.linalg.svd(x, full_matrices=False)[0] ** 2), [(5, 3)])
case("np.linalg.pinv", "svd", lambda x: weighted_sum(np.linalg.pinv(x)), [(5, 3), (3, 5), (2, 5, 3)])
case("np.linalg.lstsq", "svd", lambda x: weighted_sum(np.linalg.lstsq(x, np.cos(x[:, 0]))[0]), [(5, 3)])
case("np.linalg.lstsq-residuals", "svd", lambda x: weighted_sum(np.linalg.lstsq(x, np.cos(x[:, :2]))[1]), [(5, 3)])
# a constant matrix: the composite's factorization of it runs while tracing, on NumPy's array
_DESIGN = np.random.default_rng(3).normal(size=(5, 3))
case("np.linalg.lstsq-constant-a", "matmul", lambda x: weighted_sum(np.linalg.lstsq(_DESIGN, x[:, :2])[0]), [(5, 3)])
case("np.linalg.pinv-constant", "matmul", lambda x: weighted_sum(np.linalg.pinv(_DESIGN) @ np.sin(x)), [(5, 3)])
case("np.linalg.matrix_power-3", "matmul", lambda x: weighted_sum(np.linalg.matrix_power(x, 3)))
case("np.linalg.matrix_power--2", "solve", lambda x: weighted_sum(np.linalg.matrix_power(well_conditioned(x), -2)))
for _ord in [None, 1, 2, np.inf, -np.inf, 3, 1.5]:
    case(f"np.linalg.norm-vector-{_ord}", "sum", lambda x, o=_ord: weighted_sum(np.linalg.norm(x, o, axis=-1)))
for _ord in [None, "fro", "nuc", 1, -1, 2, -2, np.inf, -np.inf]:
    _covers = "svd" if _ord in (2, -2, "nuc") else "sum"
    case(f"np.linalg.norm-matrix-{_ord}", _covers, lambda x, o=_ord: weighted_sum(np.linalg.norm(x, o, axis=(-2, -1))))
case("np.linalg.norm-matrix-2d-nuc", "svd", lambda x: np.linalg.norm(x, "nuc"), [(5, 3)])
case(
    "np.linalg.norm-keepdims",
    "svd",
    lambda x: weighted_sum(np.linalg.norm(x, -2, axis=(0, 2), keepdims=True)),
    [(3, 4, 4)],
)
case(
    "scipy.linalg.solve_triangular",
    "triangular_solve",
    lambda x: weighted_sum(scipy.linalg.solve_triangular(lower_triangular(x), _rhs(x), lower=True)),
)
case(
    "scipy.linalg.solve_triangular-upper-trans",
    "triangular_solve",
    lambda x: weighted_sum(scipy.linalg.solve_triangular(np.swapaxes(lower_triangular(x), -1, -2), x[0, :], trans="T")),
    [(4, 4)],
)
case(
    "scipy.linalg.solve_triangular-unit",
    "triangular_solve",
    lambda x: weighted_sum(scipy.linalg.solve_triangular(x, _rhs(x), lower=True, unit_diagonal=True)),
)
case(
    "scipy.linalg.cho_solve",
    "triangular_solve",
    lambda x: weighted_sum(scipy.linalg.cho_solve(scipy.linalg.cho_factor(positive_definite(x)), _rhs(x))),
)
case(
    "scipy.linalg.cho_solve-lower",
    "cholesky",
    lambda x: weighted_sum(scipy.linalg.cho_solve(scipy.linalg.cho_factor(positive_definite(x), lower=True), x[0])),
    [(4, 4)],
)
case("scipy.linalg.expm", "expm", lambda x: weighted_sum(scipy.linalg.expm(0.5 * x)))
case("scipy.linalg.cholesky", "cholesky", lambda x: weighted_sum(scipy.linalg.cholesky(positive_definite(x))), [(4, 4)])
case("scipy.linalg.solve", "solve", lambda x: weighted_sum(scipy.linalg.solve(well_conditioned(x), x[0])), [(4, 4)])
case(
    "scipy.linalg.inv-det",
    "solve",
    lambda x: weighted_sum(scipy.linalg.inv(well_conditioned(x))) * scipy.linalg.det(x),
    [(4, 4)],
)
case("scipy.linalg.eigh", "eigh", lambda x: weighted_sum(scipy.linalg.eigh(symmetric(x))[0]), [(4, 4)])
case(
    "scipy.linalg.svd-qr",
    "qr",
    lambda x: weighted_sum(scipy.linalg.svdvals(x)) + weighted_sum(scipy.linalg.qr(x, mode="economic")[1]),
    [(5, 3)],
)

# structured matrices: element (i, j) of each is one element of its defining vectors, at a constant index
case("scipy.linalg.toeplitz", "getitem", lambda x: weighted_sum(scipy.linalg.toeplitz(x[0], x[1, :3]) ** 2), [(4, 4)])
case(
    "scipy.linalg.toeplitz-symmetric",
    "getitem",
    lambda x: weighted_sum(np.sin(scipy.linalg.toeplitz(x[:, 0]))),
    [(4, 4)],
)
case(
    "scipy.linalg.toeplitz-batch",
    "getitem",
    lambda x: weighted_sum(scipy.linalg.toeplitz(x[..., 0], x[..., 1]) ** 3),
    [(3, 4, 4)],
)
case(
    "scipy.linalg.toeplitz-solve",
    "solve",
    lambda x: weighted_sum(np.linalg.solve(scipy.linalg.toeplitz(np.exp(-np.abs(x[0]) * np.arange(4))), x[1])),
    [(4, 4)],
)
case(
    "scipy.linalg.block_diag",
    "solve",
    lambda x: weighted_sum(
        np.linalg.solve(
            scipy.linalg.block_diag(well_conditioned(x[:2, :2]), 3.0, well_conditioned(x[1:, 1:])),
            np.sin(x[0]).repeat(2)[:6],
        )
    ),
    [(4, 4)],
)
case("scipy.linalg.circulant", "getitem", lambda x: weighted_sum(scipy.linalg.circulant(x[1]) @ x), [(4, 4)])
case("scipy.linalg.hankel", "getitem", lambda x: weighted_sum(scipy.linalg.hankel(x[0], x[:, 2]) ** 2), [(4, 4)])
case("scipy.linalg.hankel-zeros", "getitem", lambda x: weighted_sum(scipy.linalg.hankel(x[2, :3]) * 2.0), [(4, 4)])


def argument(c: Case) -> np.ndarray:
    # crc32, not hash(): str hashes change from run to run (PYTHONHASHSEED), and so would the data
    return np.random.default_rng(zlib.crc32(c.id.encode())).standard_normal(c.shape)


def ops_traced(fn, *args) -> set:
    graph = cr.trace(fn, *args)
    return {graph[i].op for i in range(len(graph))}


def test_every_linear_algebra_primitive_has_cases():
    # eigvalsh and svdvals are never traced: the values-only pass records them (test_values_only.py);
    # expm_frechet is expm's derivative: expm's gradient, Jacobian and Hessian cases reach its rules
    untraced = {"eigvalsh", "svdvals", "expm_frechet"}
    primitives = {name for name, op in OPS.items() if op.kind == "linalg"} - untraced
    assert primitives == {"solve", "triangular_solve", "cholesky", "slogdet", "expm", "eigh", "svd", "qr"}
    assert primitives <= {c.covers for c in CASES}


@pytest.mark.parametrize("c", CASES, ids=lambda c: c.id)
def test_value_is_numpys_and_gradient_matches_central_differences(c: Case):
    x = argument(c)
    assert c.covers in ops_traced(c.fn, x), f"{c.id} does not exercise {c.covers}"
    np.testing.assert_allclose(cr.jit(c.fn)(x), c.fn(x), rtol=1e-11)
    gradient = cr.grad(c.fn)(x)
    error = relative_error(gradient, numerical_gradient(c.fn, (x,), 0))
    assert error < 1e-7, f"relative error {error:.2e}"


@pytest.mark.parametrize("c", CASES, ids=lambda c: c.id)
def test_float32_matrices_give_float32_gradients_close_to_float64(c: Case):
    x = argument(c)
    gradient = cr.grad(c.fn)(x.astype(np.float32))
    assert np.asarray(gradient).dtype == np.float32
    reference = numerical_gradient(c.fn, (x.astype(np.float32).astype(np.float64),), 0)
    scale = max(1.0, float(np.max(np.abs(reference))))
    np.testing.assert_allclose(gradient, reference, rtol=1e-3, atol=1e-3 * scale)


@pytest.mark.parametrize("c", CASES, ids=lambda c: c.id)
def test_forward_mode_agrees_with_reverse_mode(c: Case):
    x = argument(c)
    tangent = np.random.default_rng(3).standard_normal(c.shape)
    value, directional = cr.jvp(c.fn, (x,), (tangent,))
    np.testing.assert_allclose(value, c.fn(x), rtol=1e-11)
    np.testing.assert_allclose(directional, np.sum(cr.grad(c.fn)(x) * tangent), rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("c", CASES, ids=lambda c: c.id)
def test_the_llvm_backend_agrees_with_the_numpy_backend(c: Case):
    x = argument(c)
    value, gradient = cr.value_and_grad(c.fn, backend="numpy")(x)
    llvm_value, llvm_gradient = cr.value_and_grad(c.fn, backend="llvm")(x)
    np.testing.assert_allclose(llvm_value, value, rtol=1e-12)
    np.testing.assert_allclose(llvm_gradient, gradient, rtol=1e-10, atol=1e-12)


# ---- second derivatives: the rules are written with primitives, so they differentiate again ------

HESSIAN_CASES = {
    "solve": lambda x: weighted_sum(np.linalg.solve(well_conditioned(x), _rhs(x))),
    "cholesky": lambda x: weighted_sum(np.linalg.cholesky(positive_definite(x))),
    "slogdet": lambda x: np.linalg.slogdet(well_conditioned(x))[1],
    "triangular_solve": lambda x: weighted_sum(scipy.linalg.solve_triangular(lower_triangular(x), _rhs(x), lower=True)),
    "eigh": lambda x: weighted_sum(np.linalg.eigh(symmetric(x))[1] ** 2),
    "svd": lambda x: weighted_sum(np.linalg.svd(x, compute_uv=False)),
    "qr": lambda x: weighted_sum(np.linalg.qr(x)[1]),
    "expm": lambda x: weighted_sum(scipy.linalg.expm(0.5 * x)),
}


@pytest.mark.parametrize("name", sorted(HESSIAN_CASES))
def test_hessian_is_the_derivative_of_the_gradient(name):
    fn = HESSIAN_CASES[name]
    x = np.random.default_rng(11).standard_normal((3, 3))
    hessian = cr.hessian(fn)(x)
    assert hessian.shape == (3, 3, 3, 3)
    gradient = cr.grad(fn)  # checked against finite differences above; its own differences:
    for index in np.ndindex(3, 3):
        numeric = numerical_gradient(lambda y, i=index: gradient(y)[i], (x,), 0)
        assert relative_error(hessian[index], numeric) < 1e-7, index
    np.testing.assert_allclose(hessian, np.transpose(hessian, (2, 3, 0, 1)), rtol=1e-9, atol=1e-10)


# ---- Jacobians of array results: vectorized over the cotangents (each op's batching rule) --------

JACOBIAN_CASES = {
    "solve": lambda x: np.linalg.solve(well_conditioned(x), _rhs(x)),
    "triangular_solve": lambda x: scipy.linalg.solve_triangular(lower_triangular(x), x[:, 1], lower=True),
    "cholesky": lambda x: np.linalg.cholesky(positive_definite(x)),
    "slogdet": lambda x: np.linalg.slogdet(well_conditioned(x)[None] * np.array([1.0, -1.0])[:, None, None])[1],
    "eigh": lambda x: np.linalg.eigh(symmetric(x))[0],
    "svd": lambda x: np.linalg.svd(x[:, :3], compute_uv=False),
    "qr": lambda x: np.linalg.qr(x[:, :3], mode="r"),
    "expm": lambda x: scipy.linalg.expm(0.5 * x),
}


@pytest.mark.parametrize("mode", ["rev", "fwd"])
@pytest.mark.parametrize("name", sorted(JACOBIAN_CASES))
def test_vectorized_jacobian_matches_central_differences(name, mode):
    fn = JACOBIAN_CASES[name]
    x = np.random.default_rng(5).standard_normal((4, 4))
    jacobian = cr.jacobian(fn, mode=mode)(x)
    value = fn(x)
    assert jacobian.shape == value.shape + x.shape
    for index in np.ndindex(value.shape):
        numeric = numerical_gradient(lambda y, i=index: fn(y)[i], (x,), 0)
        assert relative_error(jacobian[index], numeric) < 1e-7, index


def test_functions_of_repeated_eigenvalues_have_exact_gradients():
    # Σλ² = ‖S‖² for S = X + Xᵀ, whose gradient is 4S; at X = I every eigenvalue is 2
    x = np.eye(3)
    np.testing.assert_allclose(cr.grad(lambda x: np.sum(np.linalg.eigvalsh(x + x.T) ** 2))(x), 8 * np.eye(3))
    # the nuclear norm at an orthogonal Q: every singular value is 1, its gradient U Vᵀ = Q
    q = np.linalg.qr(np.random.default_rng(2).standard_normal((3, 3)))[0]
    np.testing.assert_allclose(cr.grad(lambda x: np.linalg.norm(x, "nuc"))(q), q, atol=1e-12)


# ---- what is not supported says so --------------------------------------------------------------


@pytest.mark.parametrize(
    "fn,message",
    [
        (lambda x: np.linalg.svd(x), r"np\.linalg\.svd with full_matrices=True of a non-square"),
        (lambda x: np.linalg.svd(x, hermitian=True), r"np\.linalg\.svd with hermitian=True"),
        (lambda x: np.linalg.qr(x, mode="complete"), r"np\.linalg\.qr with mode='complete'"),
        (lambda x: np.linalg.pinv(x, hermitian=True), r"np\.linalg\.pinv with hermitian=True"),
        (lambda x: scipy.linalg.qr(x, pivoting=True), r"scipy\.linalg\.qr with mode='full', pivoting=True"),
        (lambda x: scipy.linalg.eigh(x[:3], x[:3]), r"scipy\.linalg\.eigh of a generalized problem"),
    ],
)
def test_unsupported_forms_raise_an_error_naming_the_function(fn, message):
    with pytest.raises(UnsupportedError, match=message):
        cr.trace(fn, np.ones((5, 3)))


def test_the_gradient_of_qr_of_a_wide_matrix_is_unsupported():
    with pytest.raises(UnsupportedError, match=r"derivative of qr of a wide matrix"):
        cr.grad(lambda x: np.sum(np.linalg.qr(x)[1]))(np.ones((2, 3)))


def test_shapes_that_do_not_fit_raise_shape_errors():
    from chainrule.errors import ShapeError

    with pytest.raises(ShapeError, match=r"np\.linalg\.solve needs square matrices"):
        cr.trace(lambda x: np.linalg.solve(x, x), np.ones((2, 3)))
    with pytest.raises(ShapeError, match=r"right-hand sides do not fit"):
        cr.trace(lambda x: np.linalg.solve(x, np.ones((3, 1))), np.ones((2, 2)))
    with pytest.raises(ValueError, match="Invalid norm order"):
        cr.trace(lambda x: np.linalg.norm(x, "fro", axis=0), np.ones((2, 2)))


def test_scipy_functions_keep_their_own_behaviour_on_arrays():
    a = np.array([[2.0, 0.0], [1.0, 3.0]])
    np.testing.assert_allclose(scipy.linalg.solve_triangular(a, [2.0, 4.0], lower=True), [1.0, 1.0])
    c, lower = scipy.linalg.cho_factor(a @ a.T)
    assert not lower and scipy.linalg.expm.__name__ == "expm"
    np.testing.assert_allclose(scipy.linalg.cho_solve((c, lower), a @ a.T @ [1.0, 2.0]), [1.0, 2.0])


def test_integer_matrices_are_solved_in_float64_as_numpy_does():
    a = np.array([[2, 1], [1, 3]])
    f = cr.jit(lambda x: np.linalg.solve(a, x) + np.linalg.det(a) + np.linalg.inv(a)[0])
    b = np.array([1.0, 2.0])
    np.testing.assert_allclose(f(b), np.linalg.solve(a, b) + np.linalg.det(a) + np.linalg.inv(a)[0], rtol=1e-14)


NORM_ORDS = [None, "fro", "nuc", 0, 1, -1, 2, -2, 3, 1.5, np.inf, -np.inf]
NORM_AXES = [None, 0, -1, (0, 1), (1, 0), (-1, -2), (0, 2)]


@pytest.mark.parametrize("shape", [(4,), (3, 4), (2, 3, 4)])
def test_norm_computes_what_numpy_does_for_every_order_and_axis_it_accepts(shape):
    x = np.random.default_rng(9).standard_normal(shape)
    for ord in NORM_ORDS:
        for axis in NORM_AXES:
            for keepdims in (False, True):
                try:
                    expected = np.linalg.norm(x, ord, axis, keepdims)
                except (ValueError, TypeError, np.exceptions.AxisError):
                    with pytest.raises((ValueError, TypeError, cr.ChainruleError)):
                        cr.trace(lambda x, o=ord, a=axis, k=keepdims: np.linalg.norm(x, o, a, k), x)
                    continue
                got = cr.jit(lambda x, o=ord, a=axis, k=keepdims: np.linalg.norm(x, o, a, k))(x)
                np.testing.assert_allclose(got, expected, rtol=1e-12, err_msg=f"ord={ord} axis={axis}")
                assert np.shape(got) == np.shape(expected)
