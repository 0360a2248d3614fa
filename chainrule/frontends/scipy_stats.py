"""``scipy.stats`` densities and probability mass functions on traced values.

SciPy's distributions are objects whose methods (``scipy.stats.gamma.logpdf``) run Python that calls
``np.asarray``; ``numpy_special.traceable`` replaces each method on the distribution's class by one
that dispatches when an argument is traced. The normal, Student t and multivariate normal are written
out below; the other distributions are rows of ``DISTRIBUTIONS``: SciPy's own formula of the log
density in the standardized variable (its ``_logpdf`` / ``_logpmf``, with the same special
functions, so the elements are SciPy's), the support, and the parameters' domain. The generic methods
do what SciPy's ``rv_continuous.logpdf`` and ``rv_discrete.logpmf`` do: standardize by loc and scale,
give ``-inf`` off the support (0 for pdf/pmf) and NaN where a parameter is out of its domain. The
formula is evaluated at a point of the support where an element is off it, so the branch not taken
gets a finite value and its zero cotangent stays zero.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.linalg
import scipy.special
import scipy.stats
from scipy.special import betaln, gammaln, xlog1py, xlogy  # ufuncs: they trace as NumPy's do

from chainrule.errors import ShapeError
from chainrule.frontends.dispatch import here, implements, unsupported
from chainrule.frontends.numpy_api import ndim_of, shape_of
from chainrule.frontends.numpy_special import traceable
from chainrule.frontends.tracer import is_traced

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)

# ---- scipy.stats ---------------------------------------------------------------------------------

_NORM = type(scipy.stats.norm)


@implements(traceable(_NORM, "logpdf", "scipy.stats.norm.logpdf"))
def _norm_logpdf(distribution, x, loc=0.0, scale=1.0):
    z = (x - loc) / scale
    return -0.5 * z * z - np.log(scale) - _LOG_SQRT_2PI


@implements(traceable(_NORM, "pdf", "scipy.stats.norm.pdf"))
def _norm_pdf(distribution, x, loc=0.0, scale=1.0):
    return np.exp(_norm_logpdf(distribution, x, loc, scale))


@implements(traceable(_NORM, "cdf", "scipy.stats.norm.cdf"))
def _norm_cdf(distribution, x, loc=0.0, scale=1.0):
    return scipy.special.ndtr((x - loc) / scale)


@implements(traceable(_NORM, "logcdf", "scipy.stats.norm.logcdf"))
def _norm_logcdf(distribution, x, loc=0.0, scale=1.0):
    return scipy.special.log_ndtr((x - loc) / scale)


@implements(traceable(_NORM, "sf", "scipy.stats.norm.sf"))
def _norm_sf(distribution, x, loc=0.0, scale=1.0):
    return scipy.special.ndtr(-((x - loc) / scale))  # SciPy's: the CDF of -z, no 1 - cdf cancellation


@implements(traceable(_NORM, "logsf", "scipy.stats.norm.logsf"))
def _norm_logsf(distribution, x, loc=0.0, scale=1.0):
    return scipy.special.log_ndtr(-((x - loc) / scale))


@implements(traceable(_NORM, "ppf", "scipy.stats.norm.ppf"))
def _norm_ppf(distribution, q, loc=0.0, scale=1.0):
    return scipy.special.ndtri(q) * scale + loc  # SciPy's: the quantile of z, scaled and shifted


@implements(traceable(_NORM, "isf", "scipy.stats.norm.isf"))
def _norm_isf(distribution, q, loc=0.0, scale=1.0):
    return -scipy.special.ndtri(q) * scale + loc  # SciPy's _isf: -ndtri(q), not ndtri(1 - q)


_STUDENT_T = type(scipy.stats.t)


@implements(traceable(_STUDENT_T, "logpdf", "scipy.stats.t.logpdf"))
def _t_logpdf(distribution, x, df, loc=0.0, scale=1.0):
    """log Γ((ν+1)/2) - log Γ(ν/2) - log(νπ)/2 - log σ - (ν+1)/2 · log(1 + z²/ν), z = (x - μ)/σ."""
    z = (x - loc) / scale
    half = 0.5 * (df + 1.0)
    normalizer = scipy.special.gammaln(half) - scipy.special.gammaln(0.5 * df) - 0.5 * np.log(df * math.pi)
    return normalizer - np.log(scale) - half * np.log1p(z * z / df)


@implements(traceable(_STUDENT_T, "pdf", "scipy.stats.t.pdf"))
def _t_pdf(distribution, x, df, loc=0.0, scale=1.0):
    return np.exp(_t_logpdf(distribution, x, df, loc, scale))


@implements(traceable(type(scipy.stats.multivariate_normal), "logpdf", "scipy.stats.multivariate_normal.logpdf"))
def _multivariate_normal_logpdf(distribution, x, mean=None, cov=1, allow_singular=False):
    """-(d log 2π + log det Σ + |L⁻¹(x - μ)|²) / 2 with Σ = L Lᵀ, over x's last axis (as SciPy
    reads it: a 1-D x of a 1-dimensional distribution is a list of points)."""
    dim = _dimension(x, mean, cov)
    if ndim_of(x) == 0 or (ndim_of(x) == 1 and dim == 1):
        x = np.reshape(x, (-1, 1))
    difference = x - (0.0 if mean is None else mean)
    if ndim_of(cov) <= 1:  # a variance, or the diagonal of Σ: no factorization needed
        variances = cov * np.ones(dim) if ndim_of(cov) == 0 else cov
        squared = np.sum(difference * difference / variances, axis=-1)
        log_det = np.sum(np.log(variances)) if ndim_of(cov) == 1 else dim * np.log(cov)
    elif is_traced(cov):  # Σ = L Lᵀ traced: |L⁻¹(x - μ)|² by a triangular solve, log det Σ = 2 Σ log Lᵢᵢ
        if allow_singular:
            unsupported("scipy.stats.multivariate_normal.logpdf with a traced cov and allow_singular=True")
        factor = np.linalg.cholesky(cov)
        columns = np.reshape(difference, (-1, dim)).T
        whitened = scipy.linalg.solve_triangular(factor, columns, lower=True)
        squared = np.reshape(np.sum(whitened * whitened, axis=0), shape_of(difference)[:-1])
        log_det = 2.0 * np.sum(np.log(np.diag(factor)))
    else:
        factor = _cholesky(np.asarray(cov, dtype=np.float64), allow_singular)
        whitened = difference @ np.linalg.inv(factor).T  # a constant: L⁻¹ of the user's Σ
        squared = np.sum(whitened * whitened, axis=-1)
        log_det = 2.0 * float(np.sum(np.log(np.diag(factor))))
    result = -0.5 * (dim * math.log(2.0 * math.pi) + log_det + squared)
    return np.squeeze(result)


@implements(
    traceable(
        type(scipy.stats.multivariate_normal(np.zeros(1))), "logpdf", "scipy.stats.multivariate_normal_frozen.logpdf"
    )
)
def _frozen_multivariate_normal_logpdf(distribution, x):
    return _multivariate_normal_logpdf(None, x, distribution.mean, distribution.cov)


def _dimension(x, mean, cov) -> int:
    if mean is not None and ndim_of(mean) == 1:
        return shape_of(mean)[0]
    if ndim_of(cov) >= 1:
        return shape_of(cov)[0]
    return shape_of(x)[-1] if ndim_of(x) >= 1 else 1


def _cholesky(cov: np.ndarray, allow_singular: bool) -> np.ndarray:
    if cov.ndim != 2 or cov.shape[0] != cov.shape[1]:
        raise ShapeError(f"multivariate_normal cov must be square, got shape {list(cov.shape)}", here())
    try:
        return np.linalg.cholesky(cov)
    except np.linalg.LinAlgError:
        if allow_singular:
            unsupported("scipy.stats.multivariate_normal.logpdf with a singular cov (allow_singular=True)")
        raise ShapeError("multivariate_normal cov is not positive definite", here()) from None


# ---- the distributions given by their log density ------------------------------------------------


@dataclass(frozen=True)
class Distribution:
    """One of SciPy's distributions, as its ``_logpdf``/``_logpmf``, support and ``_argcheck`` say."""

    name: str
    log_density: Callable  # (standardized x, *shapes) -> SciPy's formula, on the support
    support: Callable  # (*shapes) -> (low, high), both ends included as SciPy's support mask does
    valid: Callable  # (*shapes) -> whether the parameters are in their domain (else NaN)
    inside: float  # a point on every support, where the formula is evaluated for points off it
    discrete: bool = False


