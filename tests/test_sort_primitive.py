"""``np.sort`` is the ``sort`` primitive: NumPy's own sort for the values, the stable permutation for
the derivatives, and one sort where a graph needs both (the ``shared_sort`` pass).

Values are NumPy's (``np.sort`` by hand) on both backends, NaN last, integers too; gradients match
central differences and, at ties, the stable order (``np.argsort(kind="stable")``); forward mode,
vmap and second derivatives go through the same permutation. Expected values come from NumPy and
finite differences.
"""

from __future__ import annotations

import numpy as np
import pytest
from gradient_helpers import numerical_gradient, relative_error

import chainrule as cr
from chainrule.frontends.numpy_statistics import SELECT_FROM
from chainrule.ir.npfuncs import STABLE_AT_ONCE, order_statistics, rank_positions, stable_argsort

RNG = np.random.default_rng(16)
BACKENDS = ["numpy", "llvm"]


def ops_of(compiled, *args) -> list[str]:
    return [node.op for node in compiled.graph(*args).nodes]


AXES = [
    ("1-d", (40,), -1),
    ("rows", (5, 7), -1),
    ("columns", (5, 7), 0),
    ("flattened", (4, 6), None),
    ("3-d middle", (3, 4, 5), 1),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name, shape, axis", AXES, ids=[a[0] for a in AXES])
def test_values_and_gradient_are_numpys_and_central_differences(name, shape, axis, backend):
    x = RNG.standard_normal(shape)
    w = RNG.uniform(0.5, 1.5, np.sort(x, axis=axis).shape)

    def loss(x):
        return np.sum(w * np.sort(x, axis=axis) ** 2)

    np.testing.assert_array_equal(cr.jit(lambda x: np.sort(x, axis=axis), backend=backend)(x), np.sort(x, axis=axis))
    gradient = cr.grad(loss, backend=backend)(x)
    assert relative_error(gradient, numerical_gradient(loss, (x,), 0)) < 1e-7
    value, same_gradient = cr.value_and_grad(loss, backend=backend)(x)
    assert np.isclose(value, loss(x), rtol=1e-13)
    np.testing.assert_allclose(same_gradient, gradient, rtol=1e-14)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_forward_sorts_once_and_a_gradient_reads_the_permutation_alone(backend):
    x = RNG.standard_normal(30)
    w = RNG.uniform(0.5, 1.5, 30)

    def loss(x):
        return np.sum(w * np.sort(x))

    assert "sort" in ops_of(cr.jit(loss, backend=backend), x) and "argsort" not in ops_of(cr.jit(loss), x)
    grad_ops = ops_of(cr.grad(loss, backend=backend), x)
    assert grad_ops.count("argsort") == 1 and "sort" not in grad_ops
    # by hand: gradient[argsort(x)] = w
    expected = np.empty_like(x)
    expected[np.argsort(x, kind="stable")] = w
    np.testing.assert_array_equal(cr.grad(loss, backend=backend)(x), expected)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_value_and_its_gradient_share_one_sort(backend):
    x = RNG.standard_normal((4, 9))
    w = RNG.uniform(0.5, 1.5, (4, 9))

    def loss(x):
        return np.sum(w * np.sort(x, axis=0) ** 3)

    compiled = cr.value_and_grad(loss, backend=backend)
    ops = ops_of(compiled, x)
    assert ops.count("argsort") == 1 and "sort" not in ops
    value, gradient = compiled(x)
    assert np.isclose(value, loss(x), rtol=1e-13)
    assert relative_error(gradient, numerical_gradient(loss, (x,), 0)) < 1e-7


@pytest.mark.parametrize("backend", BACKENDS)
def test_ties_send_the_gradient_in_the_stable_order(backend):
    x = np.array([1.0, 0.5, 1.0, 0.5, 1.0, -2.0])
    w = np.arange(1.0, 7.0)
    expected = np.empty_like(x)
    expected[np.argsort(x, kind="stable")] = w
    np.testing.assert_array_equal(cr.grad(lambda x: np.sum(w * np.sort(x)), backend=backend)(x), expected)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int64, np.int32])
def test_nan_goes_last_and_integers_sort_as_in_numpy(dtype, backend):
    x = RNG.standard_normal((3, 8)) * 10
    if np.dtype(dtype).kind == "f":
        x[0, 2] = x[2, 5] = x[2, 0] = np.nan
        x[1, 3] = np.inf
    x = x.astype(dtype)
    for axis in (0, 1, None):
        got = cr.jit(lambda x, axis=axis: np.sort(x, axis=axis), backend=backend)(x)
        assert got.dtype == x.dtype
        np.testing.assert_array_equal(got, np.sort(x, axis=axis))


