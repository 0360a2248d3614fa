"""``scipy.integrate``'s rules on sampled values, on traced arrays: ``trapezoid`` (NumPy's),
``cumulative_trapezoid`` and ``simpson``.

``cumulative_trapezoid`` is SciPy's running sum of trapezoids, written with the same NumPy calls (the
samples and the abscissas may both be traced). ``simpson`` is linear in the samples for fixed
abscissas: its weights are SciPy's own ``simpson`` of the unit vectors (Cartwright's correction of
the last interval for an even count included), and the rule is their contraction with the samples.
Traced abscissas in ``simpson`` are refused: the weights would depend on them.
"""

from __future__ import annotations

import numpy as np
import scipy.integrate

from chainrule.errors import ShapeError
from chainrule.frontends.dispatch import here, implements, unsupported
from chainrule.frontends.numpy_api import axes_of, ndim_of, shape_of
from chainrule.frontends.numpy_special import traceable
from chainrule.frontends.tracer import is_traced

_SIMPSON = scipy.integrate.simpson  # SciPy's own, before it is replaced below


@implements(traceable(scipy.integrate, "trapezoid", "scipy.integrate.trapezoid"))
def _trapezoid(y, x=None, dx=1.0, axis=-1):
    return np.trapezoid(y, x=x, dx=dx, axis=axis)


@implements(traceable(scipy.integrate, "cumulative_trapezoid", "scipy.integrate.cumulative_trapezoid"))
def _cumulative_trapezoid(y, x=None, dx=1.0, axis=-1, initial=None):
    axis = axes_of(axis, ndim_of(y))[0]
    if shape_of(y)[axis] == 0:
        raise ShapeError("At least one point is required along `axis`.", here())
    if x is None:
        width = dx
    elif ndim_of(x) == 1:
        width = np.reshape(np.diff(x), (-1,) + (1,) * (ndim_of(y) - axis - 1))
    else:
        width = np.diff(x, axis=axis)
    before = (slice(None),) * axis
    later, earlier = y[before + (slice(1, None),)], y[before + (slice(None, -1),)]
    running = np.cumsum(width * (later + earlier) / 2.0, axis=axis)
    if initial is None:
        return running
    if initial != 0:
        raise ShapeError("`initial` must be `None` or `0`.", here())
    start = list(shape_of(running))
    start[axis] = 1
    return np.concatenate([np.zeros(start), running], axis=axis)


@implements(traceable(scipy.integrate, "simpson", "scipy.integrate.simpson"))
def _simpson(y, x=None, *, dx=1.0, axis=-1):
    if is_traced(x):
        unsupported("scipy.integrate.simpson with traced abscissas x")
    axis = axes_of(axis, ndim_of(y))[0]
    count = shape_of(y)[axis]
    if x is not None and np.ndim(x) != 1:
        unsupported("scipy.integrate.simpson with an x of more than one dimension")
    weights = _SIMPSON(np.eye(count), x=x, dx=dx, axis=-1)  # row i: the rule applied to the i-th unit vector
    return np.tensordot(np.moveaxis(y, axis, -1), weights, axes=1)
