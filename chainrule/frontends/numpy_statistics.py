"""What NumPy's order statistics, NaN-ignoring reductions and moments do to traced values.

Median and quantiles read the values a sort puts at a few ranks: of short lines, a sorted array
(``np.sort``'s gradient goes back through the permutation); of long ones, ``order_statistics``
(NumPy's partition, linear time, as np.median by hand; its gradient goes to the stable sort's
positions of those ranks), so the gradient reaches the elements that land at the interpolated
positions; NaN-ignoring
reductions replace NaN with the reduction's identity by ``np.where``; ``np.average``,
``np.cov`` and ``np.corrcoef`` are sums and products, as their NumPy definitions are.
"""

from __future__ import annotations

import math

import numpy as np

from chainrule.errors import ShapeError, UnsupportedError
from chainrule.frontends.dispatch import here, implements, unsupported
from chainrule.frontends.numpy_api import axes_of, ndim_of, no_extras, shape_of
from chainrule.frontends.tracer import Tracer, operation


def _is_nan(a):
    return a != a


def _float(a):
    return a if a.dtype.kind == "f" else a.astype(np.float64)


# ---- order statistics --------------------------------------------------------------------------


# Lines at least this long are not sorted: NumPy's partition finds the few ranks asked for in
# linear time, as np.median and np.quantile by hand do (shorter ones sort, natively on LLVM too)
SELECT_FROM = 1024


def _lines(a, axis, dtype=None):
    """``a`` as lines along one last axis holding the elements each result reduces (the axes of
    ``axis`` moved to the end and merged), in ``dtype`` (default: floats stay, others become
    float64), and the result's shape with ``keepdims``."""
    ndim = ndim_of(a)
    axes = axes_of(axis, ndim)
    kept = tuple(1 if i in axes else d for i, d in enumerate(shape_of(a)))
    rest = [i for i in range(ndim) if i not in axes]
    moved = np.transpose(a, rest + list(axes)) if axes != tuple(range(ndim - len(axes), ndim)) else a
    lines = np.reshape(moved, tuple(shape_of(a)[i] for i in rest) + (math.prod(shape_of(a)[i] for i in axes),))
    return (_float(lines) if dtype is None else lines.astype(dtype)), kept


class _Ranked:
    """What a sort of each line puts at the ranks asked for (and the last, which is NaN when the
    line holds one): a sort of short lines, the ``order_statistics`` of long ones."""

    def __init__(self, lines, ranks):
        length = shape_of(lines)[-1]
        ranks = tuple(sorted(set(ranks) | {length - 1}))
        if length < SELECT_FROM or not isinstance(lines, Tracer):
            self.values, self.column = np.sort(lines, axis=-1), {r: r for r in ranks}
        else:
            self.values = operation("order_statistics", lines, ranks=ranks)
            self.column = {r: j for j, r in enumerate(ranks)}
        self.last = length - 1

    def at(self, rank):
        return self.values[..., self.column[rank]]

    def through(self, low, high):
        """The values at ranks ``low`` to ``high`` (adjacent), along a last axis."""
        return self.values[..., self.column[low] : self.column[high] + 1]

    def nan_where_any_nan(self, value):
        """NumPy's order statistics are NaN for a line holding a NaN; a sort puts NaN last."""
        return np.where(_is_nan(self.at(self.last)), np.nan, value)


def _shaped(value, kept, keepdims):
    return np.reshape(value, kept) if keepdims else value