def _lognorm_log_density(x, s):
    # -log(x)²/(2s²) - log(s x √(2π)), and -inf at x = 0 (the formula at 1 there, so no NaN flows back)
    positive = x != 0
    safe_x = np.where(positive, x, 1.0)
    value = -(np.log(safe_x) ** 2) / (2 * s**2) - np.log(s * safe_x * math.sqrt(2 * math.pi))
    return np.where(positive, value, -np.inf)


_POSITIVE_HALF_LINE = lambda *shapes: (0.0, math.inf)
_ALWAYS = lambda *shapes: True

DISTRIBUTIONS = [
    Distribution(
        "gamma",
        lambda x, a: xlogy(a - 1.0, x) - x - gammaln(a),
        _POSITIVE_HALF_LINE,
        lambda a: a > 0,
        1.0,
    ),
    Distribution(
        "beta",
        lambda x, a, b: xlog1py(b - 1.0, -x) + xlogy(a - 1.0, x) - betaln(a, b),
        lambda a, b: (0.0, 1.0),
        lambda a, b: (a > 0) & (b > 0),
        0.5,
    ),
    Distribution("expon", lambda x: -x, _POSITIVE_HALF_LINE, _ALWAYS, 1.0),
    Distribution(
        "logistic",
        lambda x: -np.abs(x) - 2.0 * np.log1p(np.exp(-np.abs(x))),
        lambda: (-math.inf, math.inf),
        _ALWAYS,
        0.0,
    ),
    Distribution("laplace", lambda x: -np.abs(x) - math.log(2.0), lambda: (-math.inf, math.inf), _ALWAYS, 0.0),
    Distribution("cauchy", lambda x: -math.log(math.pi) - np.log1p(x * x), lambda: (-math.inf, math.inf), _ALWAYS, 0.0),
    Distribution("lognorm", lambda x, s: _lognorm_log_density(x, s), _POSITIVE_HALF_LINE, lambda s: s > 0, 1.0),
    Distribution(
        "poisson",
        lambda k, mu: xlogy(k, mu) - gammaln(k + 1) - mu,
        _POSITIVE_HALF_LINE,
        lambda mu: mu >= 0,
        0.0,
        discrete=True,
    ),
    Distribution(
        "nbinom",
        lambda k, n, p: (gammaln(n + k) - gammaln(k + 1) - gammaln(n) + n * np.log(p)) + xlog1py(k, -p),
        _POSITIVE_HALF_LINE,
        lambda n, p: (n > 0) & (p > 0) & (p <= 1),
        0.0,
        discrete=True,
    ),
    Distribution(
        "binom",
        lambda k, n, p: (gammaln(n + 1) - (gammaln(k + 1) + gammaln(n - k + 1))) + xlogy(k, p) + xlog1py(n - k, -p),
        lambda n, p: (0.0, n),
        lambda n, p: (n >= 0) & (np.floor(n) == n) & (p >= 0) & (p <= 1),
        0.0,
        discrete=True,
    ),
]


