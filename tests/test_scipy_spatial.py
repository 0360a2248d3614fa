"""scipy.spatial.distance's cdist, pdist and squareform on traced points (``frontends/scipy_spatial.py``):
values against SciPy itself for every metric on both backends, gradients of both operands against
finite differences on both backends, and the forms not traced named in the error."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.spatial.distance as distance
from gradient_helpers import numerical_gradient, relative_error, weighted_sum

import chainrule as cr

RNG = np.random.default_rng(11)
A, B = RNG.standard_normal((4, 3)), RNG.standard_normal((5, 3))
METRICS = [
    ("euclidean", {}),
    ("sqeuclidean", {}),
    ("cityblock", {}),
    ("chebyshev", {}),
    ("minkowski", {"p": 3.0}),
    ("minkowski", {}),
    ("cosine", {}),
    ("correlation", {}),
    ("sqe", {}),  # SciPy's aliases are SciPy's metrics
    ("cblock", {}),
]
IDS = [f"{name}{kw.get('p', '')}" for name, kw in METRICS]


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
@pytest.mark.parametrize("metric,keywords", METRICS, ids=IDS)
def test_values_are_scipys(metric, keywords, backend):
    cdist = cr.jit(lambda a, b: distance.cdist(a, b, metric, **keywords), backend=backend)(A, B)
    pdist = cr.jit(lambda a: distance.pdist(a, metric=metric, **keywords), backend=backend)(A)
    np.testing.assert_allclose(cdist, distance.cdist(A, B, metric, **keywords), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(pdist, distance.pdist(A, metric=metric, **keywords), rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
@pytest.mark.parametrize("metric,keywords", METRICS, ids=IDS)
def test_gradients_of_both_operands_match_finite_differences(metric, keywords, backend):
    def score(a, b):
        return weighted_sum(np.tanh(distance.cdist(a, b, metric, **keywords))) + weighted_sum(
            distance.pdist(b, metric, **keywords)
        )

    gradients = cr.grad(score, argnums=(0, 1), backend=backend)(A, B)
    for index, analytic in enumerate(gradients):
        assert relative_error(analytic, numerical_gradient(score, (A, B), index, step=1e-6)) < 1e-7


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
def test_squareform_goes_both_ways_and_its_gradient_is_the_gather_transposed(backend):
    def score(x):
        matrix = distance.squareform(distance.pdist(x, "sqeuclidean"))
        return weighted_sum(np.exp(-matrix)) + weighted_sum(distance.squareform(np.sin(matrix), checks=False))

    np.testing.assert_allclose(cr.jit(score, backend=backend)(A), score(A), rtol=1e-13)
    gradient = cr.grad(score, backend=backend)(A)
    assert relative_error(gradient, numerical_gradient(score, (A,), 0, step=1e-6)) < 1e-7


def test_squareform_of_a_vector_whose_size_is_no_pair_count_is_scipys_error():
    with pytest.raises(cr.ShapeError, match="binomial coefficient"):
        cr.jit(distance.squareform)(np.ones(4))


@pytest.mark.parametrize(
    "function,message",
    [
        (lambda a: distance.cdist(a, a, "hamming"), "metric='hamming'"),
        (lambda a: distance.pdist(a, lambda u, v: np.sum(u * v)), "callable metric"),
        (lambda a: distance.cdist(a, a, "euclidean", w=np.ones(3)), "w="),
    ],
)
def test_forms_not_traced_are_named(function, message):
    with pytest.raises(cr.UnsupportedError, match=message):
        cr.jit(function)(A)
