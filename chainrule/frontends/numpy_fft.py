"""``np.fft`` on traced values: every transform is the ``dft`` primitive (``chainrule.ir.fft``).

A transform along one axis resizes the input to ``n`` points (NumPy's truncation or zero padding),
stacks the real and imaginary parts into the pairs ``dft`` takes, and applies the norm's scale.
The real transforms:

- ``rfft`` and ``irfft`` are the primitives ``rdft`` and ``irdft`` (NumPy's half-spectrum
  transforms, half the work of a complex one), after the same resizing;
- ``hfft`` and ``ihfft`` are ``irfft`` and ``rfft`` of the conjugate, with the norm's direction swapped;
- the n-dimensional transforms apply the one-dimensional ones along each axis.

``fftshift`` and ``ifftshift`` are ``np.roll``; ``fftfreq`` and ``rfftfreq`` need no tracing.
"""

from __future__ import annotations

import math

import numpy as np

from chainrule.errors import UnsupportedError
from chainrule.frontends.complex_values import ComplexTracer, implements_complex, made_complex, parts
from chainrule.frontends.dispatch import here, implements
from chainrule.frontends.numpy_api import axes_of, shape_of
from chainrule.frontends.tracer import operation

SWAPPED_NORM = {None: "forward", "backward": "forward", "ortho": "ortho", "forward": "backward"}


def implements_on_both(*functions):
    """Decorator: the handler of ``functions`` on real traced values and on complex ones."""

    def register(handler):
        return implements_complex(*functions)(implements(*functions)(handler))

    return register


def _scale(norm, n: int, inverse: bool) -> float:
    if norm not in SWAPPED_NORM:
        raise ValueError(f'Invalid norm value {norm}; should be "backward", "ortho" or "forward".')
    if norm == "ortho":
        return 1 / math.sqrt(n)
    return 1 / n if (norm == "forward") != inverse else 1.0


def _along(part, axis: int, start, stop, step=None):
    index = [slice(None)] * len(shape_of(part))
    index[axis] = slice(start, stop, step)
    return part[tuple(index)]


def _resized(part, n: int, axis: int):
    """``part`` truncated or zero-padded to ``n`` points along ``axis``."""
    length = shape_of(part)[axis]
    if n <= length:
        return part if n == length else _along(part, axis, 0, n)
    widths = [(0, 0)] * len(shape_of(part))
    widths[axis] = (0, n - length)
    return np.pad(part, widths)


def _points(n, length: int) -> int:
    n = length if n is None else int(n)
    if n < 1:
        raise ValueError(f"Invalid number of FFT data points ({n}) specified.")
    return n


def transformed(z, n, axis: int, norm, inverse: bool) -> ComplexTracer:
    """The one-dimensional (inverse) DFT of ``z`` along ``axis``, of ``n`` points, scaled by ``norm``."""
    re, im = parts(z)
    if np.dtype(re.dtype).kind != "f":
        re = re.astype(np.float64)
    axis = axes_of(axis, len(shape_of(re)))[0]
    n = _points(n, shape_of(re)[axis])
    re = _resized(re, n, axis)
    im = np.zeros(shape_of(re), re.dtype) if im is None else _resized(im, n, axis)
    pairs = operation("dft", np.stack([re, im], axis=-1), axis=axis, inverse=inverse, scale=_scale(norm, n, inverse))
    return ComplexTracer(pairs[..., 0], pairs[..., 1])


@implements_on_both(np.fft.fft)
def _fft(a, n=None, axis=-1, norm=None, out=None):
    return transformed(a, n, axis, norm, inverse=False)


@implements_on_both(np.fft.ifft)
def _ifft(a, n=None, axis=-1, norm=None, out=None):
    return transformed(a, n, axis, norm, inverse=True)


@implements_on_both(np.fft.rfft)
def _rfft(a, n=None, axis=-1, norm=None, out=None):
    if parts(a)[1] is not None:
        raise UnsupportedError(
            "np.fft.rfft of a complex value (NumPy drops its imaginary part): use np.fft.fft", here()
        )
    x = a if np.dtype(a.dtype).kind == "f" else a.astype(np.float64)
    axis = axes_of(axis, len(shape_of(x)))[0]
    n = _points(n, shape_of(x)[axis])
    pairs = operation("rdft", _resized(x, n, axis), axis=axis, scale=_scale(norm, n, inverse=False))
    return ComplexTracer(pairs[..., 0], pairs[..., 1])