def _unless_all(condition, value, fill):
    """``np.where(condition, value, fill)``, or value itself where the condition is a constant that holds
    everywhere (parameters and points known at trace time), so the graph holds no needless select."""
    if not is_traced(condition) and bool(np.all(condition)):
        return value
    return np.where(condition, value, fill)


def _log_density(entry: Distribution, distribution, x, args, kwds):
    """SciPy's ``logpdf``/``logpmf`` of ``entry`` at x: standardized, -inf off the support, NaN where
    a parameter is out of its domain or x is NaN."""
    if entry.discrete:
        shapes, loc, _ = distribution._parse_args(*args, **kwds)
        y, scale = x - loc, 1.0
    else:
        shapes, loc, scale = distribution._parse_args(*args, **kwds)
        y = (x - loc) / scale
    low, high = entry.support(*shapes)
    on_support = (y >= low) & (y <= high)
    if entry.discrete:
        on_support = on_support & (np.floor(y) == y)
    value = entry.log_density(_unless_all(on_support, y, entry.inside), *shapes)
    if not entry.discrete:
        value = value - np.log(scale)
    value = _unless_all(on_support, value, -np.inf)
    valid = entry.valid(*shapes) & (scale > 0) & ~np.isnan(y)
    return _unless_all(valid, value, np.nan)


