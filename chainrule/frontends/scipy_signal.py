"""``scipy.signal``'s N-dimensional convolution and correlation, and its linear filter, on traced arrays.

A convnet written with SciPy (``scipy.signal.convolve(images, kernel, mode="valid")``, or
``convolve2d`` per channel) differentiates through them. Each is the windows of the (zero-padded)
first operand, ``sliding_window_view``, contracted with the flipped kernel by ``np.tensordot``: both
operands may be traced, and the gradient follows from those ops. SciPy's conventions are kept:
``valid`` swaps the operands when the second is the larger in every axis, ``same`` is the full
result centred on the first operand's shape (``correlate2d`` rounds the centre the other way), and
correlation is convolution with the reversed kernel.

``scipy.signal.lfilter`` (an IIR filter: a recursion, not a window) is the ``lfilter`` primitive of
``ir/filters.py`` along the last axis, with SciPy's normalization by ``a[0]`` done here; its
coefficients and its signal may all be traced.
"""

from __future__ import annotations

import numpy as np
import scipy.signal

from chainrule.errors import ShapeError
from chainrule.frontends.dispatch import here, implements, unsupported
from chainrule.frontends.numpy_api import ndim_of, shape_of
from chainrule.frontends.numpy_special import traceable
from chainrule.frontends.tracer import is_traced, operation


def _convolution(name: str, in1, in2, mode: str, odd_start: bool = False):
    """``in1`` convolved with ``in2``; ``odd_start`` puts ``same``'s window one later where the full
    result's excess is odd (correlate2d's centring: it convolves with the reversed kernel)."""
    if ndim_of(in1) != ndim_of(in2):
        raise ShapeError(f"scipy.signal.{name}: in1 and in2 should have the same dimensionality", here())
    if mode not in ("full", "valid", "same"):
        raise ShapeError(f"scipy.signal.{name}: acceptable mode flags are 'valid', 'same', or 'full'", here())
    first, second = shape_of(in1), shape_of(in2)
    if mode == "valid":
        if all(a >= b for a, b in zip(first, second)):
            pass
        elif all(b >= a for a, b in zip(first, second)):
            in1, in2, first, second = in2, in1, second, first  # convolution commutes; SciPy swaps too
        else:
            raise ShapeError(
                f"scipy.signal.{name}: for 'valid' mode, one must be at least as large as the other in "
                f"every dimension, got shapes {list(first)} and {list(second)}",
                here(),
            )
    if mode != "valid":
        in1 = np.pad(in1, [(k - 1, k - 1) for k in second])
    windows = np.lib.stride_tricks.sliding_window_view(in1, tuple(second))
    axes = ndim_of(in2)
    result = np.tensordot(windows, np.flip(in2), axes=(list(range(axes, 2 * axes)), list(range(axes))))
    if mode == "same":  # SciPy's _centered: the middle of the full result, the first operand's shape
        excess = [full - size for full, size in zip(shape_of(result), first)]
        starts = [e - e // 2 if odd_start else e // 2 for e in excess]
        result = result[tuple(slice(s, s + size) for s, size in zip(starts, first))]
    return result


@implements(traceable(scipy.signal, "convolve", "scipy.signal.convolve"))
def _convolve(in1, in2, mode="full", method="auto"):
    return _convolution("convolve", in1, in2, mode)


@implements(traceable(scipy.signal, "correlate", "scipy.signal.correlate"))
def _correlate(in1, in2, mode="full", method="auto"):
    return _convolution("correlate", in1, np.flip(in2), mode)


def _two_dimensional(name: str, in1, in2, boundary, fillvalue):
    if boundary != "fill" or fillvalue != 0:
        unsupported(f"scipy.signal.{name} with boundary={boundary!r}, fillvalue={fillvalue!r} (only zero fill)")
    if ndim_of(in1) != 2 or ndim_of(in2) != 2:
        raise ShapeError(f"scipy.signal.{name} inputs must both be 2-D arrays", here())


@implements(traceable(scipy.signal, "convolve2d", "scipy.signal.convolve2d"))
def _convolve2d(in1, in2, mode="full", boundary="fill", fillvalue=0):
    _two_dimensional("convolve2d", in1, in2, boundary, fillvalue)
    return _convolution("convolve2d", in1, in2, mode)


@implements(traceable(scipy.signal, "correlate2d", "scipy.signal.correlate2d"))
def _correlate2d(in1, in2, mode="full", boundary="fill", fillvalue=0):
    _two_dimensional("correlate2d", in1, in2, boundary, fillvalue)
    return _convolution("correlate2d", in1, np.flip(in2), mode, odd_start=True)


@implements(traceable(scipy.signal, "lfilter", "scipy.signal.lfilter"))
def _lfilter(b, a, x, axis=-1, zi=None):
    """The ``lfilter`` primitive (``ir/filters.py``) along ``axis``, the coefficients divided by a[0]."""
    if zi is not None:
        unsupported("scipy.signal.lfilter with initial conditions zi=")
    b, a, x = (v if is_traced(v) else np.asarray(v) for v in (b, a, x))
    if ndim_of(b) != 1 or ndim_of(a) != 1 or ndim_of(x) == 0:
        raise ShapeError("scipy.signal.lfilter: b and a must be 1-D and x at least 1-D", here())
    dtype = np.result_type(b.dtype, a.dtype, x.dtype)  # SciPy's result type
    if dtype.kind != "f":
        unsupported(f"scipy.signal.lfilter with a {dtype} result (SciPy refuses it too)")
    b, a, x = (v if v.dtype == dtype else v.astype(dtype) for v in (b, a, x))
    a_tail = a[1:] / a[0] if shape_of(a)[0] > 1 else np.zeros(1, dtype)  # FIR: a zero recursion coefficient
    filtered = operation("lfilter", b / a[0], a_tail, np.moveaxis(x, axis, -1))
    return np.moveaxis(filtered, -1, axis)
