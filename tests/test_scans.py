"""Scans, products, sorting and selection: NumPy's values, gradients, forward mode and both backends.

Every case in ``CASES`` is a NumPy function of one float64 array; each is checked to

- compute what NumPy computes (value, shape and dtype) on the NumPy and the LLVM backend;
- have the gradient of ``weighted_sum(f(x))`` that fourth-order central differences give
  (relative error < 1e-7), on both backends;
- have a forward-mode tangent J·v that is the central difference of f along v, and that
  agrees with reverse mode: <w, J v> = <J^T w, v>.

Inputs are on a grid of distinct values unless a case is about zeros or ties, so sorting
and selecting are smooth at the point. Expected values come from NumPy and finite
differences, never from chainrule.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
from gradient_helpers import numerical_gradient, relative_error, weighted_sum, weights

import chainrule as cr
from chainrule.errors import ShapeError, UnsupportedError


def grid(shape, seed=0, offset=0.05):
    """Distinct values k/10 + offset (k a permutation): no ties, no zeros."""
    size = int(np.prod(shape))
    k = np.random.default_rng(seed).permutation(np.arange(size) - size // 2)
    return (k * 0.1 + offset).reshape(shape)


def near_one(shape, seed=0):
    """Distinct values in (0.5, 1.5) and (-1.5, -0.5): products of many stay moderate."""
    rng = np.random.default_rng(seed)
    return rng.choice([-1.0, 1.0], size=shape) * rng.uniform(0.5, 1.5, size=shape)


@dataclass(frozen=True)
class Case:
    id: str
    fn: Callable
    x: np.ndarray
    differentiable: bool = True


CASES: list[Case] = []


def case(id, fn, x, differentiable=True):
    CASES.append(Case(id, fn, np.asarray(x, dtype=np.float64), differentiable))


WITH_ZEROS = np.array([[2.0, 0.0, 1.5, -0.5], [0.0, 1.2, 0.0, 0.7], [1.1, -0.9, 0.8, 0.0], [0.6, 1.3, -1.4, 0.9]])

# ---- scans -----------------------------------------------------------------------------------
for _axis in [None, 0, 1, -1]:
    case(f"cumsum-axis{_axis}", lambda x, a=_axis: np.cumsum(x, axis=a), grid((3, 4)))
    case(f"cumprod-axis{_axis}", lambda x, a=_axis: np.cumprod(x, axis=a), near_one((3, 4)))
    case(f"cumprod-zeros-axis{_axis}", lambda x, a=_axis: np.cumprod(x, axis=a), WITH_ZEROS)
case("cumsum-0d", np.cumsum, 1.5)
case("cumsum-1d", np.cumsum, grid((5,)))
case("cumsum-3d-axis1", lambda x: np.cumsum(x, axis=1), grid((2, 3, 2)))
case("cumsum-empty", lambda x: np.cumsum(x, axis=0), np.zeros((0, 3)))
case("cumprod-empty", lambda x: np.cumprod(x, axis=1), np.zeros((2, 0)))
case("cumprod-1d-one-zero", np.cumprod, np.array([1.5, -2.0, 0.0, 0.5, 3.0]))
case("cumprod-1d-zero-first", np.cumprod, np.array([0.0, -2.0, 1.5, 0.5]))
case("cumprod-1d-zero-last", np.cumprod, np.array([1.5, -2.0, 1.2, 0.0]))
case("cumprod-1d-several-zeros", np.cumprod, np.array([1.5, 0.0, 2.0, 0.0, 0.5, 1.1]))
case("cumprod-1d-adjacent-zeros", np.cumprod, np.array([1.5, 0.0, 0.0, 0.5]))

# ---- products --------------------------------------------------------------------------------
for _axis in [None, 0, 1, -1, (0, 1)]:
    case(f"prod-axis{_axis}", lambda x, a=_axis: np.prod(x, axis=a), near_one((3, 4)))
    case(f"prod-zeros-axis{_axis}", lambda x, a=_axis: np.prod(x, axis=a), WITH_ZEROS)
case("prod-keepdims", lambda x: np.prod(x, axis=1, keepdims=True), near_one((3, 4)))
case("prod-3d-axes-0-2", lambda x: np.prod(x, axis=(0, 2)), near_one((2, 3, 2)))
case("prod-negative-axes", lambda x: np.prod(x, axis=(-1, -3)), near_one((2, 3, 2)))
case("prod-0d", np.prod, 1.5)
case("prod-empty", lambda x: np.prod(x, axis=0), np.zeros((0, 3)))
case("prod-one-zero", np.prod, np.array([1.5, -2.0, 0.0, 0.5]))
case("prod-two-zeros", np.prod, np.array([1.5, 0.0, 2.0, 0.0]))
case("prod-all-zeros", np.prod, np.zeros(3))
case("prod-method-free-spelling", lambda x: np.multiply(np.prod(x, axis=0), 2.0), near_one((3, 2)))

# ---- differences -----------------------------------------------------------------------------
case("diff", np.diff, grid((6,)))
case("diff-n2-axis0", lambda x: np.diff(x, n=2, axis=0), grid((4, 3)))
case("diff-n3-negative-axis", lambda x: np.diff(x, n=3, axis=-1), grid((2, 5)))
case("diff-n0", lambda x: np.diff(x, n=0), grid((2, 3)))
case("diff-prepend-scalar", lambda x: np.diff(x, prepend=0.5), grid((2, 4)))
case("diff-append-array", lambda x: np.diff(x, axis=0, append=np.ones((1, 3))), grid((2, 3)))
case("diff-prepend-and-append-traced", lambda x: np.diff(x[1:], prepend=x[:1], append=x[:1]), grid((5,)))

# ---- sorting and selection ------------------------------------------------------------------
for _axis in [None, 0, 1, -1]:
    case(f"sort-axis{_axis}", lambda x, a=_axis: np.sort(x, axis=a), grid((3, 4)))
    case(f"take_along_axis-argsort-axis{_axis}", lambda x, a=_axis: _along_sorted(x, a), grid((3, 4)))
case("sort-3d-axis1", lambda x: np.sort(x, axis=1), grid((2, 3, 2)))
case("sort-0d-flattened", lambda x: np.sort(x, axis=None), 1.5)
case("sort-empty", np.sort, np.zeros((2, 0)))
case("sort-then-weigh", lambda x: np.sort(x) * np.arange(1.0, 6.0), grid((5,)))
case("argsort-as-values", lambda x: np.argsort(x, axis=0).astype(float) * x, grid((3, 4)))
case("partition", lambda x: np.partition(x, 2)[..., 2], grid((3, 5)))
case("partition-axis0-kth-list", lambda x: np.partition(x, [0, 2], axis=0)[[0, 2]], grid((4, 3)))
case("max-by-argmax-along-axis", lambda x: _by_argmax(x, 1), grid((3, 4)))
case("x-at-argmin", lambda x: x.ravel()[np.argmin(x)], grid((3, 4)))
case("take-axis-none", lambda x: np.take(x, [0, 5, -1, 5]), grid((3, 4)))
case("take-axis1", lambda x: np.take(x, np.array([[2, 0], [1, 1]]), axis=1), grid((3, 4)))
case("take-axis0-wrap", lambda x: np.take(x, [-4, 3, 7], axis=0, mode="wrap"), grid((3, 4)))
case("take-clip", lambda x: np.take(x, [-4, 1, 9], axis=-1, mode="clip"), grid((3, 4)))
case("take-traced-indices-clip", lambda x: np.take(x, np.argsort(x)[:2] + 2, mode="clip"), grid((5,)))
case("take_along_axis-constant-indices", lambda x: np.take_along_axis(x, np.array([[0], [2], [1]]), 1), grid((3, 4)))
case("take_along_axis-broadcast", lambda x: np.take_along_axis(x, np.array([[3, 0]]), axis=1), grid((3, 4)))
case("searchsorted-picks", lambda x: _searchsorted_picks(x), grid((6,)))

# ---- order statistics ----------------------------------------------------------------------
for _axis in [None, 0, 1, -1, (0, 1)]:
    case(f"median-odd-axis{_axis}", lambda x, a=_axis: np.median(x, axis=a), grid((3, 5)))
    case(f"median-even-axis{_axis}", lambda x, a=_axis: np.median(x, axis=a), grid((4, 2)))
    case(f"quantile-scalar-axis{_axis}", lambda x, a=_axis: np.quantile(x, 0.3, axis=a), grid((3, 5)))
    case(
        f"percentile-array-axis{_axis}",
        lambda x, a=_axis: np.percentile(x, [0, 12.5, 50, 95, 100], axis=a),
        grid((4, 3)),
    )
case("median-keepdims", lambda x: np.median(x, axis=1, keepdims=True), grid((3, 4)))
case("median-3d-axes-0-2", lambda x: np.median(x, axis=(0, 2)), grid((2, 3, 3)))
case("median-0d", np.median, 1.5)
case("quantile-2d-q-keepdims", lambda x: np.quantile(x, [[0.1, 0.9], [0.5, 0.75]], axis=0, keepdims=True), grid((5, 2)))
case("percentile-at-elements", lambda x: np.percentile(x, [25, 75]), grid((5,)))
case("median-with-nan", lambda x: np.median(x, axis=1), [[0.5, np.nan, 1.0], [2.0, 1.0, -1.0]], differentiable=False)
case("quantile-with-nan", lambda x: np.quantile(x, [0.2, 0.6], axis=0), [[np.nan, 1.0], [2.0, 0.5]], False)
case("median-empty", lambda x: np.median(x, axis=0), np.zeros((0, 3)), differentiable=False)
case("x-at-argpartition", lambda x: x[np.argpartition(x, 3)[3]], grid((6,)))

# ---- NaN-ignoring reductions, ranges, averages and moments ----------------------------------
WITH_NAN = np.array([[0.3, np.nan, -1.2, 0.8], [np.nan, np.nan, np.nan, np.nan], [1.4, 0.2, np.nan, -0.6]])
for _axis in [None, 0, 1]:
    case(f"nansum-axis{_axis}", lambda x, a=_axis: np.nansum(x, axis=a), WITH_NAN)
    case(f"ptp-axis{_axis}", lambda x, a=_axis: np.ptp(x, axis=a), grid((3, 4)))
    case(f"average-axis{_axis}", lambda x, a=_axis: np.average(x, axis=a), grid((3, 4)))
for _axis in [None, 0, 1]:
    # row 1 is NaN only: along axis 1 the result there is NaN, as NumPy's (values only: a NaN loss)
    _smooth = _axis != 1
    case(f"nanmean-axis{_axis}", lambda x, a=_axis: np.nanmean(x, axis=a), WITH_NAN, _smooth)
    case(f"nanmax-axis{_axis}", lambda x, a=_axis: np.nanmax(x, axis=a), WITH_NAN, _smooth)
    case(f"nanmin-axis{_axis}", lambda x, a=_axis: np.nanmin(x, axis=a), WITH_NAN, _smooth)
case("nanmean-keepdims-axis0", lambda x: np.nanmean(x[[0, 2]], axis=0, keepdims=True), WITH_NAN)
case("nansum-no-nan", lambda x: np.nansum(x, axis=-1, keepdims=True), grid((2, 3)))
case("ptp-keepdims", lambda x: np.ptp(x, axis=0, keepdims=True), grid((3, 4)))
case("average-weights-same-shape", lambda x: np.average(x, weights=np.abs(x) + 1), grid((3, 4)))
case("average-weights-1d-axis", lambda x: np.average(x, axis=1, weights=np.arange(1.0, 5.0)), grid((3, 4)))
case("average-weights-negative-axis", lambda x: np.average(x, axis=-2, weights=[1.0, 2.0, 0.5]), grid((3, 4)))
case("average-returned-sum", lambda x: _average_returned(x), grid((3, 4)))
case("cov", np.cov, grid((3, 5)))
case("cov-rowvar-false-bias", lambda x: np.cov(x, rowvar=False, bias=True), grid((5, 3)))
case("cov-ddof2", lambda x: np.cov(x, ddof=2), grid((2, 5)))
case("cov-1d-with-y", lambda x: np.cov(x[0], x[1]), grid((2, 5)))
case("cov-1d", np.cov, grid((5,)))
case("corrcoef", np.corrcoef, grid((3, 5)))
case("corrcoef-rowvar-false", lambda x: np.corrcoef(x, rowvar=False), grid((6, 3)))
case("corrcoef-with-y", lambda x: np.corrcoef(x[0], x[1]), grid((2, 6)))


def _along_sorted(x, axis):
    return np.take_along_axis(x, np.argsort(x, axis=axis), axis=axis)


def _by_argmax(x, axis):
    return np.take_along_axis(x, np.expand_dims(np.argmax(x, axis=axis), axis), axis=axis)


def _searchsorted_picks(x):
    # sort, then look up where fixed thresholds fall; pick the sorted values there
    ordered = np.sort(x)
    positions = np.searchsorted(ordered, np.array([-0.2, 0.0, 0.2]), side="right")
    return ordered[positions]


def _average_returned(x):
    average, total = np.average(x, axis=0, weights=np.array([[1.0], [2.0], [3.0]]) * np.ones((3, 4)), returned=True)
    return average * total


def numpy_value(c: Case):
    with np.errstate(all="ignore"):
        return c.fn(c.x)


# ---- values -------------------------------------------------------------------------------------


@pytest.mark.parametrize("c", CASES, ids=lambda c: c.id)
@pytest.mark.filterwarnings("ignore:.*(empty slice|All-NaN slice|invalid value):RuntimeWarning")
def test_value_is_numpys(c: Case, backend):
    expected = numpy_value(c)
    got = cr.jit(c.fn, backend=backend)(c.x)
    assert np.shape(got) == np.shape(expected)
    assert np.asarray(got).dtype == np.asarray(expected).dtype
    np.testing.assert_allclose(got, expected, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("c", CASES, ids=lambda c: c.id)
@pytest.mark.filterwarnings("ignore:.*(empty slice|All-NaN slice|invalid value):RuntimeWarning")
def test_float32_value_has_numpys_dtype(c: Case, backend):
    x = c.x.astype(np.float32)
    with np.errstate(all="ignore"):
        expected = c.fn(x)
    got = cr.jit(c.fn, backend=backend)(x)
    assert np.shape(got) == np.shape(expected)
    assert np.asarray(got).dtype == np.asarray(expected).dtype
    np.testing.assert_allclose(got, expected, rtol=2e-6, atol=1e-6)


# ---- gradients ----------------------------------------------------------------------------------


def _loss(c: Case):
    return lambda x: weighted_sum(c.fn(x))


DIFFERENTIABLE = [c for c in CASES if c.differentiable]


@pytest.mark.parametrize("c", DIFFERENTIABLE, ids=lambda c: c.id)
def test_gradient_matches_central_differences(c: Case, backend):
    gradient = cr.grad(_loss(c), backend=backend)(c.x)
    assert np.shape(gradient) == c.x.shape and np.asarray(gradient).dtype == np.float64
    with np.errstate(all="ignore"):
        numeric = numerical_gradient(_loss(c), (c.x,), 0)
    error = relative_error(gradient, numeric)
    assert error < 1e-7, f"relative error {error:.2e}\nchainrule: {gradient}\nfinite differences: {numeric}"


@pytest.mark.parametrize("c", DIFFERENTIABLE, ids=lambda c: c.id)
def test_forward_mode_is_the_directional_derivative_and_agrees_with_reverse(c: Case):
    direction = np.random.default_rng(3).uniform(-1.0, 1.0, size=c.x.shape)
    value, tangent = cr.jvp(c.fn, (c.x,), (direction,))
    np.testing.assert_allclose(value, numpy_value(c), rtol=1e-13, atol=1e-15)
    along = numerical_gradient(lambda t: weighted_sum(c.fn(c.x + t * direction)), (np.zeros(()),), 0)
    w = weights(np.shape(value))
    assert abs(np.sum(w * np.nan_to_num(tangent)) - along) <= 1e-7 * (1 + abs(along))
    reverse = cr.grad(_loss(c))(c.x)
    assert np.sum(w * np.nan_to_num(tangent)) == pytest.approx(np.sum(reverse * direction), rel=1e-10, abs=1e-12)


# ---- zeros: products of the others, to second order ----------------------------------------------


def products_of_the_others(x, skip):
    return np.prod(np.delete(x, skip))


@pytest.mark.parametrize(
    "x", [[1.5, -2.0, 0.5, 3.0], [1.5, 0.0, 0.5, 3.0], [0.0, 1.5, 0.0, 3.0], [0.0, 0.0, 0.0, 2.0]], ids=str
)
def test_prod_gradient_and_hessian_are_the_products_of_the_others_also_at_zeros(x):
    x = np.array(x)
    n = len(x)
    gradient = cr.grad(np.prod)(x)
    np.testing.assert_array_equal(gradient, [products_of_the_others(x, [i]) for i in range(n)])
    hessian = cr.hessian(np.prod)(x)
    expected = [[products_of_the_others(x, [i, j]) if i != j else 0.0 for j in range(n)] for i in range(n)]
    np.testing.assert_allclose(hessian, expected, rtol=1e-15, atol=0)


def test_cumprod_gradient_with_one_zero_reaches_the_zero_and_what_comes_before_it():
    # y = [a, ab, ab0, ab0d]: d sum(y) / d(the zero) = ab + abd; before it, 1 + b and a; after it, 0
    a, b, d = 1.5, -2.0, 3.0
    gradient = cr.grad(lambda x: np.sum(np.cumprod(x)))(np.array([a, b, 0.0, d]))
    np.testing.assert_allclose(gradient, [1 + b, a, a * b + a * b * d, 0.0], rtol=1e-15)


# ---- integer results: NumPy's values, no gradient, usable as indices --------------------------

WITH_TIES = np.array([[2.0, 1.0, 2.0, -1.0], [0.5, 0.5, 0.5, 0.5], [3.0, np.nan, -2.0, 3.0]])


@pytest.mark.parametrize(
    "fn",
    [
        lambda x: np.argsort(x, kind="stable"),
        lambda x: np.argsort(x, axis=0, kind="stable"),
        lambda x: np.argsort(x, axis=None, kind="stable"),
        lambda x: np.argmax(x),
        lambda x: np.argmax(x, axis=0),
        lambda x: np.argmin(x, axis=-1),
        lambda x: np.argmin(x, axis=1, keepdims=True),
        lambda x: np.argmax(x, keepdims=True),
        lambda x: np.searchsorted(np.array([-1.0, 0.5, 2.0]), x),
        lambda x: np.searchsorted(np.array([-1.0, 0.5, 2.0]), x, side="right"),
        lambda x: np.searchsorted(np.sort(x[0]), x[1:]),
        lambda x: np.searchsorted(x[0], 0.7, sorter=np.argsort(x[0])),
    ],
    ids=lambda fn: "",
)
def test_integer_results_are_numpys_with_ties_and_nan(fn, backend):
    expected = fn(WITH_TIES)
    got = cr.jit(fn, backend=backend)(WITH_TIES)
    assert np.asarray(got).dtype == np.intp and np.shape(got) == np.shape(expected)
    np.testing.assert_array_equal(got, expected)


def test_an_integer_result_is_a_constant_to_the_gradient(backend):
    x = grid((3, 4))
    # positions times values: d/dx is the positions themselves, nothing flows through argsort/argmax
    gradient = cr.grad(lambda x: np.sum(np.argsort(x, axis=1) * x + np.argmax(x, axis=0) * x), backend=backend)(x)
    np.testing.assert_array_equal(gradient, np.argsort(x, axis=1) + np.argmax(x, axis=0))


def test_the_sort_gradient_goes_back_through_the_permutation():
    x = np.array([0.3, -1.2, 2.5, 0.9])
    w = np.array([1.0, 10.0, 100.0, 1000.0])
    # sorted: [-1.2, 0.3, 0.9, 2.5] came from positions [1, 0, 3, 2]
    gradient = cr.grad(lambda x: np.sum(w * np.sort(x)))(x)
    np.testing.assert_array_equal(gradient, [10.0, 1.0, 1000.0, 100.0])


def test_max_and_min_ties_share_the_gradient_evenly_as_before():
    x = np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]])
    np.testing.assert_allclose(cr.grad(lambda x: np.sum(np.max(x, axis=1)))(x), [[0, 0.5, 0.5], [1 / 3] * 3])
    np.testing.assert_allclose(cr.grad(lambda x: np.sum(np.nanmin(x, axis=1)))(x), [[1, 0, 0], [1 / 3] * 3])
    np.testing.assert_allclose(cr.grad(lambda x: np.ptp(x))(x), [[-1, 0.5, 0.5], [0, 0, 0]])


# ---- dtypes -------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.bool_, np.int32, np.int64, np.float32])
@pytest.mark.parametrize(
    "fn",
    [
        np.cumsum,
        np.cumprod,
        np.prod,
        lambda x: np.prod(x, axis=0, dtype=np.float64),
        lambda x: np.cumsum(x, dtype=np.int8),
    ],
    ids=["cumsum", "cumprod", "prod", "prod-dtype", "cumsum-dtype"],
)
def test_accumulations_take_numpys_dtype(fn, dtype, backend):
    x = np.array([[1, 0, 2], [3, 1, 1]]).astype(dtype)
    expected = fn(x)
    got = cr.jit(fn, backend=backend)(x)
    assert np.asarray(got).dtype == expected.dtype
    np.testing.assert_array_equal(got, expected)


def test_diff_of_booleans_is_not_equal_as_numpys():
    x = np.array([True, True, False, True])
    np.testing.assert_array_equal(cr.jit(np.diff)(x), np.diff(x))


# ---- batching: the vectorized Jacobian is one pass per row ---------------------------------------


@pytest.mark.parametrize(
    "fn",
    [
        lambda x: np.cumsum(x, axis=1),
        lambda x: np.cumprod(x, axis=0),
        lambda x: np.prod(x, axis=1),
        lambda x: np.sort(x, axis=0),
        lambda x: np.median(x, axis=1),
        lambda x: np.argsort(x, axis=0) * x,
        lambda x: np.argmax(x) + x * np.argmin(x, axis=1, keepdims=True),
        lambda x: x.ravel()[np.searchsorted(np.array([0.0, 1.0, 2.5]), x.ravel())],
    ],
    ids=["cumsum", "cumprod", "prod", "sort", "median", "argsort", "argmax-argmin", "searchsorted"],
)
@pytest.mark.parametrize("mode", ["fwd", "rev"])
def test_vectorized_jacobian_is_the_jacobian_row_by_row(fn, mode):
    x = np.array([[3.0, 0.0, 2.0], [1.0, 4.0, 0.5]])
    vectorized = cr.jacobian(fn, mode=mode)
    np.testing.assert_allclose(vectorized(x), cr.jacobian(fn, mode=mode, vectorize=False)(x), rtol=1e-15)


# ---- what is not supported, and mistakes ----------------------------------------------------------


def test_unique_raises_naming_it_since_its_shape_depends_on_the_data():
    for call in [np.unique, lambda x: np.unique(x, return_counts=True)]:
        with pytest.raises(UnsupportedError, match=r"np\.unique"):
            cr.jit(call)(np.array([1.0, 2.0, 1.0]))


@pytest.mark.parametrize(
    "fn,error,message",
    [
        (lambda x: np.quantile(x, 0.5, method="nearest"), UnsupportedError, r"np\.quantile with method='nearest'"),
        (lambda x: np.percentile(x, 50, weights=np.ones(3)), UnsupportedError, r"np\.percentile with weights"),
        (lambda x: np.quantile(x, x[0]), UnsupportedError, r"np\.quantile with a traced q"),
        (lambda x: np.quantile(x, 1.5), ShapeError, r"range \[0, 1\]"),
        (lambda x: np.percentile(x, [50, 101]), ShapeError, r"np\.percentile: quantiles must be in the range"),
        (lambda x: np.percentile(x, x), UnsupportedError, r"np\.percentile with a traced q"),
        (lambda x: np.take(x, np.argsort(x), mode="wrap"), UnsupportedError, r"np\.take\(mode='wrap'\)"),
        (lambda x: np.take(x, [3]), ShapeError, r"np\.take: an index is out of bounds"),
        (lambda x: np.take(x, [0.5]), ShapeError, r"np\.take: indices must be integers"),
        (lambda x: np.diff(x[0]), ShapeError, r"np\.diff requires an input of at least one dimension"),
        (lambda x: np.argmax(x[:0]), ShapeError, r"empty sequence"),
        (lambda x: np.partition(x, 3), ShapeError, r"kth\(=3\) out of bounds"),
        (lambda x: np.sort(x, axis=1), ShapeError, r"axis 1 is out of bounds"),
        (lambda x: np.cov(x, aweights=np.ones(3)), UnsupportedError, r"np\.cov with fweights= or aweights="),
        (lambda x: np.cumsum(x, out=np.zeros(3)), Exception, r"out="),
        (lambda x: np.searchsorted(x.reshape(1, 3), 0.5), ShapeError, r"1-D sorted array"),
    ],
    ids=lambda v: "",
)
def test_unsupported_forms_and_mistakes_raise_chainrule_errors_naming_the_function(fn, error, message):
    with pytest.raises(error, match=message):
        cr.jit(fn)(np.array([0.3, 1.0, 2.0]))


def test_check_nans_names_the_scan_that_overflowed():
    from chainrule.errors import NonFiniteError

    with pytest.raises(NonFiniteError, match="cumprod got"):
        cr.jit(lambda x: np.cumprod(x) * 2, check_nans=True)(np.array([1e200, 1e200]))


@pytest.mark.parametrize(
    "fn",
    [
        lambda x: np.average(x, returned=True),
        lambda x: np.average(x, axis=0, returned=True),
        lambda x: np.average(x, axis=1, weights=[1.0, 2.0, 0.5], returned=True),
        lambda x: np.average(x, weights=x * x + 1, returned=True),
    ],
    ids=["all", "axis0", "weights-1d", "weights-traced"],
)
def test_average_returned_is_the_average_and_the_sum_of_weights(fn, backend):
    x = grid((2, 3))
    got, expected = cr.jit(fn, backend=backend)(x), fn(x)
    for value, reference in zip(got, expected):
        # (a 0-d sum of weights known while tracing comes back as a 0-d array, as any constant output)
        assert np.shape(value) == np.shape(reference) and np.asarray(value).dtype == np.asarray(reference).dtype
        np.testing.assert_allclose(value, reference, rtol=1e-14)


def test_prod_runs_natively_on_llvm_fused_with_its_operand_and_scans_in_loops_of_their_own():
    x = near_one((20, 30))

    def lowered(fn):
        compiled = cr.jit(fn, backend="llvm")
        np.testing.assert_allclose(compiled(x), fn(x), rtol=1e-13)
        entry, _ = compiled._specialize((x,))
        return entry.kernel.lowered

    product = lowered(lambda x: np.prod(2.0 * x, axis=1))
    assert product.loops == 1 and not product.fallbacks
    assert not lowered(lambda x: np.cumsum(x, axis=0)).fallbacks  # native_ops.py