@pytest.mark.parametrize("backend", BACKENDS)
def test_forward_mode_gathers_the_tangent_through_the_permutation(backend):
    x, v = RNG.standard_normal((3, 6)), RNG.standard_normal((3, 6))
    value, tangent = cr.jvp(lambda x: np.sort(x, axis=1), (x,), (v,), backend=backend)
    np.testing.assert_array_equal(value, np.sort(x, axis=1))
    np.testing.assert_array_equal(tangent, np.take_along_axis(v, np.argsort(x, axis=1, kind="stable"), axis=1))


@pytest.mark.parametrize("backend", BACKENDS)
def test_vmap_sorts_each_example(backend):
    xs = RNG.standard_normal((4, 3, 5))
    np.testing.assert_array_equal(cr.vmap(lambda x: np.sort(x, axis=0), backend=backend)(xs), np.sort(xs, axis=1))
    w = RNG.uniform(0.5, 1.5, 5)
    per_example = cr.vmap(cr.grad(lambda x: np.sum(w * np.sort(x) ** 2)), backend=backend)(xs[:, 0])
    for x, gradient in zip(xs[:, 0], per_example):
        expected = np.empty_like(x)
        expected[np.argsort(x, kind="stable")] = 2 * w * np.sort(x)
        np.testing.assert_allclose(gradient, expected, rtol=1e-14)


@pytest.mark.parametrize("backend", BACKENDS)
def test_second_derivatives_go_through_the_permutation_twice(backend):
    x = RNG.standard_normal(7)
    w = RNG.uniform(0.5, 1.5, 7)

    def loss(x):
        return np.sum(w * np.sort(x) ** 3)

    hessian = cr.hessian(loss, backend=backend)(x)
    # d²/dx² sum(w * sort(x)**3): diagonal, 6 w[rank] x
    rank = np.empty(7, dtype=np.intp)
    rank[np.argsort(x, kind="stable")] = np.arange(7)
    np.testing.assert_allclose(hessian, np.diag(6 * w[rank] * x), rtol=1e-12, atol=1e-12)
    gradient = cr.grad(loss)
    numeric = np.stack([numerical_gradient(lambda x, i=i: gradient(x)[i], (x,), 0) for i in range(7)])
    assert relative_error(hessian, numeric) < 1e-7


@pytest.mark.parametrize("backend", BACKENDS)
def test_median_and_quantiles_of_large_arrays_agree_across_backends(backend):
    x = RNG.standard_normal((3, 2001))

    def loss(x):
        return np.sum(np.median(x, axis=1)) + np.sum(np.quantile(x, [0.1, 0.75], axis=1))

    value, gradient = cr.value_and_grad(loss, backend=backend)(x)
    assert np.isclose(value, loss(x), rtol=1e-13)
    reference = cr.grad(loss, backend="numpy")(x)
    np.testing.assert_allclose(gradient, reference, rtol=1e-14)
    assert (
        relative_error(gradient[:, :40], numerical_gradient(lambda head: loss(np.c_[head, x[:, 40:]]), (x[:, :40],), 0))
        < 1e-7
    )


LONG = STABLE_AT_ONCE + 37  # lines sorted by the default sort first, then checked for ties


def long_lines(ties: str) -> np.ndarray:
    x = RNG.standard_normal((3, LONG))
    if ties == "equal values":
        x[1, ::97] = 0.25
    elif ties == "signed zeros":
        x[0, 5], x[0, 900] = 0.0, -0.0
    elif ties == "nans":
        x[2, [3, 1000, 2000]] = np.nan
    return x


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("ties", ["none", "equal values", "signed zeros", "nans"])
def test_argsort_of_long_lines_is_the_stable_permutation(ties, backend):
    x = long_lines(ties)
    for axis in (1, 0):
        data = x if axis == 1 else np.ascontiguousarray(x.T)
        got = cr.jit(lambda a, axis=axis: np.argsort(a, axis=axis), backend=backend)(data)
        np.testing.assert_array_equal(got, np.argsort(data, axis=axis, kind="stable"))
    np.testing.assert_array_equal(stable_argsort(x, 1), np.argsort(x, axis=1, kind="stable"))


def stable(a, axis):
    return np.argsort(a, axis=axis, kind="stable")


# (name, function, what NumPy gives: chainrule's argsort is the stable one, at ties too, dtype)
SORTED = [
    ("float64 rows", lambda x: np.sort(x, axis=1), lambda x: np.sort(x, axis=1), np.float64),
    ("float32 columns", lambda x: np.sort(x, axis=0), lambda x: np.sort(x, axis=0), np.float32),
    ("int32 strided", lambda x: np.sort(x[:, ::2], axis=1), lambda x: np.sort(x[:, ::2], axis=1), np.int32),
    ("int64 transposed", lambda x: np.sort(x.T, axis=1), lambda x: np.sort(x.T, axis=1), np.int64),
    ("int16 argsort", lambda x: np.argsort(x, axis=1), lambda x: stable(x, 1), np.int16),
    ("int8 argsort columns", lambda x: np.argsort(x[::-1], axis=0), lambda x: stable(x[::-1], 0), np.int8),
    ("argsort strided result", lambda x: np.argsort(x, axis=0).T * 1, lambda x: stable(x, 0).T, np.float64),
]