def _register(entry: Distribution) -> None:
    owner = type(getattr(scipy.stats, entry.name))
    log_name, name = ("logpmf", "pmf") if entry.discrete else ("logpdf", "pdf")

    def log_density(distribution, x, *args, **kwds):
        return _log_density(entry, distribution, x, args, kwds)

    def density(distribution, x, *args, **kwds):
        return np.exp(_log_density(entry, distribution, x, args, kwds))

    implements(traceable(owner, log_name, f"scipy.stats.{entry.name}.{log_name}"))(log_density)
    implements(traceable(owner, name, f"scipy.stats.{entry.name}.{name}"))(density)


for _entry in DISTRIBUTIONS:
    _register(_entry)


@implements(traceable(scipy.stats, "entropy", "scipy.stats.entropy"))
def _entropy(pk, qk=None, base=None, axis=0, *, keepdims=False, nan_policy="propagate"):
    """Shannon entropy of pk, or the relative entropy of pk to qk, each normalized along ``axis``
    first, as SciPy does (``axis=None``: the flattened arrays)."""
    if nan_policy != "propagate":
        unsupported(f"scipy.stats.entropy with nan_policy={nan_policy!r}")
    if axis is None:
        pk, qk, axis = np.ravel(pk), None if qk is None else np.ravel(qk), 0
    pk = pk / np.sum(pk, axis=axis, keepdims=True)
    if qk is None:
        terms = scipy.special.entr(pk)
    else:
        pk, qk = np.broadcast_arrays(pk, qk)
        terms = scipy.special.rel_entr(pk, qk / np.sum(qk, axis=axis, keepdims=True))
    total = np.sum(terms, axis=axis, keepdims=keepdims)
    return total if base is None else total / np.log(base)


_DIRICHLET = type(scipy.stats.dirichlet)


@implements(traceable(_DIRICHLET, "logpdf", "scipy.stats.dirichlet.logpdf"))
def _dirichlet_logpdf(distribution, x, alpha):
    """Σ (αᵢ - 1) log xᵢ - log B(α), the components along x's first axis (SciPy's layout); a point
    given without its last component gets ``1 - Σ x`` there. SciPy's checks of the values (on the
    simplex, in [0, 1]) need numbers: they are not made on traced points."""
    if ndim_of(alpha) != 1:
        raise ShapeError("Parameter vector 'a' must be one dimensional", here())
    components = shape_of(alpha)[0]
    if shape_of(x)[0] == components - 1:
        x = np.concatenate([x, np.expand_dims(1 - np.sum(x, axis=0), 0)], axis=0)
    elif shape_of(x)[0] != components:
        raise ShapeError(
            "Vector 'x' must have either the same number of entries as, or one entry fewer than, "
            f"parameter vector 'a', but alpha.shape = {shape_of(alpha)} and x.shape = {shape_of(x)}.",
            here(),
        )
    log_beta = np.sum(gammaln(alpha)) - gammaln(np.sum(alpha))
    exponents = np.reshape(alpha - 1, (components,) + (1,) * (ndim_of(x) - 1))
    return np.squeeze(-log_beta + np.sum(xlogy(exponents, x), axis=0))


@implements(traceable(_DIRICHLET, "pdf", "scipy.stats.dirichlet.pdf"))
def _dirichlet_pdf(distribution, x, alpha):
    return np.exp(_dirichlet_logpdf(distribution, x, alpha))
