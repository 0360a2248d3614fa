"""Choosing, counting and small numerical helpers of tutorial programs, written with NumPy functions
traced elsewhere:

- ``np.select`` and ``np.piecewise`` are nested ``np.where``s. ``np.piecewise`` evaluates each
  function on the whole array (NumPy evaluates it on the selected elements only, a data-dependent
  shape): a function undefined outside its piece gives NaN or inf there, which the ``np.where``
  discards from the value but not from the gradient, as with ``np.where`` itself;
- ``np.count_nonzero`` sums ``a != 0``; ``np.bincount`` of constant integers with traced
  ``weights`` is a one-hot matrix times the weights; ``np.triu_indices_from``,
  ``np.tril_indices_from``, ``np.diag_indices_from`` need only the shape;
- ``np.fmax``/``np.fmin`` are ``np.maximum``/``np.minimum`` with a NaN operand giving the other;
- ``np.gradient`` (scalar spacings; NumPy's central differences inside, one-sided at the ends),
  ``np.trapezoid``, ``np.unwrap`` (its corrections are piecewise constant), ``np.ediff1d``, ``np.logaddexp.reduce`` (logsumexp), ``np.nanvar``/``np.nanstd``,
  ``np.linalg.cond`` (2-norm: the ratio of extreme singular values; other orders
  ``norm(x) norm(inv(x))``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.special

from chainrule.errors import UnsupportedError
from chainrule.frontends.dispatch import here, implements
from chainrule.frontends.numpy_api import axes_of, ndim_of, no_extras, shape_of


@implements(np.select)
def _select(condlist: Any, choicelist: Any, default: Any = 0) -> Any:
    """The first true condition's choice (NumPy's order: the last ``np.where`` is the first condition)."""
    if len(condlist) != len(choicelist):
        raise ValueError("list of cases must be same length as list of conditions")
    result = default
    for condition, choice in zip(reversed(list(condlist)), reversed(list(choicelist))):
        result = np.where(condition, choice, result)
    return result


@implements(np.piecewise)
def _piecewise(x: Any, condlist: Any, funclist: Any, *args: Any, **kw: Any) -> Any:
    if not isinstance(condlist, (list, tuple)) or (ndim_of(condlist[0]) == 0 and ndim_of(x) > 0):
        condlist = [condlist]
    conditions: list[Any] = [np.broadcast_to(condition, shape_of(x)) for condition in condlist]
    if len(funclist) == len(conditions) + 1:  # the last function: where no condition holds
        otherwise = np.logical_not(np.any(np.stack(conditions), axis=0)) if conditions else True
        conditions.append(otherwise)
    elif len(funclist) != len(conditions):
        raise ValueError(
            f"with {len(conditions)} condition(s), either {len(conditions)} or "
            f"{len(conditions) + 1} functions are expected"
        )
    result = np.zeros_like(x)
    for condition, function in zip(conditions, funclist):
        piece = function(x, *args, **kw) if callable(function) else function
        result = np.where(condition, piece, result)
    return result.astype(x.dtype)


@implements(np.count_nonzero)
def _count_nonzero(a: Any, axis: Any = None, *, keepdims: bool = False) -> Any:
    return np.sum(np.not_equal(a, 0), axis=axis, keepdims=keepdims, dtype=np.int64)


@implements(np.bincount)
def _bincount(x: Any, weights: Any = None, minlength: int = 0) -> Any:
    if not isinstance(x, np.ndarray) and not isinstance(x, (list, tuple)):
        raise UnsupportedError(
            "np.bincount of traced integers: how many bins there are depends on the data; the integers "
            "must be constant (traced weights are fine)",
            here(),
        )
    x = np.asarray(x)
    counts = np.bincount(x, minlength=minlength)  # NumPy's checks (1-D, non-negative) and length
    if weights is None:
        return counts
    one_hot = np.equal(np.arange(counts.shape[0])[:, None], x[None, :]).astype(np.float64)
    return one_hot @ (weights + 0.0)


@implements(np.triu_indices_from)
def _triu_indices_from(arr: Any, k: int = 0) -> Any:
    if ndim_of(arr) != 2:
        raise ValueError("input array must be 2-d")
    return np.triu_indices(shape_of(arr)[-2], k=k, m=shape_of(arr)[-1])


@implements(np.tril_indices_from)
def _tril_indices_from(arr: Any, k: int = 0) -> Any:
    if ndim_of(arr) != 2:
        raise ValueError("input array must be 2-d")
    return np.tril_indices(shape_of(arr)[-2], k=k, m=shape_of(arr)[-1])


@implements(np.diag_indices_from)
def _diag_indices_from(arr: Any) -> Any:
    shape = shape_of(arr)
    if len(shape) < 2:
        raise ValueError("input array must be at least 2-d")
    if any(d != shape[0] for d in shape):
        raise ValueError("All dimensions of input must be of equal length")
    return np.diag_indices(shape[0], len(shape))


def _nan_preferring(extremum: Any, name: str):
    def nan_preferring(a: Any, b: Any, /, **kwargs: Any) -> Any:
        no_extras(f"np.{name}", kwargs.pop("out", None), {})
        both = extremum(a, b, **kwargs)
        return np.where(np.isnan(b), a, np.where(np.isnan(a), b, both))

    return nan_preferring


implements(np.fmax)(_nan_preferring(np.maximum, "fmax"))
implements(np.fmin)(_nan_preferring(np.minimum, "fmin"))


@implements(np.trapezoid)
def _trapezoid(y: Any, x: Any = None, dx: float = 1.0, axis: int = -1) -> Any:
    axis = axes_of(axis, ndim_of(y))[0]
    before = (slice(None),) * axis
    later, earlier = y[before + (slice(1, None),)], y[before + (slice(None, -1),)]
    if x is None:
        width: Any = dx
    elif ndim_of(x) == 1:  # the spacings along the axis, for every line
        width = np.reshape(np.diff(x), (-1,) + (1,) * (ndim_of(y) - axis - 1))
    else:  # an x of y's shape: its own spacings along the axis
        width = np.diff(x, axis=axis)
    return np.sum(width * (later + earlier) / 2.0, axis=axis)


@implements(np.unwrap)
def _unwrap(p: Any, discont: Any = None, axis: int = -1, *, period: float = 2 * np.pi) -> Any:
    # NumPy's: each jump between neighbours larger than discont is moved by a multiple of period into
    # [-period/2, period/2], and the corrections accumulate; they are piecewise constant, so the
    # gradient passes as through the identity
    axis = axes_of(axis, ndim_of(p))[0]
    before = (slice(None),) * axis
    jumps = np.diff(p, axis=axis)
    high = period / 2
    wrapped = np.mod(jumps + high, period) - high
    wrapped = np.where((wrapped == -high) & (jumps > 0), high, wrapped)  # a jump of exactly +period/2 keeps its sign
    correction = np.where(np.abs(jumps) < (high if discont is None else discont), 0.0, wrapped - jumps)
    rest = p[before + (slice(1, None),)] + np.cumsum(correction, axis=axis)
    return np.concatenate([p[before + (slice(0, 1),)], rest], axis=axis)


@implements(np.ediff1d)
def _ediff1d(ary: Any, to_end: Any = None, to_begin: Any = None) -> Any:
    flat = np.ravel(ary)
    parts = [np.ravel(to_begin)] if to_begin is not None else []
    parts.append(flat[1:] - flat[:-1])
    if to_end is not None:
        parts.append(np.ravel(to_end))
    return np.concatenate(parts) if len(parts) > 1 else parts[0]


@implements(np.logaddexp.reduce)
def _logaddexp_reduce(a: Any, axis: Any = 0, dtype: Any = None, out: Any = None, keepdims: bool = False) -> Any:
    no_extras("np.logaddexp.reduce", out, {"dtype": dtype})
    return scipy.special.logsumexp(a, axis=axis, keepdims=keepdims)


@implements(np.nanvar)
def _nanvar(
    a: Any,
    axis: Any = None,
    dtype: Any = None,
    out: Any = None,
    ddof: int = 0,
    keepdims: bool = False,
    **unsupported_keywords: Any,
) -> Any:
    no_extras("np.nanvar", out, unsupported_keywords)
    present = np.logical_not(np.isnan(a))
    centered = np.where(present, a - np.nanmean(a, axis=axis, dtype=dtype, keepdims=True), 0.0)
    count = np.sum(present, axis=axis, keepdims=keepdims)
    return np.sum(centered * centered, axis=axis, keepdims=keepdims) / (count - ddof)


@implements(np.nanstd)
def _nanstd(
    a: Any,
    axis: Any = None,
    dtype: Any = None,
    out: Any = None,
    ddof: int = 0,
    keepdims: bool = False,
    **unsupported_keywords: Any,
) -> Any:
    return np.sqrt(_nanvar(a, axis, dtype, out, ddof, keepdims, **unsupported_keywords))


@implements(np.linalg.cond)
def _cond(x: Any, p: Any = None) -> Any:
    if p is None or p in (2, -2):
        s = np.linalg.svd(x, compute_uv=False)
        return s[..., -1] / s[..., 0] if p == -2 else s[..., 0] / s[..., -1]
    return np.linalg.norm(x, p, axis=(-2, -1)) * np.linalg.norm(np.linalg.inv(x), p, axis=(-2, -1))


def _gradient_along(f: Any, axis: int, spacing: float, edge_order: int) -> Any:
    """NumPy's second-order central differences inside, first- or second-order one-sided at the ends."""
    n = shape_of(f)[axis]
    if n < edge_order + 1:
        raise ValueError(
            "Shape of array too small to calculate a numerical gradient, at least (edge_order + 1) elements are required."
        )

    def at(start: Any, stop: Any = None) -> Any:
        index = slice(start, stop) if stop is not None or start is None else slice(start, start + 1 or None)
        return f[(slice(None),) * axis + (index,)]

    inside = (at(2, n) - at(0, n - 2)) / (2.0 * spacing)
    if edge_order == 1:
        first, last = (at(1) - at(0)) / spacing, (at(-1) - at(-2)) / spacing
    else:
        first = (-3.0 * at(0) + 4.0 * at(1) - at(2)) / (2.0 * spacing)
        last = (3.0 * at(-1) - 4.0 * at(-2) + at(-3)) / (2.0 * spacing)
    return np.concatenate([first, inside, last], axis=axis)


@implements(np.gradient)
def _gradient(f: Any, *varargs: Any, axis: Any = None, edge_order: int = 1) -> Any:
    axes = axes_of(axis, ndim_of(f))
    if (len(varargs) > 1 and len(varargs) != len(axes)) or any(np.ndim(v) != 0 for v in varargs):
        raise UnsupportedError(
            "np.gradient on traced values takes one scalar spacing per axis (coordinate arrays are not supported)",
            here(),
        )
    if edge_order not in (1, 2):
        raise ValueError("'edge_order' greater than 2 not supported")
    spacings = list(varargs) * len(axes) if len(varargs) == 1 else list(varargs) or [1.0] * len(axes)
    f = f if f.dtype.kind == "f" else f.astype(np.float64)
    results = tuple(_gradient_along(f, a, float(h), edge_order) for a, h in zip(axes, spacings))
    return results[0] if len(results) == 1 else results
