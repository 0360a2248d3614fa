"""NumPy's and SciPy's special functions that are compositions (``frontends/numpy_special.py``):
values against NumPy/SciPy themselves on both backends, gradients against finite differences.

The primitives among them (floor, erfinv, gammaln, mod, ...) are checked from their op entries by
``test_table_elementwise.py`` and ``test_backend_coverage.py``; here are the composites, the SciPy
functions written in Python (logsumexp, softmax, scipy.stats), and the conventions: rounding has an
exact zero gradient, ``sinc'(0) = 0``, ``log_ndtr`` far in its lower tail.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.special
import scipy.stats
import sympy as sp
from gradient_helpers import numerical_gradient, relative_error, weighted_sum

import chainrule as cr
from chainrule.errors import UnsupportedError
from chainrule.ir.special_functions import exp1, spence

BACKENDS = ["numpy", "llvm"]
X = np.array([[-2.3, -0.4, 0.0, 0.7], [1.9, 3.1, -1.2, 0.25]])
POSITIVE = np.array([[0.3, 1.7, 2.2, 0.9], [4.5, 0.15, 1.05, 3.3]])
UNIT = np.array([[0.05, 0.3, 0.55, 0.95], [0.2, 0.65, 0.45, 0.8]])
COV = np.array([[2.0, 0.3, 0.1, 0.0], [0.3, 1.5, -0.2, 0.1], [0.1, -0.2, 1.0, 0.05], [0.0, 0.1, 0.05, 0.7]])
MEAN = np.array([0.1, -0.3, 0.2, 0.5])
SIMPLEX_HEAD = np.array([[0.2, 0.3, 0.1], [0.3, 0.3, 0.6]])  # three points; each third component 1 - the sum
ALPHA = np.array([1.5, 2.0, 0.8])
COUNTS = np.array([[0.0, 1.0, 2.0, 5.0], [3.0, 0.0, 7.0, 1.0]])
NORM = scipy.stats.norm
FROZEN_MVN = scipy.stats.multivariate_normal(MEAN, COV)

# (id, function of traced arrays, arguments): each computes what it computes on NumPy arrays.
COMPOSITES = [
    ("sinc", np.sinc, (X,)),
    ("deg2rad", np.deg2rad, (X,)),
    ("radians", np.radians, (X,)),
    ("rad2deg", np.rad2deg, (X,)),
    ("degrees", np.degrees, (X,)),
    ("logaddexp2", np.logaddexp2, (X, X[::-1])),
    ("heaviside", lambda x, h: np.heaviside(x, h), (X, POSITIVE)),
    ("nan_to_num", lambda x: np.nan_to_num(np.log(x)), (X,)),
    ("nan_to_num bounds", lambda x: np.nan_to_num(1.0 / x - np.log(x), nan=-1.0, posinf=9.0, neginf=-9.0), (X,)),
    ("round", lambda x: np.round(x * 3.77), (X,)),
    ("round 2", lambda x: np.round(x * 3.77, 2), (X,)),
    ("around -1", lambda x: np.around(x * 37.7, -1), (X,)),
    ("fix", np.fix, (X * 2.5,)),
    ("round integers", lambda n: np.round(n * 3), (np.arange(6).reshape(2, 3),)),
    ("logsumexp", scipy.special.logsumexp, (X,)),
    ("logsumexp axis", lambda x: scipy.special.logsumexp(x, axis=1), (X,)),
    ("logsumexp keepdims", lambda x: scipy.special.logsumexp(x, axis=0, keepdims=True), (X,)),
    ("logsumexp b", lambda x, b: scipy.special.logsumexp(x, axis=-1, b=b), (X, POSITIVE)),
    ("logsumexp b broadcast", lambda x: scipy.special.logsumexp(x, axis=0, b=MEAN + 1.0), (X,)),
    ("logsumexp large", lambda x: scipy.special.logsumexp(x * 1000.0, axis=1), (X,)),
    ("softmax", scipy.special.softmax, (X,)),
    ("softmax axis", lambda x: scipy.special.softmax(x * 300.0, axis=1), (X,)),
    ("log_softmax", lambda x: scipy.special.log_softmax(x, axis=0), (X,)),
    ("log_softmax all", scipy.special.log_softmax, (X,)),
    ("log_expit", scipy.special.log_expit, (X * 30.0,)),
    ("ndtr", scipy.special.ndtr, (X * 3.0,)),
    ("log_ndtr", scipy.special.log_ndtr, (X * 15.0,)),
    ("scipy.special.log1p", scipy.special.log1p, (POSITIVE,)),
    ("polygamma 0", lambda x: scipy.special.polygamma(0, x), (POSITIVE,)),
    ("polygamma 2", lambda x: scipy.special.polygamma(2, x), (POSITIVE,)),
    ("zeta", lambda q: scipy.special.zeta(2.5, q), (POSITIVE,)),
    ("multigammaln", lambda a: scipy.special.multigammaln(a, 3), (POSITIVE + 1.5,)),
    ("xlogy", scipy.special.xlogy, (X, POSITIVE)),
    ("norm.logpdf", lambda x, s: NORM.logpdf(x, loc=0.4, scale=s), (X, POSITIVE)),
    ("norm.pdf", lambda x, m: NORM.pdf(x, m, 1.5), (X, POSITIVE)),
    ("norm.cdf", lambda x, s: NORM.cdf(x, -0.2, s), (X, POSITIVE)),
    ("norm.logcdf", lambda x: NORM.logcdf(x * 12.0), (X,)),
    ("frozen norm.logpdf", lambda x: scipy.stats.norm(0.5, 2.0).logpdf(x), (X,)),
    ("mvn.logpdf", lambda x, m: scipy.stats.multivariate_normal.logpdf(x, mean=m, cov=COV), (X, MEAN)),
    ("frozen mvn.logpdf", FROZEN_MVN.logpdf, (X,)),
    ("mvn.logpdf traced cov", lambda x, a: scipy.stats.multivariate_normal.logpdf(x, MEAN, a @ a.T + COV), (X, X.T)),
    (
        "mvn.logpdf traced cov point",
        lambda m, a: scipy.stats.multivariate_normal.logpdf(X[0], m, a @ a.T + COV),
        (MEAN, X.T),
    ),
    ("t.logpdf", lambda x, s: scipy.stats.t.logpdf(x, 2.4, 0.3, s), (X, POSITIVE)),
    ("t.logpdf traced df", lambda x, df: scipy.stats.t.logpdf(x, df), (X, POSITIVE)),
    ("t.pdf", lambda x, m: scipy.stats.t.pdf(x, 5.0, m, 1.5), (X, POSITIVE)),
    ("mvn.logpdf point", lambda x: scipy.stats.multivariate_normal.logpdf(x, mean=MEAN, cov=COV), (X[0],)),
    ("mvn.logpdf diagonal", lambda x, v: scipy.stats.multivariate_normal.logpdf(x, MEAN, v), (X, POSITIVE[0])),
    ("mvn.logpdf variance", lambda x, v: scipy.stats.multivariate_normal.logpdf(x, MEAN, v), (X, np.float64(1.7))),
    ("rel_entr", scipy.special.rel_entr, (POSITIVE, POSITIVE[::-1])),
    ("kl_div", scipy.special.kl_div, (POSITIVE, UNIT)),
    ("huber", lambda d, r: scipy.special.huber(d, r), (POSITIVE, X)),
    ("pseudo_huber", lambda d, r: scipy.special.pseudo_huber(d, r), (POSITIVE, X)),
    ("entropy", scipy.stats.entropy, (POSITIVE,)),
    ("entropy qk base axis", lambda p, q: scipy.stats.entropy(p, q, base=2, axis=1), (POSITIVE, UNIT)),
    ("entropy flat keepdims", lambda p: scipy.stats.entropy(p, UNIT[0], axis=1, keepdims=True), (POSITIVE,)),
    ("entropy axis None", lambda p, q: scipy.stats.entropy(p, q, axis=None), (POSITIVE, UNIT)),
    ("gamma.logpdf", lambda x, a: scipy.stats.gamma.logpdf(x, a, 0.1, 1.5), (POSITIVE + 0.2, POSITIVE)),
    ("gamma.pdf", lambda a, s: scipy.stats.gamma.pdf(POSITIVE, a, scale=s), (POSITIVE, POSITIVE[::-1])),
    ("frozen gamma.logpdf", lambda x: scipy.stats.gamma(2.5, scale=0.5).logpdf(x), (POSITIVE,)),
    ("beta.logpdf", scipy.stats.beta.logpdf, (UNIT, POSITIVE, POSITIVE[::-1])),
    ("beta.pdf", lambda a: scipy.stats.beta.pdf(UNIT, a, 2.5), (POSITIVE,)),
    ("expon.logpdf", lambda x, s: scipy.stats.expon.logpdf(x, scale=s), (POSITIVE, POSITIVE[::-1])),
    ("logistic.logpdf", lambda x, m: scipy.stats.logistic.logpdf(x, m, 0.7), (X, POSITIVE)),
    ("laplace.logpdf", lambda x, s: scipy.stats.laplace.logpdf(x, 0.1, s), (X, POSITIVE)),
    ("cauchy.logpdf", lambda x, m: scipy.stats.cauchy.logpdf(x, m, 1.5), (X * 3.0, POSITIVE)),
    ("lognorm.logpdf", lambda x, s: scipy.stats.lognorm.logpdf(x, s, scale=1.3), (POSITIVE, POSITIVE[::-1])),
    ("lognorm.pdf", lambda s: scipy.stats.lognorm.pdf(UNIT, s), (POSITIVE,)),
    ("norm.sf", lambda x, s: NORM.sf(x, 0.2, s), (X, POSITIVE)),
    ("norm.ppf", lambda q, s: NORM.ppf(q, 0.3, s), (UNIT, POSITIVE)),
    ("norm.isf", lambda q, m: NORM.isf(q, loc=m, scale=1.7), (UNIT, X)),
    ("frozen norm.ppf", lambda q: scipy.stats.norm(0.5, 2.0).ppf(q), (UNIT,)),
    ("gammainc", lambda x: scipy.special.gammainc(POSITIVE[::-1], x), (POSITIVE,)),
    ("gammaincc", lambda x: scipy.special.gammaincc(2.5, x), (POSITIVE,)),
    ("jv", lambda x: scipy.special.jv(1.5, x), (POSITIVE,)),
    ("jv integer order", lambda x: scipy.special.jv(3.0, x), (X,)),
    ("jv orders", lambda x: scipy.special.jv(np.array([0.0, 1.0, -2.5, 3.2]), x), (POSITIVE,)),
    ("yv", lambda x: scipy.special.yv(-0.7, x), (POSITIVE,)),
    ("iv", lambda x: scipy.special.iv(2.0, x), (X,)),
    ("kv", lambda x: scipy.special.kv(0.5, x), (POSITIVE,)),
    ("norm.logsf", lambda x: NORM.logsf(x * 12.0, 0.5), (X,)),
    ("dirichlet.logpdf", scipy.stats.dirichlet.logpdf, (SIMPLEX_HEAD, ALPHA)),
    ("dirichlet.logpdf point", lambda x, a: scipy.stats.dirichlet.logpdf(x[:, 1], a), (SIMPLEX_HEAD, ALPHA)),
    ("dirichlet.pdf", lambda a: scipy.stats.dirichlet.pdf(np.array([0.25, 0.35, 0.4]), a), (ALPHA,)),
    ("poisson.logpmf", lambda mu: scipy.stats.poisson.logpmf(COUNTS, mu), (POSITIVE,)),
    ("poisson.pmf loc", lambda mu: scipy.stats.poisson.pmf(COUNTS, mu, loc=-1), (POSITIVE,)),
    ("nbinom.logpmf", lambda n, p: scipy.stats.nbinom.logpmf(COUNTS, n, p), (POSITIVE, UNIT)),
    ("binom.logpmf", lambda p: scipy.stats.binom.logpmf(COUNTS, 7, p), (UNIT,)),
    ("binom.pmf", lambda p: scipy.stats.binom.pmf(COUNTS, 9.0, p), (UNIT,)),
    # off the support -inf (pmf, pdf 0), a parameter out of its domain NaN: values only
    ("off support gamma.logpdf", lambda a: scipy.stats.gamma.logpdf(X, a), (POSITIVE,)),
    ("off support beta.pdf", lambda x: scipy.stats.beta.pdf(x, 2.0, 3.0), (X,)),
    ("off support poisson.logpmf", lambda mu: scipy.stats.poisson.logpmf(X * 2.0, mu - 1.0), (POSITIVE,)),
    ("off support binom.logpmf", lambda p: scipy.stats.binom.logpmf(COUNTS, 4, 2.0 * p), (UNIT,)),
    ("off support lognorm.logpdf", lambda s: scipy.stats.lognorm.logpdf(X, s), (POSITIVE,)),
    ("off support nbinom.logpmf", lambda n: scipy.stats.nbinom.logpmf(COUNTS, n - 1.0, 0.3), (POSITIVE,)),
]
IDS = [c[0] for c in COMPOSITES]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name,function,args", COMPOSITES, ids=IDS)
def test_a_composite_computes_what_numpy_and_scipy_do(name, function, args, backend):
    with np.errstate(all="ignore"):
        expected = function(*args)
        got = cr.jit(function, backend=backend)(*args)
    assert np.shape(got) == np.shape(expected)
    np.testing.assert_allclose(got, expected, rtol=1e-13, atol=1e-300)


# the composites on points where they are differentiable (no rounding, no jump, no log of <= 0)
DIFFERENTIABLE = [
    c for c in COMPOSITES if not c[0].startswith(("round", "around", "fix", "heaviside", "nan_to_num", "off support"))
]


@pytest.mark.parametrize("name,function,args", DIFFERENTIABLE, ids=[c[0] for c in DIFFERENTIABLE])
def test_a_composite_gradient_matches_central_differences(name, function, args):
    loss = lambda *a: weighted_sum(function(*a))
    argnums = tuple(range(len(args)))
    gradients = cr.grad(loss, argnums=argnums)(*args)
    for argnum, gradient in enumerate(gradients):
        numeric = numerical_gradient(loss, args, argnum, step=1e-6)
        assert relative_error(gradient, numeric) < 1e-7, f"d/d argument {argnum}"


@pytest.mark.parametrize("name,function,args", DIFFERENTIABLE, ids=[c[0] for c in DIFFERENTIABLE])
def test_a_composite_forward_mode_agrees_with_reverse_mode(name, function, args):
    # the JVP of a scalar loss along tangents t is the gradient's inner product with t
    loss = lambda *a: weighted_sum(function(*a))
    tangents = tuple(np.random.default_rng(3).uniform(-1, 1, np.shape(a)) for a in args)
    gradients = cr.grad(loss, argnums=tuple(range(len(args))))(*args)
    _, derivative = cr.jvp(loss, args, tangents)
    expected = sum(np.sum(g * t) for g, t in zip(gradients, tangents))
    # atol: softmax of x * 300 has derivatives ~1e-89 left from cancelling O(1) terms, noise both ways
    np.testing.assert_allclose(derivative, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "function", [np.floor, np.ceil, np.trunc, np.rint, np.sign, np.round, np.fix], ids=lambda f: f.__name__
)
def test_rounding_has_an_exact_zero_gradient_at_and_between_the_jumps(function, backend):
    x = np.array([-2.5, -1.0, -0.3, 0.0, 0.5, 1.5, 2.7, np.inf])
    gradient = cr.grad(lambda x: np.sum(function(x)), backend=backend)(x)
    np.testing.assert_array_equal(gradient, np.zeros_like(x))
    # and only the product rule's other factor reaches x through f(x) * x
    finite = x[:-1]
    gradient = cr.grad(lambda x: np.sum(function(x) * x), backend=backend)(finite)
    np.testing.assert_array_equal(gradient, function(finite))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("function", [np.logaddexp, np.logaddexp2], ids=lambda f: f.__name__)
def test_logaddexp_of_equal_infinities_is_that_infinity_and_ties_split_the_gradient(function, backend):
    a, b = np.array([np.inf, -np.inf, np.inf, 0.5]), np.array([np.inf, -np.inf, -np.inf, 0.5])
    with np.errstate(invalid="ignore"):  # inf - inf in the branch np.where does not take
        np.testing.assert_array_equal(cr.jit(function, backend=backend)(a, b), function(a, b))
    da, db = cr.grad(lambda a, b: np.sum(function(a, b)), argnums=(0, 1), backend=backend)(a[3:], b[3:])
    np.testing.assert_allclose([da[0], db[0]], [0.5, 0.5], rtol=1e-15)


@pytest.mark.parametrize("backend", BACKENDS)
def test_sinc_is_one_at_zero_with_derivative_zero(backend):
    value, gradient = cr.value_and_grad(lambda x: np.sum(np.sinc(x)), backend=backend)(np.array([0.0, 0.0]))
    assert value == 2.0
    np.testing.assert_array_equal(gradient, [0.0, 0.0])


def test_heaviside_passes_the_gradient_to_its_second_operand_only_at_zero():
    x, h = np.array([-1.0, 0.0, 2.0, 0.0]), np.array([0.5, 0.25, 0.75, 1.0])
    dx, dh = cr.grad(lambda x, h: np.sum(np.heaviside(x, h) * np.arange(1.0, 5.0)), argnums=(0, 1))(x, h)
    np.testing.assert_array_equal(dx, np.zeros(4))
    np.testing.assert_array_equal(dh, [0.0, 2.0, 0.0, 4.0])


def test_nan_to_num_passes_the_gradient_where_the_value_was_finite():
    x = np.array([1.5, np.inf, -np.inf, np.nan])
    gradient = cr.grad(lambda x: np.sum(np.nan_to_num(x, posinf=5.0, neginf=-5.0) * np.arange(1.0, 5.0)))(x)
    np.testing.assert_array_equal(gradient, [1.0, 0.0, 0.0, 0.0])


@pytest.mark.parametrize("backend", BACKENDS)
def test_logsumexp_of_huge_values_is_finite_and_its_gradient_is_the_softmax(backend):
    x = np.array([[1000.0, 1001.0, 999.5], [-1000.0, -1002.0, -999.0]])
    value, gradient = cr.value_and_grad(lambda x: np.sum(scipy.special.logsumexp(x, axis=1)), backend=backend)(x)
    np.testing.assert_allclose(value, np.sum(scipy.special.logsumexp(x, axis=1)), rtol=1e-15)
    np.testing.assert_allclose(gradient, scipy.special.softmax(x, axis=1), rtol=1e-14)


def test_logsumexp_of_minus_infinity_everywhere_is_minus_infinity():
    with np.errstate(divide="ignore"):  # log(0)
        got = cr.jit(lambda x: scipy.special.logsumexp(x, axis=1))(np.array([[-np.inf, -np.inf], [0.0, -np.inf]]))
    np.testing.assert_array_equal(got, [-np.inf, 0.0])


@pytest.mark.parametrize("backend", BACKENDS)
def test_log_ndtr_far_in_the_lower_tail_neither_underflows_nor_loses_its_gradient(backend):
    z = np.array([-40.0, -200.0, -1.0 - 1e-9, -1.0, 9.0])
    value, gradient = cr.value_and_grad(lambda z: np.sum(scipy.special.log_ndtr(z)), backend=backend)(z)
    np.testing.assert_allclose(value, np.sum(scipy.special.log_ndtr(z)), rtol=1e-14)
    # d/dz log Φ(z) = φ(z) / Φ(z), the inverse Mills ratio, computed here through SciPy's log-space forms
    expected = np.exp(scipy.stats.norm.logpdf(z) - scipy.special.log_ndtr(z))
    np.testing.assert_allclose(gradient, expected, rtol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_density_is_zero_off_its_support_and_gives_no_nan_there(backend):
    # gamma(a) at points of which three are negative: exp(logpdf) is 0 there, and the formula evaluated
    # off the support must not send 0 * inf = NaN into the gradient with respect to a
    points = X + 0.05

    def mass(a):
        return np.sum(np.exp(scipy.stats.gamma.logpdf(points, a)) * points)

    gradient = cr.grad(mass, backend=backend)(POSITIVE + 1.0)
    assert np.all(np.isfinite(gradient))
    assert np.all(gradient[points < 0] == 0.0)
    assert relative_error(gradient, numerical_gradient(mass, (POSITIVE + 1.0,), 0, step=1e-6)) < 1e-7


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "function", [scipy.special.rel_entr, scipy.special.kl_div, scipy.special.huber, scipy.special.pseudo_huber]
)
def test_convex_analysis_functions_take_scipys_branches_at_zeros_infinities_and_nans(function, backend):
    edges = np.array([-1.5, -0.3, 0.0, 0.4, 2.0, np.inf, np.nan, 1e-300])
    first, second = np.meshgrid(edges, edges)
    with np.errstate(all="ignore"):
        np.testing.assert_allclose(
            cr.jit(function, backend=backend)(first, second), function(first, second), rtol=1e-13
        )


def test_relative_entropy_at_zero_mass_has_a_finite_gradient():
    # p log(p/q) at p = 0 is 0 with the one-sided derivative -inf in p, but q's derivative is -p/q = 0
    p, q = np.array([0.0, 0.3, 0.7]), np.array([0.2, 0.3, 0.5])
    gradient = cr.grad(lambda q: np.sum(scipy.special.rel_entr(p, q)))(q)
    np.testing.assert_allclose(gradient, -p / q, rtol=1e-14)


def test_multivariate_normal_gradients_are_the_textbook_ones():
    # d/dx log N(x; mu, S) = -S^-1 (x - mu) = -d/dmu, from the inverse of the user's covariance
    precision = np.linalg.inv(COV)
    dx, dmean = cr.grad(
        lambda x, m: np.sum(scipy.stats.multivariate_normal.logpdf(x, mean=m, cov=COV)), argnums=(0, 1)
    )(X, MEAN)
    np.testing.assert_allclose(dx, -(X - MEAN) @ precision, rtol=1e-12)
    np.testing.assert_allclose(dmean, np.sum((X - MEAN) @ precision, axis=0), rtol=1e-12)


def test_multivariate_normal_with_a_traced_covariance_has_the_textbook_gradient():
    # d/dS sum_i log N(x_i; mu, S) = (S^-1 R S^-1 - n S^-1) / 2 with R = sum_i (x_i - mu)(x_i - mu)^T
    # (autograd's Gaussian-process example differentiates through the covariance this way)
    gradient = cr.grad(lambda c: np.sum(scipy.stats.multivariate_normal.logpdf(X, MEAN, c)))(COV)
    precision, residuals = np.linalg.inv(COV), X - MEAN
    expected = 0.5 * (precision @ residuals.T @ residuals @ precision - len(X) * precision)
    np.testing.assert_allclose(gradient, expected, rtol=1e-10)  # symmetric, as np.linalg.cholesky's gradient


def test_multivariate_normal_with_a_traced_covariance_and_allow_singular_is_unsupported():
    with pytest.raises(UnsupportedError, match="allow_singular"):
        cr.grad(lambda c: np.sum(scipy.stats.multivariate_normal.logpdf(X, MEAN, c, allow_singular=True)))(COV)


@pytest.mark.parametrize("name", ["gammainc", "gammaincc", "jv", "yv", "iv", "kv"])
def test_a_gradient_to_an_operand_with_no_closed_form_derivative_is_refused(name):
    function = getattr(scipy.special, name)
    with pytest.raises(UnsupportedError, match="no closed form"):
        cr.grad(lambda a: np.sum(function(a, POSITIVE)))(POSITIVE + 1.0)
    # traced but not differentiated: computed, and the gradient to x is the one with a constant a
    a = POSITIVE[::-1] + 1.0
    np.testing.assert_allclose(cr.jit(function)(a, POSITIVE), function(a, POSITIVE), rtol=1e-15)
    expected = cr.grad(lambda x: np.sum(function(a, x)))(POSITIVE)
    by_argnums = cr.grad(lambda a, x: np.sum(function(a, x)), argnums=1)(a, POSITIVE)
    stopped = cr.grad(lambda a, x: np.sum(function(cr.stop_gradient(a), x)), argnums=(0, 1))(a, POSITIVE)
    np.testing.assert_array_equal(by_argnums, expected)
    np.testing.assert_array_equal(stopped[1], expected)
    np.testing.assert_array_equal(stopped[0], np.zeros_like(a))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "function",
    [scipy.special.beta, scipy.special.binom, scipy.special.poch, lambda a, b: scipy.special.gamma(a)],
    ids=["beta", "binom", "poch", "gamma"],
)
def test_gamma_ratios_keep_scipys_sign_between_the_negative_integers(function, backend):
    # Γ < 0 on (-1, 0) and (-3, -2): beta, binom and poch are not exp(betaln) or exp(gammaln - gammaln)
    a, b = np.array([-0.5, -2.5, -1.35, 1.4]), np.array([0.7, -0.3, 2.2, -2.9])
    expected = function(a, b)
    assert (expected < 0).any() and (expected > 0).any()
    np.testing.assert_allclose(cr.jit(function, backend=backend)(a, b), expected, rtol=1e-15)


def test_logsumexp_return_sign_is_unsupported_on_traced_values():
    with pytest.raises(UnsupportedError, match="return_sign=True"):
        cr.trace(lambda x: scipy.special.logsumexp(x, return_sign=True)[0], X)


def test_scipy_functions_on_numpy_arrays_are_scipys_own():
    # chainrule replaces them with functions that call the originals when nothing is traced
    for function in (scipy.special.logsumexp, scipy.special.softmax, scipy.special.log_softmax):
        assert function.__wrapped__ is not function
        np.testing.assert_array_equal(function(X, axis=1), function.__wrapped__(X, axis=1))
    np.testing.assert_array_equal(NORM.logpdf(X, 1.0, 2.0), type(NORM).logpdf.__wrapped__(NORM, X, 1.0, 2.0))
    assert "scipy.special.logsumexp" in cr.frontends.SUPPORTED
    assert "scipy.stats.multivariate_normal.logpdf" in cr.frontends.SUPPORTED


@pytest.mark.parametrize("z", [0.15, 0.9, 1.7, 2.6])
def test_the_sympy_definitions_of_exp1_and_spence_are_sympys_functions(z):
    # the table checks VJP rules against sympy.diff of these definitions, whose fdiff is written here:
    # they are checked against SymPy's own E1 = expint(1, x) and Li2(1 - z), values and derivatives
    x = sp.Symbol("x", positive=True)
    for ours, theirs, scipys in [(exp1, sp.expint(1, x), scipy.special.exp1), (spence, sp.polylog(2, 1 - x), None)]:
        assert abs(float(ours(x).rewrite(type(theirs)).subs(x, z).evalf()) - float(theirs.subs(x, z).evalf())) < 1e-15
        slope = float(sp.diff(theirs, x).subs(x, z).evalf())
        assert abs(float(sp.diff(ours(x), x).subs(x, z)) - slope) < 1e-14 * max(1.0, abs(slope))
        assert abs(float(theirs.subs(x, z).evalf()) - (scipys or scipy.special.spence)(z)) < 1e-15


@pytest.mark.parametrize("backend", BACKENDS)
def test_spence_has_the_derivative_minus_one_at_one(backend):
    # d/dz spence(z) = log(z) / (1 - z) (SciPy's spence is Li2(1 - z)), whose limit at z = 1 is -1
    gradient = cr.grad(lambda z: np.sum(scipy.special.spence(z)), backend=backend)(np.array([1.0, 0.5]))
    np.testing.assert_allclose(gradient, [-1.0, np.log(0.5) / 0.5], rtol=1e-15)


@pytest.mark.parametrize("backend", BACKENDS)
def test_rgamma_is_differentiable_at_its_zeros(backend):
    # 1/Γ is entire: at x = -n, where it is 0 and ψ has a pole, its derivative is (-1)^n n!
    x = np.array([0.0, -1.0, -2.0, -3.0, 1.5])
    gradient = cr.grad(lambda x: np.sum(scipy.special.rgamma(x)), backend=backend)(x)
    slope = -scipy.special.rgamma(1.5) * scipy.special.psi(1.5)
    np.testing.assert_allclose(gradient, [1.0, -1.0, 2.0, -6.0, slope], rtol=1e-14)
    numeric = numerical_gradient(lambda x: np.sum(scipy.special.rgamma(x)), (x,), 0, step=1e-6)
    assert relative_error(gradient, numeric) < 1e-7
