"""NumPy idioms of real programs (``chainrule.frontends.numpy_idioms`` and F-order reshapes): NumPy's
values, gradients against central differences on both backends, forward mode against reverse.

Every case in ``CASES`` is a NumPy function of one float64 array. Expected values come from NumPy
and finite differences, never from chainrule.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
from gradient_helpers import numerical_gradient, relative_error, weighted_sum, weights

import chainrule as cr
from chainrule.errors import UnsupportedError


@dataclass(frozen=True)
class Case:
    id: str
    fn: Callable
    x: np.ndarray
    differentiable: bool = True


CASES: list[Case] = []


def case(id, fn, x, differentiable=True):
    CASES.append(Case(id, fn, np.asarray(x, dtype=np.float64), differentiable))


def grid(shape, seed=0, offset=0.05):
    """Distinct values k/10 + offset: no ties, so running maxima are smooth at the point."""
    size = int(np.prod(shape))
    k = np.random.default_rng(seed).permutation(np.arange(size) - size // 2)
    return (k * 0.1 + offset).reshape(shape)


def filled(x, val, wrap=False):
    a = x * 1.0
    np.fill_diagonal(a, val, wrap=wrap)
    return a


# ---- np.fill_diagonal: in place, val scalar, array (cyclic), traced; n-d cubes; wrap --------------
case("fill_diagonal-scalar", lambda x: filled(np.outer(x, x), 0.0), grid(4))
case("fill_diagonal-traced-val", lambda x: filled(np.outer(x, x[:3]), np.sin(x[:2])), grid(4))
case("fill_diagonal-tall-wrap", lambda x: filled(np.reshape(x, (7, 3)), [1.0, 2.0], wrap=True), grid(21))
case("fill_diagonal-tall-nowrap", lambda x: filled(np.reshape(x, (7, 3)), x[:3] * 2, wrap=False), grid(21))
case("fill_diagonal-cube", lambda x: filled(np.reshape(x, (3, 3, 3)), -x[0]), grid(27))
case("fill_diagonal-into-np-zeros", lambda x: filled(np.zeros((3, 3)), x) @ x, grid(3))
case("fill_diagonal-through-a-view", lambda x: _filled_view(np.outer(x, x)), grid(4))
case("fill_diagonal-wide", lambda x: filled(np.reshape(x, (2, 5)), 9.0), grid(10))


def _filled_view(a):
    np.fill_diagonal(a[1:, 1:], a[0, 0])
    return a


# ---- F-order reshapes, function and method forms ----------------------------------------------
case("reshape-F", lambda x: np.reshape(x, (4, 6), order="F"), grid((2, 3, 4)))
case("reshape-method-F", lambda x: x.reshape(3, 8, order="F") ** 2, grid((2, 3, 4)))
case("ravel-F", lambda x: x.ravel("F") * np.arange(24.0), grid((2, 3, 4)))
case("flatten-F", lambda x: x.flatten(order="F") * np.arange(12.0), grid((3, 4)))
case("np-ravel-F-1d", lambda x: np.ravel(x, order="F"), grid(5))

# ---- np.linalg.multi_dot ------------------------------------------------------------------------
_M = np.random.default_rng(1).normal(size=(6, 4))
case("multi_dot-3", lambda x: np.linalg.multi_dot([x, x.T, _M]), grid((6, 2)))
case("multi_dot-4", lambda x: np.linalg.multi_dot([_M.T, x, x.T, _M]), grid((6, 2)))
case("multi_dot-vector-first", lambda x: np.linalg.multi_dot([x[:, 0], _M, _M.T, x]), grid((6, 2)))
case("multi_dot-vector-last", lambda x: np.linalg.multi_dot([x.T, _M, _M.T, x[:, 1]]), grid((6, 2)))
case("multi_dot-vectors-both", lambda x: np.linalg.multi_dot([x[:, 0], _M, _M.T, x[:, 1]]), grid((6, 2)))

# ---- np.polyfit ---------------------------------------------------------------------------------
_XS = np.linspace(-1.0, 2.0, 7)
case("polyfit-traced-y", lambda y: np.polyfit(_XS, y, 2), np.sin(np.arange(7.0)))
case("polyfit-traced-y-2d", lambda y: np.polyfit(_XS, y, 3), np.cos(np.arange(14.0)).reshape(7, 2))
case("polyfit-traced-x", lambda x: np.polyfit(x, np.cos(_XS), 2), _XS + 0.01 * np.arange(7))
case("polyfit-weights", lambda y: np.polyfit(_XS, y, 1, w=np.arange(1.0, 8.0)), np.sin(np.arange(7.0)))
case("polyfit-traced-weights", lambda w: np.polyfit(_XS, np.exp(_XS), 2, w=w), np.arange(1.0, 8.0))

# ---- ufunc.accumulate -----------------------------------------------------------------------------
for _axis in [0, 1, -1]:
    case(f"maximum.accumulate-axis{_axis}", lambda x, a=_axis: np.maximum.accumulate(x, axis=a), grid((5, 6)))
    case(f"minimum.accumulate-axis{_axis}", lambda x, a=_axis: np.minimum.accumulate(x, axis=a), grid((5, 6)))
    case(f"add.accumulate-axis{_axis}", lambda x, a=_axis: np.add.accumulate(x, axis=a), grid((3, 4)))
    case(f"multiply.accumulate-axis{_axis}", lambda x, a=_axis: np.multiply.accumulate(x, a), grid((3, 4)))
case("maximum.accumulate-1d-odd", np.maximum.accumulate, grid(11))

# ---- ufunc.outer --------------------------------------------------------------------------------
for _ufunc in [np.subtract, np.multiply, np.add, np.divide, np.power, np.maximum, np.arctan2, np.hypot]:
    case(f"{_ufunc.__name__}.outer", lambda x, u=_ufunc: u.outer(x[:3] + 2.0, x[3:].reshape(2, 2)), grid(7))
case("subtract.outer-constant-first", lambda x: np.subtract.outer(np.arange(3.0), x) ** 2, grid((2, 2)))
case("multiply.outer-scalar", lambda x: np.multiply.outer(x[0], x), grid(3))

# ---- np.apply_along_axis ------------------------------------------------------------------------
case("apply_along_axis-scalar", lambda x: np.apply_along_axis(lambda r: np.sum(r**2), 1, x), grid((3, 4)))
case("apply_along_axis-vector-axis0", lambda x: np.apply_along_axis(np.cumsum, 0, x), grid((3, 4)))
case(
    "apply_along_axis-matrix-3d",
    lambda x: np.apply_along_axis(lambda r, s: np.outer(r, r) * s, 1, x, s=2.0),
    grid((2, 3, 2)),
)
case("apply_along_axis-1d", lambda x: np.apply_along_axis(np.sort, 0, x), grid(5))


# ---- where= reductions; choosing, counting and small helpers (numpy_selection) ---------------------
_MASK = np.array([[True, False, True, True], [False, True, True, False], [True, True, False, True]])
case("sum-where", lambda x: np.sum(x**2, axis=1, where=_MASK), grid((3, 4)))
case("sum-where-traced", lambda x: np.sum(x, where=x > 0), grid((3, 4)))
case("mean-where", lambda x: np.mean(x, axis=0, where=_MASK, keepdims=True), grid((3, 4)))
case("prod-where", lambda x: np.prod(x + 2, where=_MASK[0]), grid(4))
case("max-initial-where", lambda x: np.max(x, axis=1, where=_MASK, initial=-0.3), grid((3, 4)))
case("min-initial", lambda x: np.min(np.exp(x), axis=0, initial=0.7, keepdims=True), grid((3, 4)))
case("sum-initial", lambda x: np.sum(x, axis=1, initial=1.5), grid((3, 4)))
case("select", lambda x: np.select([x > 0.2, x < -0.2], [x**2, -x], default=x * 3), grid((3, 4)))
case("piecewise", lambda x: np.piecewise(x, [x < 0, x >= 0], [lambda v: -v, lambda v: v**2]), grid(7))
case("piecewise-otherwise", lambda x: np.piecewise(x, [x < -0.1], [np.sin, lambda v: v * 2]), grid(7))
case("piecewise-constant", lambda x: np.piecewise(x, [x < 0], [0.5, np.exp]), grid(7))
case("count_nonzero-scales", lambda x: x * np.count_nonzero(x > 0, axis=0), grid((3, 4)))
case("bincount-weights", lambda x: np.bincount(np.array([0, 3, 3, 1]), weights=x, minlength=6), grid(4))
case("triu_indices_from", lambda x: x[np.triu_indices_from(x, k=1)], grid((3, 4)))
case("tril_indices_from", lambda x: x[np.tril_indices_from(x)], grid((4, 4)))
case("diag_indices_from", lambda x: x[np.diag_indices_from(x)] * 2, grid((3, 3)))
case("fmax-fmin", lambda x: np.fmax(x, 0.1) * np.fmin(x[::-1], np.array([np.nan, 0, 1, 2, 3])), grid(5))
case("trapezoid-dx", lambda x: np.trapezoid(x**2, dx=0.5, axis=0), grid((3, 4)))
case("trapezoid-x", lambda x: np.trapezoid(x, x=np.array([0.0, 0.5, 2.0, 3.0])), grid((3, 4)))
# x of y's shape: its spacings are along the axis integrated over (they were taken along the last one)
case("trapezoid-x-2d-axis0", lambda x: np.trapezoid(x**2, x=np.cumsum(np.abs(x) + 0.5, axis=0), axis=0), grid((4, 3)))
case("trapezoid-x-1d-axis0", lambda x: np.trapezoid(x, x=np.array([0.0, 0.5, 2.0]), axis=0), grid((3, 4, 2)))
case("digitize", lambda x: np.digitize(x, [-0.3, 0.0, 0.4]) * x, grid(7))
case("digitize-decreasing-right", lambda x: np.digitize(x, [0.4, 0.0, -0.3], right=True) * x**2, grid((2, 4)))
case("unwrap", lambda x: np.unwrap(x * 9.0), grid((3, 5)))
case("unwrap-axis0-discont-period", lambda x: np.unwrap(x * 37.0, discont=4.1, axis=0, period=6.0), grid((5, 3)))
case("ediff1d", lambda x: np.ediff1d(x, to_begin=x[0], to_end=[1.0, 2.0]), grid((2, 3)))
case("logaddexp.reduce", lambda x: np.logaddexp.reduce(x, axis=1), grid((3, 4)))
_WITH_NAN = np.array([[0.3, np.nan, -1.2, 0.8], [1.4, 0.2, np.nan, -0.6]])
case("nanvar", lambda x: np.nanvar(x, axis=1), _WITH_NAN)
case("nanstd-ddof", lambda x: np.nanstd(x, ddof=1), _WITH_NAN)
case("gradient-1d", lambda x: np.gradient(x[0] ** 2), grid((3, 4)))
case("gradient-axis-spacing", lambda x: np.gradient(x, 0.5, axis=1), grid((3, 4)))
case("gradient-all-axes-edge2", lambda x: np.stack(np.gradient(x, 2.0, 0.5, edge_order=2)), grid((3, 4)))
case("cond", lambda x: np.linalg.cond(x), grid((3, 3)) + 2 * np.eye(3))
case("cond-fro", lambda x: np.linalg.cond(x, "fro"), grid((3, 3)) + 2 * np.eye(3))


def numpy_value(c: Case):
    with np.errstate(all="ignore"):
        return c.fn(c.x)


@pytest.mark.parametrize("c", CASES, ids=lambda c: c.id)
def test_value_is_numpys(c: Case, backend):
    expected = numpy_value(c)
    got = cr.jit(c.fn, backend=backend)(c.x)
    assert np.shape(got) == np.shape(expected)
    assert np.asarray(got).dtype == np.asarray(expected).dtype
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)


def _loss(c: Case):
    return lambda x: weighted_sum(c.fn(x))


@pytest.mark.parametrize("c", CASES, ids=lambda c: c.id)
def test_gradient_matches_central_differences(c: Case, backend):
    gradient = cr.grad(_loss(c), backend=backend)(c.x)
    numeric = numerical_gradient(_loss(c), (c.x,), 0)
    error = relative_error(gradient, numeric)
    assert error < 1e-7, f"relative error {error:.2e}\nchainrule: {gradient}\nfinite differences: {numeric}"


@pytest.mark.parametrize("c", CASES, ids=lambda c: c.id)
def test_forward_mode_agrees_with_reverse_and_central_differences(c: Case):
    direction = np.random.default_rng(3).uniform(-1.0, 1.0, size=c.x.shape)
    direction[np.isnan(c.x)] = 0.0
    value, tangent = cr.jvp(c.fn, (c.x,), (direction,))
    np.testing.assert_allclose(value, numpy_value(c), rtol=1e-10, atol=1e-12)
    along = numerical_gradient(lambda t: weighted_sum(c.fn(c.x + t * direction)), (np.zeros(()),), 0)
    w = weights(np.shape(value))
    assert abs(np.sum(w * tangent) - along) <= 1e-7 * (1 + abs(along))
    reverse = cr.grad(_loss(c))(c.x)
    assert np.sum(w * tangent) == pytest.approx(np.sum(reverse * direction), rel=1e-10, abs=1e-12)


# ---- running maxima at ties: as np.maximum splits them ------------------------------------------


def test_maximum_accumulate_gradient_reaches_the_element_holding_the_running_maximum():
    x = np.array([0.5, 2.0, 1.0, 3.0, -1.0])  # running max [0.5, 2, 2, 3, 3]
    gradient = cr.grad(lambda x: np.sum(np.maximum.accumulate(x) * np.arange(1.0, 6.0)))(x)
    np.testing.assert_array_equal(gradient, [1.0, 2.0 + 3.0, 0.0, 4.0 + 5.0, 0.0])


# ---- np.isclose, np.allclose: NumPy's booleans, NaN and infinities included -----------------------
_A = np.array([1.0, np.nan, np.inf, -np.inf, 1.0 + 1e-9, 2.0, np.inf, 0.0])
_B = np.array([1.0, np.nan, np.inf, np.inf, 1.0, 2.1, 1.0, 1e-9])


@pytest.mark.parametrize("equal_nan", [False, True])
def test_isclose_and_allclose_are_numpys(equal_nan, backend):
    def close(a, b):
        return np.isclose(a, b, equal_nan=equal_nan), np.allclose(a[:1], b[:1], equal_nan=equal_nan)

    with np.errstate(invalid="ignore"):
        got = cr.jit(close, backend=backend)(_A, _B)
        expected = close(_A, _B)
    np.testing.assert_array_equal(got[0], expected[0])
    assert got[0].dtype == np.bool_ and bool(got[1]) == bool(expected[1])
    rtol_close = cr.jit(lambda a: np.isclose(a, 1, rtol=0.1, atol=0.0))(np.array([0.95, 1.2]))
    np.testing.assert_array_equal(rtol_close, [True, False])


def test_isclose_masks_have_no_gradient():
    gradient = cr.grad(lambda w: np.sum(np.where(np.isclose(w, w[0]), w, 0.0)))(np.array([1.0, 2.0, 1.0]))
    np.testing.assert_array_equal(gradient, [1.0, 0.0, 1.0])


def test_polyfit_full_or_cov_raise_naming_the_function():
    with pytest.raises(UnsupportedError, match=r"np\.polyfit with full=True"):
        cr.grad(lambda y: np.sum(np.polyfit(_XS, y, 1, full=True)[0]))(np.ones(7))


def test_digitize_with_traced_bins_is_refused_since_their_direction_decides_the_result():
    with pytest.raises(UnsupportedError, match="traced bins"):
        cr.jit(lambda b: np.digitize(np.array([0.5, 1.5]), b))(np.array([0.0, 1.0, 2.0]))