@pytest.mark.parametrize("name, fn, expected, dtype", SORTED, ids=[s[0] for s in SORTED])
def test_llvm_sorts_with_numpys_own_functions_without_a_callback(name, fn, expected, dtype):
    x = (RNG.standard_normal((6, 50)) * 20).astype(dtype)
    compiled = cr.jit(fn, backend="llvm")
    np.testing.assert_array_equal(compiled(x), expected(x))
    kernel = compiled._specialize((x,))[0].kernel
    assert not kernel.lowered.fallbacks
    assert "@chainrule_numpy_" in kernel.source


# ---- median and quantiles of long lines: order statistics by NumPy's partition -------------------

LONG_LINES = SELECT_FROM + 21


@pytest.mark.parametrize("backend", BACKENDS)
def test_long_medians_select_instead_of_sorting(backend):
    x = RNG.standard_normal((2, LONG_LINES))

    def loss(x):
        return np.sum(np.median(x, axis=1) * np.array([1.0, 3.0])) + np.sum(np.percentile(x, [5.0, 62.5], axis=1))

    compiled = cr.value_and_grad(loss, backend=backend)
    ops = ops_of(compiled, x)
    assert "order_statistics" in ops and "sort" not in ops and "argsort" not in ops
    value, gradient = compiled(x)
    assert np.isclose(value, loss(x), rtol=1e-13)
    # the gradient lands on the elements at the ranks the statistics read (distinct values here)
    expected = np.zeros_like(x)
    order = np.argsort(x, axis=1, kind="stable")
    n = LONG_LINES
    for row, weight in enumerate([1.0, 3.0]):
        for rank, share in [((n - 1) // 2, 0.5 * weight), (n // 2, 0.5 * weight)]:
            expected[row, order[row, rank]] += share
        for level in (0.05, 0.625):
            position = level * (n - 1)
            below, t = int(np.floor(position)), position - np.floor(position)
            expected[row, order[row, below]] += 1 - t
            expected[row, order[row, below + 1]] += t
    np.testing.assert_allclose(gradient, expected, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("ties", ["equal values", "signed zeros", "nans"])
def test_order_statistics_at_ties_and_nans_are_the_stable_sorts(ties, backend):
    x = long_lines(ties)[:, : SELECT_FROM + 9]
    if ties == "equal values":
        x[1, ::2] = 0.25  # half the line: the middle ranks fall among the ties
    ranks = (0, 3, SELECT_FROM // 2, SELECT_FROM + 8)
    got = cr.jit(lambda x: np.sort(x, axis=1)[:, list(ranks)], backend=backend)(x)
    np.testing.assert_array_equal(got, np.sort(x, axis=1)[:, list(ranks)])
    np.testing.assert_array_equal(order_statistics(x, ranks), np.sort(x, axis=1)[:, list(ranks)])
    stable_positions = np.argsort(x, axis=1, kind="stable")[:, list(ranks)]
    np.testing.assert_array_equal(rank_positions(x, order_statistics(x, ranks), ranks), stable_positions)
    w = RNG.uniform(0.5, 1.5, 2)
    median_gradient = cr.grad(lambda x: np.sum(w * np.median(x[:2], axis=1)), backend=backend)(x)
    if ties != "nans":
        expected = np.zeros_like(x)
        order = np.argsort(x[:2], axis=1, kind="stable")
        n = x.shape[1]
        for row in range(2):
            expected[row, order[row, n // 2]] = w[row]  # an odd count: the middle one
        np.testing.assert_array_equal(median_gradient, expected)


@pytest.mark.parametrize("backend", BACKENDS)
def test_order_statistics_forward_mode_vmap_and_second_derivatives(backend):
    xs = RNG.standard_normal((3, LONG_LINES))
    v = RNG.standard_normal(LONG_LINES)
    value, tangent = cr.jvp(lambda x: np.quantile(x, 0.3), (xs[0],), (v,), backend=backend)
    gradient = cr.grad(lambda x: np.quantile(x, 0.3), backend=backend)(xs[0])
    assert np.isclose(value, np.quantile(xs[0], 0.3), rtol=1e-14)
    assert np.isclose(tangent, gradient @ v, rtol=1e-12)
    np.testing.assert_allclose(cr.vmap(np.median, backend=backend)(xs), np.median(xs, axis=1), rtol=1e-15)
    hessian_vector = cr.hvp(lambda x: np.median(x) ** 2, backend=backend)(xs[0], v)
    # d²/dx² median² = 2 ∇m ∇mᵀ (m is piecewise linear)
    middle = cr.grad(np.median)(xs[0])
    np.testing.assert_allclose(hessian_vector, 2 * middle * (middle @ v), rtol=1e-12, atol=1e-15)