@implements_on_both(np.fft.irfft)
def _irfft(a, n=None, axis=-1, norm=None, out=None):
    re, im = parts(a)
    axis = axes_of(axis, len(shape_of(re)))[0]
    n = _points(2 * (shape_of(re)[axis] - 1) if n is None else n, 1)
    re = _resized(re if np.dtype(re.dtype).kind == "f" else re.astype(np.float64), n // 2 + 1, axis)
    im = np.zeros(shape_of(re), re.dtype) if im is None else _resized(im, n // 2 + 1, axis)
    pairs = np.stack([re, im], axis=-1)
    return operation("irdft", pairs, axis=axis, n=n, scale=_scale(norm, n, inverse=True))


@implements_on_both(np.fft.hfft)
def _hfft(a, n=None, axis=-1, norm=None, out=None):
    return _irfft(made_complex(*parts(a)).conj(), n, axis, SWAPPED_NORM[norm])


@implements_on_both(np.fft.ihfft)
def _ihfft(a, n=None, axis=-1, norm=None, out=None):
    return _rfft(a, n, axis, SWAPPED_NORM[norm]).conj()


def _axes_and_sizes(a, s, axes):
    ndim = len(shape_of(a))
    if axes is None:  # NumPy's default: every axis, or the last len(s)
        axes = range(ndim - (ndim if s is None else len(s)), ndim)
    axes = [axes_of(axis, ndim)[0] for axis in axes]
    sizes = [None] * len(axes) if s is None else list(s)
    if len(sizes) != len(axes):
        raise ValueError("Shape and axes have different lengths.")
    return axes, sizes


def _n_dimensional(inverse: bool, default_axes):
    def transform(a, s=None, axes=default_axes, norm=None, out=None):
        axes, sizes = _axes_and_sizes(a, s, axes)
        z = a
        for axis, n in zip(axes, sizes):
            z = transformed(z, n, axis, norm, inverse)
        return made_complex(*parts(z))

    return transform


implements_on_both(np.fft.fftn)(_n_dimensional(False, None))
implements_on_both(np.fft.ifftn)(_n_dimensional(True, None))
implements_on_both(np.fft.fft2)(_n_dimensional(False, (-2, -1)))
implements_on_both(np.fft.ifft2)(_n_dimensional(True, (-2, -1)))


def _real_n_dimensional(inverse: bool, default_axes):
    def transform(a, s=None, axes=default_axes, norm=None, out=None):
        axes, sizes = _axes_and_sizes(a, s, axes)
        if not inverse:
            z = _rfft(a, sizes[-1], axes[-1], norm)
            for axis, n in zip(axes[:-1], sizes[:-1]):
                z = transformed(z, n, axis, norm, inverse=False)
            return z
        z = a
        for axis, n in zip(axes[:-1], sizes[:-1]):
            z = transformed(z, n, axis, norm, inverse=True)
        return _irfft(z, sizes[-1], axes[-1], norm)

    return transform


implements_on_both(np.fft.rfftn)(_real_n_dimensional(False, None))
implements_on_both(np.fft.irfftn)(_real_n_dimensional(True, None))
implements_on_both(np.fft.rfft2)(_real_n_dimensional(False, (-2, -1)))
implements_on_both(np.fft.irfft2)(_real_n_dimensional(True, (-2, -1)))


def _shifted(a, axes, direction: int):
    ndim = len(shape_of(a))
    axes = tuple(range(ndim)) if axes is None else axes_of(axes, ndim)
    return np.roll(a, [direction * (shape_of(a)[axis] // 2) for axis in axes], axes)


@implements_on_both(np.fft.fftshift)
def _fftshift(x, axes=None):
    return _shifted(x, axes, 1)


@implements_on_both(np.fft.ifftshift)
def _ifftshift(x, axes=None):
    return _shifted(x, axes, -1)
