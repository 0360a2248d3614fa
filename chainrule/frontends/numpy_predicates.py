"""Truth tests and piecewise polynomials written with traced primitives: ``np.all``, ``np.any``,
``np.isfinite``, ``np.isnan``, ``np.isinf`` (boolean results, no gradient), ``np.polyval``
(Horner's rule) and ``np.interp`` (a gather between the two neighbouring points)."""

from __future__ import annotations

from typing import Any

import numpy as np

from chainrule.errors import UnsupportedError
from chainrule.frontends.dispatch import here, implements
from chainrule.frontends.numpy_api import no_extras


@implements(np.all)
def _all(a: Any, axis: Any = None, out: Any = None, keepdims: bool = False, *, where: Any = None) -> Any:
    no_extras("np.all", out, {"where": where})
    return np.sum(np.logical_not(a), axis=axis, keepdims=keepdims) == 0


@implements(np.any)
def _any(a: Any, axis: Any = None, out: Any = None, keepdims: bool = False, *, where: Any = None) -> Any:
    no_extras("np.any", out, {"where": where})
    return np.sum(np.not_equal(a, 0), axis=axis, keepdims=keepdims) > 0


@implements(np.isnan)
def _isnan(x: Any, /, out: Any = None, **kwargs: Any) -> Any:
    no_extras("np.isnan", out, kwargs)
    return np.not_equal(x, x)  # NaN alone differs from itself


@implements(np.isfinite)
def _isfinite(x: Any, /, out: Any = None, **kwargs: Any) -> Any:
    no_extras("np.isfinite", out, kwargs)
    return np.less(np.absolute(x), np.inf)  # False for ±inf, and for NaN (every comparison is)


@implements(np.isinf)
def _isinf(x: Any, /, out: Any = None, **kwargs: Any) -> Any:
    no_extras("np.isinf", out, kwargs)
    return np.equal(np.absolute(x), np.inf)


@implements(np.polyval)
def _polyval(p: Any, x: Any) -> Any:
    """Horner's rule, as NumPy computes it: ``((p0 x + p1) x + p2) ...``."""
    if np.ndim(p) != 1:
        raise UnsupportedError("np.polyval needs a 1-D array of coefficients", here())
    result = np.zeros_like(x) if not hasattr(x, "shape") else x * 0
    for index in range(np.shape(p)[0]):
        result = result * x + p[index]
    return result


@implements(np.interp)
def _interp(x: Any, xp: Any, fp: Any, left: Any = None, right: Any = None, period: Any = None) -> Any:
    """Linear interpolation between the two points of ``xp`` around each ``x`` (``xp`` increasing,
    as NumPy requires), ``fp[0]``/``fp[-1]`` (or ``left``/``right``) outside."""
    if period is not None:
        raise UnsupportedError("np.interp with period= is not supported", here())
    if np.ndim(xp) != 1 or np.ndim(fp) != 1 or np.shape(xp)[0] < 2:
        raise UnsupportedError("np.interp needs 1-D xp and fp with at least two points", here())
    n = np.shape(xp)[0]
    upper = np.clip(np.searchsorted(xp, x, side="right"), 1, n - 1)
    lower = upper - 1
    # take_along_axis, not xp[lower]: xp may be a NumPy array, which a traced index cannot index
    # (and np.take dispatches on its array alone)
    flat_lower, flat_upper = np.reshape(lower, (-1,)), np.reshape(upper, (-1,))
    x0, x1, f0, f1 = (
        np.reshape(np.take_along_axis(points, index, axis=0), np.shape(x))
        for points in (xp, fp)
        for index in (flat_lower, flat_upper)
    )
    inside = f0 + (x - x0) * ((f1 - f0) / (x1 - x0))
    below = fp[0] if left is None else left
    above = fp[-1] if right is None else right
    return np.where(x < xp[0], below, np.where(x > xp[-1], above, inside))
