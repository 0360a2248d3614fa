"""``scipy.signal``'s N-dimensional convolution and correlation on traced arrays.

A convnet written with SciPy (``scipy.signal.convolve(images, kernel, mode="valid")``, or
``convolve2d`` per channel) differentiates through them. Each is the windows of the (zero-padded)
first operand, ``sliding_window_view``, contracted with the flipped kernel by ``np.tensordot``: both
operands may be traced, and the gradient follows from those ops. SciPy's conventions are kept:
``valid`` swaps the operands when the second is the larger in every axis, ``same`` is the full
result centred on the first operand's shape (``correlate2d`` rounds the centre the other way), and
correlation is convolution with the reversed kernel.
"""

from __future__ import annotations

import numpy as np
import scipy.signal

from chainrule.errors import ShapeError
from chainrule.frontends.dispatch import here, implements, unsupported
from chainrule.frontends.numpy_api import ndim_of, shape_of
from chainrule.frontends.numpy_special import traceable


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
