"""``scipy.ndimage``'s linear filters on traced arrays: ``correlate``/``convolve`` (N-d weights),
``correlate1d``/``convolve1d``, ``gaussian_filter``/``gaussian_filter1d`` and
``uniform_filter``/``uniform_filter1d``.

Each is a correlation: the input extended past its edges as the mode says (SciPy's ``reflect`` is
``np.pad``'s ``symmetric``, ``mirror`` its ``reflect``, ``nearest`` its ``edge``, ``wrap`` its
``wrap``, ``constant`` the ``cval``), cut into ``sliding_window_view`` windows the weights' shape,
and contracted with the weights by ``np.tensordot``; the input and the weights may both be traced,
and the gradient follows from those ops. SciPy's conventions are kept: the weights' centre is at
``size // 2 + origin``, convolution is correlation with the reversed weights and the origin negated
(one less for an even size), the result has the input's dtype, a Gaussian's kernel is SciPy's own
(``truncate`` standard deviations wide, or ``radius``), and a filter runs axis by axis where SciPy's
does. A traced ``sigma`` is a learnable blur: its kernel is computed from it, which needs the
``radius`` fixed (otherwise the kernel's size would depend on sigma's value).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.ndimage
from scipy.ndimage._filters import _gaussian_kernel1d

from chainrule.errors import ShapeError
from chainrule.frontends.dispatch import here, implements, unsupported
from chainrule.frontends.numpy_api import ndim_of, shape_of
from chainrule.frontends.numpy_special import traceable
from chainrule.frontends.tracer import is_traced

_PAD_MODES: dict[str, Any] = {
    "reflect": "symmetric",
    "grid-mirror": "symmetric",
    "mirror": "reflect",
    "nearest": "edge",
    "wrap": "wrap",
    "grid-wrap": "wrap",
    "constant": "constant",
    "grid-constant": "constant",
}


def _per_axis(value, count: int) -> list:
    """SciPy's ``_normalize_sequence``: one value for every axis, or one per axis."""
    if isinstance(value, (list, tuple)):
        if len(value) != count:
            raise ShapeError(f"scipy.ndimage: a sequence of {len(value)} values for {count} axes", here())
        return list(value)
    return [value] * count


def _checked_input(name: str, input, output):
    if output is not None:
        unsupported(f"scipy.ndimage.{name} with output=")
    input = input if is_traced(input) else np.asarray(input)
    if np.dtype(input.dtype).kind != "f":
        unsupported(f"scipy.ndimage.{name} of a {input.dtype} input (SciPy rounds the result to its dtype)")
    return input


def _extended(input, axis: int, before: int, after: int, mode: str, cval):
    if mode not in _PAD_MODES:
        raise ShapeError(f"scipy.ndimage: boundary mode not supported: {mode!r}", here())
    widths = [(0, 0)] * ndim_of(input)
    widths[axis] = (before, after)
    if _PAD_MODES[mode] == "constant":
        return np.pad(input, widths, mode="constant", constant_values=cval)
    return np.pad(input, widths, mode=_PAD_MODES[mode])