@implements(np.median)
def _median(a, axis=None, out=None, overwrite_input=False, keepdims=False):
    no_extras("np.median", out, {})
    lines, kept = _lines(a, axis)
    n = shape_of(lines)[-1]
    if n == 0:
        return _shaped(_of_empty_lines(lines), kept, keepdims)
    ranked = _Ranked(lines, ((n - 1) // 2, n // 2))
    middle = ranked.through((n - 1) // 2, n // 2)  # one element, or the two middle ones
    value = np.mean(middle, axis=-1)
    return _shaped(ranked.nan_where_any_nan(value), kept, keepdims)


def _of_empty_lines(lines):
    """The statistic of lines of no elements: NaN, as NumPy's (which warns "Mean of empty slice")."""
    return np.sum(lines, axis=-1) + np.nan


def _quantile(function, a, q, scale, axis, method, keepdims, out, weights):
    """``function`` (np.quantile, or np.percentile with ``scale`` 100) of ``a`` at ``q``."""
    name = f"np.{function.__name__}"
    no_extras(name, out, {})
    if method != "linear":
        unsupported(f"{name} with method={method!r} (only 'linear')")
    if weights is not None:
        unsupported(f"{name} with weights=")
    if isinstance(q, Tracer):
        raise UnsupportedError(f"{name} with a traced q: the levels must be known while tracing", here())
    levels = np.true_divide(np.asarray(q, dtype=np.float64), scale)
    if levels.size and not (np.all(levels >= 0) and np.all(levels <= 1)):
        raise ShapeError(f"{name}: quantiles must be in the range [0, 1] (percentiles in [0, 100])", here())
    # NumPy's result dtype depends on how q is given (a Python float, a float64 array, ...): ask it
    dtype = function(np.zeros(1, dtype=a.dtype), q).dtype
    q = levels
    lines, kept = _lines(a, axis, dtype)
    n = shape_of(lines)[-1]
    if n == 0:
        values = [_of_empty_lines(lines)] * q.size
    else:
        neighbours = [_neighbours(float(level), n) for level in q.ravel()]
        ranked = _Ranked(lines, [rank for below, above, _ in neighbours for rank in (below, above)])
        values = [_linear_quantile(ranked, *at) for at in neighbours]
    if q.ndim == 0:
        return _shaped(values[0], kept, keepdims)
    if not values:
        unsupported(f"{name} with an empty q")
    return np.reshape(np.stack(values), q.shape + (kept if keepdims else shape_of(lines)[:-1]))


def _neighbours(level, n):
    """NumPy's method "linear" (Hyndman & Fan type 7): the ranks around the virtual index
    level * (n - 1), and how far past the lower one it is."""
    position = level * (n - 1)
    below = min(math.floor(position), n - 1)
    return below, min(below + 1, n - 1), position - below


def _linear_quantile(ranked, below, above, t):
    # the two neighbours interpolated as NumPy's _lerp does (from the nearer end, for t >= 0.5)
    a, b = ranked.at(below), ranked.at(above)
    difference = b - a
    value = b - difference * (1 - t) if t >= 0.5 else a + difference * t
    return ranked.nan_where_any_nan(value)


@implements(np.quantile)
def _quantile_function(
    a, q, axis=None, out=None, overwrite_input=False, method="linear", keepdims=False, *, weights=None
):
    return _quantile(np.quantile, a, q, 1, axis, method, keepdims, out, weights)


@implements(np.percentile)
def _percentile(a, q, axis=None, out=None, overwrite_input=False, method="linear", keepdims=False, *, weights=None):
    return _quantile(np.percentile, a, q, 100, axis, method, keepdims, out, weights)


# ---- NaN-ignoring reductions -------------------------------------------------------------------


@implements(np.nansum)
def _nansum(a, axis=None, dtype=None, out=None, keepdims=False, **unsupported_keywords):
    no_extras("np.nansum", out, unsupported_keywords)
    if a.dtype.kind == "f":
        a = np.where(_is_nan(a), 0, a)
    return np.sum(a, axis=axis, dtype=dtype, keepdims=keepdims)


@implements(np.nanmean)
def _nanmean(a, axis=None, dtype=None, out=None, keepdims=False, **unsupported_keywords):
    no_extras("np.nanmean", out, unsupported_keywords)
    if a.dtype.kind != "f":
        return np.mean(a, axis=axis, dtype=dtype, keepdims=keepdims)
    present = ~_is_nan(a)
    total = np.sum(np.where(present, a, 0), axis=axis, dtype=dtype, keepdims=keepdims)
    return total / np.sum(present.astype(total.dtype), axis=axis, keepdims=keepdims)


def _nan_extremum(name, reduce, fill, a, axis, keepdims):
    if a.dtype.kind != "f":
        return reduce(a, axis=axis, keepdims=keepdims)
    missing = _is_nan(a)
    value = reduce(np.where(missing, fill, a), axis=axis, keepdims=keepdims)
    # a line of NaN only is NaN (NumPy warns "All-NaN slice encountered")
    all_missing = np.min(missing.astype(np.int8), axis=axis, keepdims=keepdims) > 0
    return np.where(all_missing, np.nan, value)


@implements(np.nanmax)
def _nanmax(a, axis=None, out=None, keepdims=False, **unsupported_keywords):
    no_extras("np.nanmax", out, unsupported_keywords)
    return _nan_extremum("np.nanmax", np.max, -np.inf, a, axis, keepdims)


@implements(np.nanmin)
def _nanmin(a, axis=None, out=None, keepdims=False, **unsupported_keywords):
    no_extras("np.nanmin", out, unsupported_keywords)
    return _nan_extremum("np.nanmin", np.min, np.inf, a, axis, keepdims)


@implements(np.ptp)
def _ptp(a, axis=None, out=None, keepdims=False):
    no_extras("np.ptp", out, {})
    return np.max(a, axis=axis, keepdims=keepdims) - np.min(a, axis=axis, keepdims=keepdims)


# ---- weighted means and moments ----------------------------------------------------------------


@implements(np.average)
def _average(a, axis=None, weights=None, returned=False, *, keepdims=False):
    a = _float(a) if isinstance(a, Tracer) else np.asarray(a, dtype=np.result_type(np.asarray(a).dtype, np.float64))
    if weights is None:
        average = np.mean(a, axis=axis, keepdims=keepdims)
        count = math.prod(shape_of(a)) / max(math.prod(shape_of(average)), 1)
        total = np.full(shape_of(average), count, dtype=average.dtype)
    else:
        weights = _weights_like(a, weights, axis)
        total = np.sum(np.broadcast_to(weights, shape_of(a)), axis=axis, keepdims=keepdims)
        average = np.sum(a * weights, axis=axis, keepdims=keepdims) / total
    if returned:
        return average, total if shape_of(total) == shape_of(average) else np.broadcast_to(total, shape_of(average))
    return average


def _weights_like(a, weights, axis):
    """``weights`` of ``a``'s shape, or 1-D along the one ``axis`` (NumPy's two forms), broadcastable."""
    if shape_of(weights) == shape_of(a):
        return weights
    if axis is None:
        raise ShapeError("np.average: axis must be given when the shapes of a and weights differ", here())
    if ndim_of(weights) != 1:
        raise ShapeError("np.average: 1-D weights expected when the shapes of a and weights differ", here())
    axes = axes_of(axis, ndim_of(a))
    if len(axes) != 1 or shape_of(weights)[0] != shape_of(a)[axes[0]]:
        raise ShapeError("np.average: the length of weights differs from that of a along axis", here())
    return np.reshape(weights, tuple(-1 if i == axes[0] else 1 for i in range(ndim_of(a))))


@implements(np.cov)
def _cov(m, y=None, rowvar=True, bias=False, ddof=None, fweights=None, aweights=None, *, dtype=None):
    if fweights is not None or aweights is not None:
        unsupported("np.cov with fweights= or aweights=")
    if ndim_of(m) > 2 or (y is not None and ndim_of(y) > 2):
        raise ShapeError("np.cov: m and y have more than 2 dimensions", here())
    variables = _observations(m, rowvar, dtype)
    if y is not None:
        variables = np.concatenate([variables, _observations(y, rowvar, dtype)], axis=0)
    ddof = (0 if bias else 1) if ddof is None else ddof
    observations = shape_of(variables)[1]
    centered = variables - np.mean(variables, axis=1, keepdims=True)
    covariance = (centered @ centered.T) / float(max(observations - ddof, 0))
    return np.squeeze(covariance)


def _observations(x, rowvar, dtype):
    """``x`` as a 2-D array with one variable per row."""
    # NumPy computes in float64 at least, whatever the input (a float32 m gives a float64 covariance)
    x = np.atleast_2d(x.astype(np.result_type(x.dtype, np.float64) if dtype is None else dtype))
    return x.T if not rowvar and shape_of(x)[0] != 1 else x


@implements(np.corrcoef)
def _corrcoef(x, y=None, rowvar=True, *, dtype=None):
    covariance = _cov(x, y, rowvar, dtype=dtype)
    if ndim_of(covariance) == 0:
        return covariance / covariance
    count = shape_of(covariance)[0]
    diagonal = np.arange(count)
    stddev = np.sqrt(covariance[diagonal, diagonal])
    correlation = covariance / stddev[:, None] / stddev[None, :]
    # as NumPy: rounding can push a coefficient past +-1
    return np.clip(correlation, -1, 1)
