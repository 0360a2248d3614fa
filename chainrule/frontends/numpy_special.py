"""NumPy's and SciPy's special functions that are compositions of primitives, on traced values.

NumPy ufuncs and array functions (``np.sinc``, ``np.heaviside``, ``np.round``, ...) reach their
handlers through NumPy's protocols. SciPy functions written in Python (``scipy.special.logsumexp``,
``scipy.stats.norm.logpdf``) convert their arguments with ``np.asarray`` first, which a traced
value cannot be. ``traceable`` therefore replaces each of them, once, when chainrule is imported,
by a function that calls the original unless an argument is traced, and its handler if one is, as
NumPy's ``__array_function__`` does for its own functions (``scipy_stats`` uses it for the
distributions' methods). (A name imported from SciPy
before chainrule was, ``from scipy.special import logsumexp``, still names the original.)

Where a branch is chosen with ``np.where``, the branch not taken gets operands at which it is
finite (``sinc`` at 0, ``log_ndtr``'s two tails), so its zero cotangent stays zero rather than
``0 * inf = NaN``.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import scipy.special
import scipy.stats  # first, so that SciPy's own modules bind the originals of the functions replaced here

from chainrule.errors import ShapeError
from chainrule.frontends.dispatch import call_function, here, implements, unsupported
from chainrule.frontends.numpy_api import axes_of, ndim_of, shape_of
from chainrule.frontends.rebinding import record_replacement
from chainrule.frontends.tracer import is_traced, operation, stop_gradient

_LN2 = math.log(2.0)
_SQRT1_2 = math.sqrt(0.5)  # SciPy's ndtr multiplies by it (the rounding of its argument counts far out)


def traceable(owner, attribute: str, public_name: str):
    """Replace ``owner.attribute`` (a SciPy function or method in Python) by one that dispatches to
    the handler registered for it when an argument is traced; returns the replacement, which is
    what ``@implements`` registers. ``public_name`` is how users spell it (``"scipy.special.logsumexp"``)."""
    original = getattr(owner, attribute)

    @functools.wraps(original)
    def dispatching(*args, **kwargs):
        if any(is_traced(a) for a in args) or any(is_traced(v) for v in kwargs.values()):
            return call_function(dispatching, args, kwargs)
        return original(*args, **kwargs)

    module, _, name = public_name.rpartition(".")
    dispatching.__module__, dispatching.__name__ = module, name
    setattr(owner, attribute, dispatching)
    record_replacement(original, dispatching)
    return dispatching


# ---- NumPy ---------------------------------------------------------------------------------------


@implements(np.sinc)
def _sinc(x):
    # sin(pi x) / (pi x), 1 at 0; sinc'(0) = 0 (the second derivative at 0 comes out 0, not -pi**2/3)
    at_zero = x == 0
    angle = np.pi * np.where(at_zero, 1.0, x)
    return np.where(at_zero, 1.0, np.sin(angle) / angle)


@implements(np.deg2rad, np.radians)
def _deg2rad(x):
    return x * (np.pi / 180.0)  # NumPy's own constant, so the elements are NumPy's


@implements(np.rad2deg, np.degrees)
def _rad2deg(x):
    return x * (180.0 / np.pi)


@implements(np.logaddexp2)
def _logaddexp2(a, b):
    # log2(2**a + 2**b) = larger + log2(1 + 2**(smaller - larger)), as np.logaddexp's handler;
    # two equal infinities are that infinity (their difference would be NaN)
    difference = np.where((a == b) & (np.abs(a) == np.inf), 0.0, b - a)
    return np.where(
        a > b,
        a + np.log1p(np.exp2(difference)) / _LN2,
        b + np.log1p(np.exp2(-difference)) / _LN2,
    )


@implements(np.heaviside)
def _heaviside(x1, x2):
    # 0 below 0, 1 above, x2 at 0, NaN at NaN (x1 * 0 carries it); no gradient reaches x1
    return np.where(x1 < 0, 0.0, np.where(x1 > 0, 1.0, x1 * 0 + x2))


@implements(np.nan_to_num)
def _nan_to_num(x, copy=True, nan=0.0, posinf=None, neginf=None):
    if np.dtype(x.dtype).kind != "f":
        return x
    largest = float(np.finfo(x.dtype).max)
    x = np.where(x != x, nan, x)
    x = np.where(x == np.inf, largest if posinf is None else posinf, x)
    return np.where(x == -np.inf, -largest if neginf is None else neginf, x)


@implements(np.round, np.around)
def _round(a, decimals=0, out=None):
    if out is not None:
        unsupported("np.round(..., out=...)")
    if np.dtype(a.dtype).kind in "biu" and decimals >= 0:
        return a  # NumPy leaves integers as they are
    if decimals == 0:
        return np.rint(a)
    scale = 10.0 ** abs(decimals)  # NumPy multiplies (divides), rounds and divides (multiplies) back
    return np.rint(a * scale) / scale if decimals > 0 else np.rint(a / scale) * scale


@implements(np.fix)
def _fix(x, out=None):
    if out is not None:
        unsupported("np.fix(..., out=...)")
    return np.trunc(x)


# ---- scipy.special -------------------------------------------------------------------------------


def _as(numpy_ufunc):
    def handler(x):
        return numpy_ufunc(x)

    return handler


# scipy.special's own versions of NumPy's ufuncs: the NumPy function's primitive
for _scipy_ufunc, _numpy_ufunc in [
    (scipy.special.expm1, np.expm1),
    (scipy.special.log1p, np.log1p),
    (scipy.special.exp2, np.exp2),
    (scipy.special.cbrt, np.cbrt),
]:
    implements(_scipy_ufunc)(_as(_numpy_ufunc))


@implements(scipy.special.log_expit)
def _log_expit(x):
    return -np.logaddexp(0.0, -x)  # log(1 / (1 + exp(-x))) = -softplus(-x)


@implements(traceable(scipy.special, "zeta", "scipy.special.zeta"))
def _zeta(x, q=None, out=None):
    if q is None or out is not None:
        unsupported("scipy.special.zeta without q (Riemann's zeta) or with out=")
    return operation("zeta", x, q)


@implements(traceable(scipy.special, "polygamma", "scipy.special.polygamma"))
def _polygamma(n, x):
    """ψ⁽ⁿ⁾(x) = (-1)ⁿ⁺¹ n! ζ(n + 1, x) for n >= 1 and digamma for n = 0, as SciPy computes it."""
    if is_traced(n) or np.ndim(n) != 0 or int(n) != n or n < 0:
        unsupported("scipy.special.polygamma with an order n that is not one non-negative integer constant")
    if n == 0:
        return scipy.special.psi(x)
    return (-1.0) ** (n + 1) * math.factorial(int(n)) * scipy.special.zeta(float(n + 1), x)


def _finite_or_zero(m):
    return np.where(np.abs(m) < np.inf, m, 0.0)


@implements(traceable(scipy.special, "logsumexp", "scipy.special.logsumexp"))
def _logsumexp(a, axis=None, b=None, keepdims=False, return_sign=False):
    """log(sum(b * exp(a))) as m + log(sum(b * exp(a - m))), m the (finite) max: never overflows."""
    if return_sign:
        unsupported("scipy.special.logsumexp(..., return_sign=True)")
    if b is not None:  # axis counts the axes a and b broadcast to
        a = np.broadcast_to(a, np.broadcast_shapes(shape_of(a), shape_of(b)))
    axes = axes_of(axis, ndim_of(a))
    shift = stop_gradient(_finite_or_zero(np.max(a, axis=axes, keepdims=True)))
    terms = np.exp(a - shift) if b is None else b * np.exp(a - shift)
    result = np.log(np.sum(terms, axis=axes, keepdims=True)) + shift
    return result if keepdims else np.squeeze(result, axis=axes)


@implements(traceable(scipy.special, "softmax", "scipy.special.softmax"))
def _softmax(x, axis=None):
    axes = axes_of(axis, ndim_of(x))
    exps = np.exp(x - stop_gradient(_finite_or_zero(np.max(x, axis=axes, keepdims=True))))
    return exps / np.sum(exps, axis=axes, keepdims=True)


@implements(traceable(scipy.special, "log_softmax", "scipy.special.log_softmax"))
def _log_softmax(x, axis=None):
    axes = axes_of(axis, ndim_of(x))
    shifted = x - stop_gradient(_finite_or_zero(np.max(x, axis=axes, keepdims=True)))
    return shifted - np.log(np.sum(np.exp(shifted), axis=axes, keepdims=True))


@implements(scipy.special.ndtr)
def _ndtr(z):
    return 0.5 * scipy.special.erfc(-z * _SQRT1_2)


@implements(scipy.special.log_ndtr)
def _log_ndtr(z):
    # below -1: log(erfc(-z/√2) / 2) through erfcx, which does not underflow (erfc does past z = -38);
    # above: log1p of the small upper tail
    lower = z < -1.0
    low = np.where(lower, z, -1.0)
    high = np.where(lower, -1.0, z)
    low_tail = np.log(0.5 * scipy.special.erfcx(-low * _SQRT1_2)) - 0.5 * low * low
    return np.where(lower, low_tail, np.log1p(-0.5 * scipy.special.erfc(high * _SQRT1_2)))


# ---- scipy.special's convex-analysis functions ---------------------------------------------------
# SciPy's element rules, branch by branch (scipy/special/_convex_analysis.pxd); where a branch is not
# taken its operands are replaced by 1, so its zero cotangent meets no log(0) or 0/0.


def _either_nan(a, b):
    return np.isnan(a) | np.isnan(b)


@implements(scipy.special.rel_entr)
def _rel_entr(x, y):
    # x log(x/y) for x, y > 0; 0 for x = 0 <= y; inf otherwise; NaN with a NaN operand
    inside = (x > 0) & (y > 0)
    safe_x, safe_y = np.where(inside, x, 1.0), np.where(inside, y, 1.0)
    edge = np.where((x == 0) & (y >= 0), 0.0, np.inf)
    return np.where(_either_nan(x, y), np.nan, np.where(inside, safe_x * np.log(safe_x / safe_y), edge))


@implements(scipy.special.kl_div)
def _kl_div(x, y):
    # x log(x/y) - x + y for x, y > 0; y for x = 0 <= y; inf otherwise
    inside = (x > 0) & (y > 0)
    safe_x, safe_y = np.where(inside, x, 1.0), np.where(inside, y, 1.0)
    edge = np.where((x == 0) & (y >= 0), y, np.inf)
    value = safe_x * np.log(safe_x / safe_y) - safe_x + safe_y
    return np.where(_either_nan(x, y), np.nan, np.where(inside, value, edge))


@implements(scipy.special.huber)
def _huber(delta, r):
    # inf for delta < 0 (whatever r), r²/2 inside |r| <= delta, delta (|r| - delta/2) outside
    size = np.abs(r)
    return np.where(delta < 0, np.inf, np.where(size <= delta, 0.5 * r * r, delta * (size - 0.5 * delta)))


@implements(scipy.special.pseudo_huber)
def _pseudo_huber(delta, r):
    # inf for delta < 0; 0 for delta = 0 or r = 0 (whatever the other); else delta² (sqrt(1 + (r/delta)²) - 1),
    # as SciPy writes it: delta² expm1(log1p((r/delta)²) / 2)
    flat = (delta == 0) | (r == 0)
    smooth = ~flat & ~(delta < 0)
    safe_delta = np.where(smooth, delta, 1.0)
    ratio = r / safe_delta
    value = safe_delta * safe_delta * np.expm1(0.5 * np.log1p(ratio * ratio))
    return np.where(delta < 0, np.inf, np.where(flat, 0.0, value))


@implements(traceable(scipy.special, "multigammaln", "scipy.special.multigammaln"))
def _multigammaln(a, d):
    # log Γ_d(a) = d(d-1)/4 log π + Σ_{j<d} gammaln(a - j/2), SciPy's sum in its order
    if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1:
        raise ShapeError("d should be a positive integer (dimension)", here())
    terms = np.stack([scipy.special.gammaln(a - j / 2.0) for j in range(d)])
    return (d * (d - 1) * 0.25) * np.log(np.pi) + np.sum(terms, axis=0)