def _correlation(input, weights, origins: list, modes: list, cval):
    """SciPy's ``correlate``: weights of the input's rank, one origin and one mode per axis."""
    sizes = shape_of(weights)
    for axis, (size, origin) in enumerate(zip(sizes, origins)):
        if not -(size // 2) <= origin <= (size - 1) // 2:
            raise ShapeError(
                "Invalid origin; origin must satisfy -(weights.shape[k] // 2) <= origin[k] <= "
                "(weights.shape[k]-1) // 2",
                here(),
            )
        before = size // 2 + origin
        input = _extended(input, axis, before, size - 1 - before, modes[axis], cval)
    windows = np.lib.stride_tricks.sliding_window_view(input, tuple(sizes))
    rank = len(sizes)
    return np.tensordot(windows, weights, axes=(list(range(rank, 2 * rank)), list(range(rank))))


def _along(input, weights, axis: int, origin: int, mode: str, cval):
    """``weights`` (1-D) correlated with the input along one axis, centred at ``size // 2 + origin``."""
    axis = axis % ndim_of(input)
    shape, origins = [1] * ndim_of(input), [0] * ndim_of(input)
    shape[axis], origins[axis] = shape_of(weights)[0], origin
    return _correlation(input, np.reshape(weights, shape), origins, _per_axis(mode, ndim_of(input)), cval)


def _in_dtype_of(result, input):
    return result if result.dtype == input.dtype else result.astype(input.dtype)


def _one_dimensional(name, input, weights, output):
    input = _checked_input(name, input, output)
    if ndim_of(weights) != 1 or shape_of(weights)[0] < 1:
        raise ShapeError(f"scipy.ndimage.{name}: no filter weights given", here())
    return input


@implements(traceable(scipy.ndimage, "correlate1d", "scipy.ndimage.correlate1d"))
def _correlate1d(input, weights, axis=-1, output=None, mode="reflect", cval=0.0, origin=0):
    input = _one_dimensional("correlate1d", input, weights, output)
    return _in_dtype_of(_along(input, weights, axis, origin, mode, cval), input)


@implements(traceable(scipy.ndimage, "convolve1d", "scipy.ndimage.convolve1d"))
def _convolve1d(input, weights, axis=-1, output=None, mode="reflect", cval=0.0, origin=0):
    _one_dimensional("convolve1d", input, weights, output)
    origin = -origin - (0 if shape_of(weights)[0] % 2 else 1)
    return _correlate1d(input, np.flip(weights), axis, None, mode, cval, origin)


def _full_rank(name, input, weights, output, origin, axes):
    if axes is not None:
        unsupported(f"scipy.ndimage.{name} with axes=")
    input = _checked_input(name, input, output)
    if ndim_of(weights) != ndim_of(input):
        raise RuntimeError(f"weights.ndim ({ndim_of(weights)}) must match len(axes) ({ndim_of(input)})")
    return input, _per_axis(origin, ndim_of(input))


@implements(traceable(scipy.ndimage, "correlate", "scipy.ndimage.correlate"))
def _correlate(input, weights, output=None, mode="reflect", cval=0.0, origin=0, *, axes=None):
    input, origins = _full_rank("correlate", input, weights, output, origin, axes)
    return _in_dtype_of(_correlation(input, weights, origins, _per_axis(mode, ndim_of(input)), cval), input)


@implements(traceable(scipy.ndimage, "convolve", "scipy.ndimage.convolve"))
def _convolve(input, weights, output=None, mode="reflect", cval=0.0, origin=0, *, axes=None):
    input, origins = _full_rank("convolve", input, weights, output, origin, axes)
    origins = [-o - (0 if size % 2 else 1) for o, size in zip(origins, shape_of(weights))]
    flipped = np.flip(weights)
    return _in_dtype_of(_correlation(input, flipped, origins, _per_axis(mode, ndim_of(input)), cval), input)


def _gaussian_kernel(sigma, order: int, radius: int):
    """SciPy's Gaussian kernel (its derivative of ``order``), reversed for correlation."""
    if not is_traced(sigma):
        return _gaussian_kernel1d(float(sigma), order, radius)[::-1]
    if order != 0:
        unsupported("scipy.ndimage.gaussian_filter of a traced sigma with order > 0")
    x = np.arange(-radius, radius + 1)
    phi = np.exp(-0.5 / (sigma * sigma) * x**2)  # SciPy's formula, so the weights are its own
    return phi / np.sum(phi)  # symmetric: reversed is itself


def _radius(sigma, truncate, radius) -> int:
    if radius is not None:
        if not isinstance(radius, (int, np.integer)) or radius < 0:
            raise ShapeError("Radius must be a nonnegative integer.", here())
        return int(radius)
    if is_traced(sigma):
        unsupported(
            "scipy.ndimage.gaussian_filter of a traced sigma without radius= (the kernel's size would depend on it)"
        )
    return int(truncate * float(sigma) + 0.5)


@implements(traceable(scipy.ndimage, "gaussian_filter1d", "scipy.ndimage.gaussian_filter1d"))
def _gaussian_filter1d(
    input, sigma, axis=-1, order=0, output=None, mode="reflect", cval=0.0, truncate=4.0, *, radius=None
):
    input = _checked_input("gaussian_filter1d", input, output)
    weights = _gaussian_kernel(sigma, order, _radius(sigma, truncate, radius))
    return _in_dtype_of(_along(input, weights, axis, 0, mode, cval), input)


@implements(traceable(scipy.ndimage, "gaussian_filter", "scipy.ndimage.gaussian_filter"))
def _gaussian_filter(
    input, sigma, order=0, output=None, mode="reflect", cval=0.0, truncate=4.0, *, radius=None, axes=None
):
    input = _checked_input("gaussian_filter", input, output)
    axes = list(range(ndim_of(input))) if axes is None else [a % ndim_of(input) for a in np.atleast_1d(axes)]
    settings = zip(
        axes,
        *(_per_axis(v, len(axes)) for v in (sigma, order, mode, radius)),
    )
    for axis, axis_sigma, axis_order, axis_mode, axis_radius in settings:
        if is_traced(axis_sigma) or axis_sigma > 1e-15:  # SciPy skips the axes of a zero sigma
            input = _gaussian_filter1d(
                input, axis_sigma, axis, axis_order, None, axis_mode, cval, truncate, radius=axis_radius
            )
    return input


@implements(traceable(scipy.ndimage, "uniform_filter1d", "scipy.ndimage.uniform_filter1d"))
def _uniform_filter1d(input, size, axis=-1, output=None, mode="reflect", cval=0.0, origin=0):
    if size < 1:
        raise ShapeError("incorrect filter size", here())
    return _correlate1d(input, np.full(size, 1.0 / size), axis, output, mode, cval, origin)


@implements(traceable(scipy.ndimage, "uniform_filter", "scipy.ndimage.uniform_filter"))
def _uniform_filter(input, size=3, output=None, mode="reflect", cval=0.0, origin=0, *, axes=None):
    input = _checked_input("uniform_filter", input, output)
    axes = list(range(ndim_of(input))) if axes is None else [a % ndim_of(input) for a in np.atleast_1d(axes)]
    for axis, axis_size, axis_mode, axis_origin in zip(axes, *(_per_axis(v, len(axes)) for v in (size, mode, origin))):
        if axis_size > 1:
            input = _uniform_filter1d(input, axis_size, axis, None, axis_mode, cval, axis_origin)
    return input
