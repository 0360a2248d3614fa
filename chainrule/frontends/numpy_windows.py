"""What NumPy's sliding windows, 1-D convolution and correlation, ramps and fills do to traced
values.

A sliding window view is a gather with a constant index array (window start plus offset), so
its gradient scatter-adds every window's cotangent back onto the elements it covers; convolution
and correlation are the windows of the zero-padded first operand times the second operand, so
both operands are differentiable. ``np.linspace`` is NumPy's own formula on traced ends, and
``np.full`` takes a traced fill value when NumPy lets it through (see ``_copyto``).
"""

from __future__ import annotations

import operator

import numpy as np

from chainrule.errors import ShapeError, TraceError, UnsupportedError
from chainrule.frontends.dispatch import here, implements
from chainrule.frontends.numpy_api import ndim_of, shape_of
from chainrule.frontends.numpy_layout import along, constant_argument
from chainrule.frontends.tracer import Tracer

# ---- sliding windows ---------------------------------------------------------------------


@implements(np.lib.stride_tricks.sliding_window_view)
def _sliding_window_view(x, window_shape, axis=None, *, subok=False, writeable=False):
    if writeable:
        raise TraceError("sliding_window_view(..., writeable=True): traced arrays are never written", here())
    window_shape = constant_argument("sliding_window_view", "window_shape", window_shape)
    windows = [int(w) for w in np.atleast_1d(window_shape)]
    ndim = ndim_of(x)
    axes = list(range(ndim)) if axis is None else [int(a) for a in np.atleast_1d(axis)]
    if len(windows) != len(axes):
        raise ShapeError(f"sliding_window_view: {len(windows)} window sizes for {len(axes)} axes", here())
    if any(not -ndim <= a < ndim for a in axes) or any(w < 0 for w in windows):
        raise ShapeError(f"sliding_window_view: axis {axis!r} or window {window_shape!r} out of range", here())
    for ax, width in zip((a % ndim for a in axes), windows):
        length = shape_of(x)[ax]
        if length < width:
            raise ShapeError("sliding_window_view: window shape cannot be larger than input array shape", here())
        # element [start, offset] of the new axes is x's element start + offset on this axis;
        # the windows' axes go last, in the order given (an axis may be windowed twice)
        starts = np.arange(length - width + 1)[:, None] + np.arange(width)[None, :]
        x = np.moveaxis(x[along(ndim_of(x), ax, starts)], ax + 1, -1)
    return x


# ---- convolution and correlation ---------------------------------------------------------


def _window_span(mode, n: int, m: int, flipped: bool) -> tuple:
    """(length, first position) of a mode's output within the full correlation of lengths n, m."""
    short = min(n, m)
    if mode == "full":
        return n + m - 1, 0
    if mode == "valid":
        return max(n, m) - short + 1, short - 1
    if mode == "same":
        # NumPy centres `same` on the full result; its correlate of a shorter first operand
        # correlates the swapped pair and reverses, which puts the odd element on the other side
        centre = (short - 1) // 2
        return max(n, m), centre if flipped or n >= m else short - 1 - centre
    raise UnsupportedError(f"mode={mode!r}: mode must be 'full', 'same' or 'valid'", here())


def _correlation(name: str, a, v, mode, flipped: bool):
    if ndim_of(a) != 1 or ndim_of(v) != 1:
        raise ShapeError(
            f"np.{name} takes two 1-D arrays, got shapes {list(shape_of(a))} and {list(shape_of(v))}", here()
        )
    n, m = shape_of(a)[0], shape_of(v)[0]
    if n == 0 or m == 0:
        raise ShapeError(f"np.{name}: the arrays cannot be empty", here())
    length, first = _window_span(mode, n, m, flipped)
    dtype = np.result_type(np.dtype(a.dtype if hasattr(a, "dtype") else np.asarray(a).dtype), v.dtype)
    padding = np.zeros(m - 1, dtype)
    # full[k] = sum_j a[k + j - (m - 1)] v[j], with a zero outside its range
    padded = np.concatenate([padding, a, padding])
    starts = first + np.arange(length)[:, None] + np.arange(m)[None, :]
    return padded[starts] @ (v[::-1] if flipped else v)


@implements(np.correlate)
def _correlate(a, v, mode="valid"):
    return _correlation("correlate", a, v, mode, flipped=False)


@implements(np.convolve)
def _convolve(a, v, mode="full"):
    return _correlation("convolve", a, v, mode, flipped=True)


# ---- ramps and fills ---------------------------------------------------------------------


def _inexact_dtype(*values) -> np.dtype:
    """NumPy's result type of ``values`` (Python numbers weak), at least floating."""
    typed = [np.dtype(v.dtype) for v in values if isinstance(v, (Tracer, np.ndarray, np.generic))]
    weak = [v for v in values if isinstance(v, (bool, int, float))]
    others = [
        np.asarray(v).dtype for v in values if not isinstance(v, (Tracer, np.ndarray, np.generic, bool, int, float))
    ]
    dtype = np.result_type(*typed, *others, *weak)
    return dtype if dtype.kind == "f" else np.result_type(dtype, np.float64)


@implements(np.linspace)
def _linspace(start, stop, num=50, endpoint=True, retstep=False, dtype=None, axis=0, *, device=None):
    num = operator.index(constant_argument("np.linspace", "num", num))
    if num < 0:
        raise ShapeError(f"np.linspace: number of samples, {num}, must be non-negative", here())
    inexact = _inexact_dtype(start, stop)
    start, stop = (v.astype(inexact) if isinstance(v, Tracer) else np.asarray(v, inexact) for v in (start, stop))
    delta = stop - start
    ramp = np.arange(num, dtype=inexact).reshape((-1,) + (1,) * ndim_of(delta))
    divisions = num - 1 if endpoint else num
    step = delta / divisions if divisions > 0 else np.nan
    # NumPy's own order of operations, so the samples are NumPy's to the last bit
    samples = (ramp * step if divisions > 0 else ramp * delta) + start
    if endpoint and num > 1:
        last = np.reshape(np.broadcast_to(stop, shape_of(delta)), (1,) + tuple(shape_of(delta)))
        samples = np.concatenate([samples[:-1], last], axis=0)
    if axis != 0:
        samples = np.moveaxis(samples, 0, axis)
    if dtype is not None and np.dtype(dtype).kind in "iu":
        # NumPy floors before the cast; truncation toward zero, stepped down where it rounded up
        truncated = samples.astype(np.int64).astype(samples.dtype)
        samples = np.where(truncated > samples, truncated - 1, truncated)
    if dtype is not None:
        samples = samples.astype(dtype)
    return (samples, step) if retstep else samples


@implements(np.full)
def _full(shape, fill_value, dtype=None, order="C", *, device=None, like=None):
    # reached through like=traced (np.full does not dispatch on its fill value)
    if not isinstance(fill_value, Tracer):
        return np.full(shape, fill_value, dtype=dtype, order=order)
    return np.broadcast_to(fill_value.astype(dtype or fill_value.dtype), shape)


@implements(np.copyto)
def _copyto(dst, src, casting="same_kind", where=True):
    raise TraceError(
        "a traced value cannot be copied into a NumPy array (np.copyto; np.full(shape, x, dtype) and "
        "np.full_like(ndarray, x) with a traced x do that): write np.broadcast_to(x, shape), "
        "np.full(shape, x, like=x) or np.full_like(traced_array, x)",
        here(),
    )
