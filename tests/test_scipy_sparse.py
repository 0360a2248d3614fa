"""Constant SciPy sparse matrices times traced arrays (``frontends/scipy_sparse.py``): values against
SciPy's own products for every spelling and format, gradients against finite differences on both
backends, the work kept O(nnz), and the elementwise ``*`` of sparse arrays refused by name."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse
from gradient_helpers import numerical_gradient, relative_error, weighted_sum

import chainrule as cr

RNG = np.random.default_rng(5)
DENSE = np.where(RNG.uniform(size=(6, 5)) < 0.4, RNG.standard_normal((6, 5)), 0.0)
# duplicate (row, column) entries: a COO matrix sums them, and so must the product
DUPLICATES = scipy.sparse.coo_matrix(([1.5, -0.5, 2.0, 0.25], ([0, 0, 3, 5], [1, 1, 4, 0])), shape=(6, 5))
MATRICES = {
    "csr_matrix": scipy.sparse.csr_matrix(DENSE),
    "csr_array": scipy.sparse.csr_array(DENSE),
    "csc_matrix": scipy.sparse.csc_matrix(DENSE),
    "coo duplicates": DUPLICATES,
    "dia_array": scipy.sparse.dia_array(scipy.sparse.diags_array([1.0, -2.0, 1.0], offsets=[-1, 0, 1], shape=(6, 5))),
}
PRODUCTS = {  # (function of the matrix and a traced array, the traced array's shape)
    "A @ x": (lambda A, x: A @ x, (5,)),
    "A @ X": (lambda A, x: A @ x, (5, 3)),
    "A @ column": (lambda A, x: A @ x, (5, 1)),
    "A.dot(x)": (lambda A, x: A.dot(x), (5,)),
    "y @ A": (lambda A, y: y @ A, (6,)),
    "Y @ A": (lambda A, y: y @ A, (2, 6)),
}
CASES = [(m, p) for m in MATRICES for p in PRODUCTS]


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
@pytest.mark.parametrize("matrix,product", CASES)
def test_values_are_scipys(matrix, product, backend):
    A = MATRICES[matrix]
    function, shape = PRODUCTS[product]
    x = RNG.standard_normal(shape)
    expected = np.asarray(function(A, x))
    traced = cr.jit(lambda v: function(A, v), backend=backend)(x)
    assert traced.shape == expected.shape
    np.testing.assert_allclose(traced, expected, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
@pytest.mark.parametrize("product", sorted(PRODUCTS))
def test_gradients_match_finite_differences(product, backend):
    function, shape = PRODUCTS[product]
    x = RNG.standard_normal(shape)

    def score(v):
        return weighted_sum(np.sin(function(DUPLICATES, v)))

    gradient = cr.grad(score, backend=backend)(x)
    assert relative_error(gradient, numerical_gradient(score, (x,), 0)) < 1e-7


def test_the_star_of_a_sparse_matrix_class_is_the_matrix_product():
    A, x = MATRICES["csr_matrix"], RNG.standard_normal(5)
    y = RNG.standard_normal(6)
    np.testing.assert_allclose(cr.jit(lambda v: A * v)(x), A * x, rtol=1e-13)
    np.testing.assert_allclose(cr.jit(lambda v: v * A)(y), y * A, rtol=1e-13)


def test_the_star_of_a_sparse_array_is_elementwise_and_is_refused_not_miscomputed():
    A = MATRICES["csr_array"]
    with pytest.raises(cr.TraceError):
        cr.jit(lambda v: A * v)(RNG.standard_normal((6, 5)))


def test_the_product_never_builds_the_dense_matrix():
    n = 2000  # a path-graph Laplacian: 3n entries, n * n = 4e6 dense
    laplacian = scipy.sparse.diags_array([-1.0, 2.0, -1.0], offsets=[-1, 0, 1], shape=(n, n), format="csr")
    x = RNG.standard_normal(n)

    def smoothness(v):
        return v @ (laplacian @ v)

    graph = cr.grad(smoothness).graph(x)
    assert max(graph[i].type.size for i in range(len(graph))) <= laplacian.nnz
    np.testing.assert_allclose(cr.grad(smoothness)(x), 2 * (laplacian @ x), rtol=1e-12)


def test_a_product_of_mismatched_shapes_is_a_shape_error():
    with pytest.raises(cr.ShapeError, match="sparse matrix of shape"):
        cr.jit(lambda v: MATRICES["csr_matrix"] @ v)(np.ones(4))


def test_sparse_products_of_numpy_arrays_are_scipys_own():
    A, x = MATRICES["csr_matrix"], RNG.standard_normal(5)
    result = A @ x
    assert type(result) is np.ndarray
    np.testing.assert_array_equal(result, A.toarray() @ x)
