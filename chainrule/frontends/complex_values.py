"""Traced complex values: a real and an imaginary part, each a real traced value (or a constant).

The IR is real. A complex array enters a trace where NumPy code makes one from traced reals, by
an FFT (``np.fft.rfft(x)``) or by arithmetic with a complex constant (``x * np.exp(2j * np.pi *
f * t)``); it is a ``ComplexTracer`` holding the two parts, and NumPy's complex arithmetic on it is
written with the parts (``(a + ib)(c + id) = (ac - bd) + i(ad + bc)``), so every derivative is the
real derivative of those real operations: chainrule differentiates real-valued functions of real
inputs that pass through complex values, as JAX does for such functions. What is not supported
says so: a complex argument or result (``ArgumentError``, ``TraceError``), and any NumPy function
on a complex value that is not in ``COMPLEX_HANDLERS`` (``UnsupportedError``, naming it).

    >>> import numpy as np, chainrule as cr
    >>> power = lambda x: np.sum(np.abs(np.fft.rfft(x)) ** 2)
    >>> x = np.array([1.0, 2.0, 0.5, -1.0])
    >>> cr.grad(power)(x)  # the bins 0 and n/2 count once, the one between twice
    array([ 7., 10.,  5., -2.])
"""

from __future__ import annotations

import functools
import operator

import numpy as np

from chainrule.errors import TraceError, UnsupportedError
from chainrule.frontends import dispatch
from chainrule.frontends.dispatch import function_name, here, implements
from chainrule.frontends.numpy_api import shape_of
from chainrule.frontends.tracer import Tracer


def _real_dtype(part) -> np.dtype:
    if isinstance(part, Tracer | np.ndarray | np.generic):
        return np.dtype(part.dtype)
    return np.dtype(np.float64)  # a Python number takes the other part's dtype (weakly typed)


class ComplexTracer(dispatch.NumpyOperators):
    """A traced complex array: ``re + 1j * im``, the parts broadcast to one shape."""

    __slots__ = ("im", "re")

    def __init__(self, re, im):
        shape = np.broadcast_shapes(shape_of(re), shape_of(im))
        self.re = re if shape_of(re) == shape else np.broadcast_to(re, shape)
        self.im = im if shape_of(im) == shape else np.broadcast_to(im, shape)

    # ---- what it is -------------------------------------------------------------------------

    @property
    def shape(self) -> tuple:
        return shape_of(self.re)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    @property
    def dtype(self) -> np.dtype:
        real = np.result_type(_real_dtype(self.re), _real_dtype(self.im))
        return np.dtype(np.complex64 if real == np.float32 else np.complex128)

    @property
    def real(self):
        return self.re

    @property
    def imag(self):
        return self.im

    @property
    def T(self):
        return np.transpose(self)

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of a 0-d array")
        return self.shape[0]

    def __repr__(self) -> str:
        return f"ComplexTracer({self.dtype.name}{list(self.shape)})"

    def conj(self):
        return ComplexTracer(self.re, -self.im)

    conjugate = conj

    def copy(self):
        return self

    def astype(self, dtype, copy=True):
        if np.dtype(dtype).kind != "c":
            raise TraceError(
                f"astype({np.dtype(dtype).name}) of a complex value drops its imaginary part; "
                "take .real (or np.abs) explicitly",
                here(),
            )
        return self

    def reshape(self, *shape, order="C"):
        return np.reshape(self, shape[0] if len(shape) == 1 else shape, order=order)

    def transpose(self, *axes):
        return np.transpose(self, axes[0] if len(axes) == 1 else (axes or None))

    def ravel(self, order="C"):
        return np.ravel(self, order)

    def sum(self, axis=None, keepdims=False):
        return np.sum(self, axis=axis, keepdims=keepdims)

    def mean(self, axis=None, keepdims=False):
        return np.mean(self, axis=axis, keepdims=keepdims)

    def _needs_value(self, *_args, **_kwargs):
        raise TraceError(
            f"a traced complex value ({self.dtype.name}{list(self.shape)}) has no value while tracing: "
            "bool(), float(), complex(), np.asarray and comparisons need one. Keep it an array and use "
            "NumPy functions on it; a result must be real (take .real, .imag or np.abs).",
            here(),
        )

    __bool__ = __float__ = __int__ = __index__ = __complex__ = __array__ = item = tolist = _needs_value
    __lt__ = __le__ = __gt__ = __ge__ = __eq__ = __ne__ = _needs_value
    __hash__ = None  # type: ignore[assignment]

    # ---- NumPy protocols and operators --------------------------------------------------------

    def __getitem__(self, key):
        return dispatch.call_function(operator.getitem, (self, key), {})

    def __neg__(self):
        return ComplexTracer(-self.re, -self.im)

    def __pos__(self):
        return self


dispatch.COMPLEX_TYPES.add(ComplexTracer)


def parts(value) -> tuple:
    """``value``'s real and imaginary parts; None for the imaginary part of a real value."""
    if isinstance(value, ComplexTracer):
        return value.re, value.im
    if isinstance(value, complex):
        return value.real, value.imag
    if isinstance(value, np.ndarray | np.generic) and value.dtype.kind == "c":
        return np.ascontiguousarray(value.real), np.ascontiguousarray(value.imag)
    return value, None


def made_complex(re, im):
    """``re + 1j * im`` (``im`` None: a real value, with a zero imaginary part of its own dtype)."""
    if im is None:
        dtype = _real_dtype(re) if _real_dtype(re).kind == "f" else np.dtype(np.float64)
        im = np.zeros(shape_of(re), dtype)
    return ComplexTracer(re, im)


def implements_complex(*functions):
    """Decorator: the decorated function computes each of ``functions`` where an operand is complex."""

    def register(handler):
        for function in functions:
            if function in dispatch.COMPLEX_HANDLERS:
                raise ValueError(f"{function_name(function)} is registered twice on complex values")
            dispatch.COMPLEX_HANDLERS[function] = handler
        return handler

    return register


@implements_complex(np.shape)
def _shape(z):
    return z.shape


@implements_complex(np.ndim)
def _ndim(z):
    return z.ndim


@implements_complex(np.size)
def _size(z, axis=None):
    return z.size if axis is None else z.shape[axis]


@implements_complex(np.iscomplexobj)
def _iscomplexobj(z):
    return True


@implements_complex(np.isrealobj)
def _isrealobj(z):
    return False


# ---- the same functions on real traced values ---------------------------------------------------


@implements(np.iscomplexobj)
def _real_iscomplexobj(x):
    return False


@implements(np.isrealobj)
def _real_isrealobj(x):
    return True


@implements(np.real, np.real_if_close, np.conjugate)
def _real_itself(x, *_tolerance, **_keywords):
    return x


@implements(np.imag)
def _real_imag(x):
    return np.zeros(shape_of(x), x.dtype)


@implements(np.angle)
def _real_angle(x, deg=False):
    return np.where(x < 0, 180.0 if deg else np.pi, 0.0)  # a step: no gradient, as NumPy's value


# ---- arithmetic ------------------------------------------------------------------------------


def _plus(a, b):
    return b if a is None else (a if b is None else a + b)


def _minus(a, b):
    return (None if b is None else -b) if a is None else (a if b is None else a - b)


def bilinear(product, a, b):
    """``product`` (any function linear in each operand: multiply, matmul, outer) of two possibly
    complex values, by the parts: ``(ac - bd) + i(ad + bc)``, leaving out the zero parts."""
    ar, ai = parts(a)
    br, bi = parts(b)
    re = _minus(product(ar, br), None if ai is None or bi is None else product(ai, bi))
    im = _plus(None if bi is None else product(ar, bi), None if ai is None else product(ai, br))
    return made_complex(re, im)


for _product in (np.multiply, np.matmul, np.dot, np.outer, np.inner, np.kron):
    implements_complex(_product)(functools.partial(bilinear, _product))


@implements_complex(np.add)
def _add(a, b):
    (ar, ai), (br, bi) = parts(a), parts(b)
    return made_complex(ar + br, _plus(ai, bi))


@implements_complex(np.subtract)
def _subtract(a, b):
    (ar, ai), (br, bi) = parts(a), parts(b)
    return made_complex(ar - br, _minus(ai, bi))


@implements_complex(np.divide)
def _divide(a, b):
    (ar, ai), (br, bi) = parts(a), parts(b)
    if bi is None:
        return made_complex(ar / br, None if ai is None else ai / br)
    scale = br * br + bi * bi  # (a / b) = a · conj(b) / |b|²
    return bilinear(np.multiply, a, ComplexTracer(br / scale, -bi / scale))


@implements_complex(np.negative)
def _negative(z):
    return -made_complex(*parts(z))


@implements_complex(np.positive)
def _positive(z):
    return made_complex(*parts(z))


@implements_complex(np.conjugate)
def _conjugate(z):
    return made_complex(*parts(z)).conj()


@implements_complex(np.absolute)
def _absolute(z):
    re, im = parts(z)
    return np.abs(re) if im is None else np.hypot(re, im)  # at 0 + 0i its derivative is NaN (a kink)


@implements_complex(np.angle)
def _angle(z, deg=False):
    re, im = parts(z)
    angle = np.arctan2(0.0 * re if im is None else im, re)
    return angle * (180 / np.pi) if deg else angle


@implements_complex(np.real)
def _real(z):
    return parts(z)[0]


@implements_complex(np.imag)
def _imag(z):
    re, im = parts(z)
    return 0.0 * re if im is None else im


@implements_complex(np.exp)
def _exp(z):
    re, im = parts(z)
    magnitude = np.exp(re)
    return (
        made_complex(magnitude, None) if im is None else ComplexTracer(magnitude * np.cos(im), magnitude * np.sin(im))
    )


@implements_complex(np.log)
def _log(z):
    re, im = parts(z)
    if im is None:
        raise UnsupportedError("np.log of a real value whose result is complex: take np.log of a complex value", here())
    return ComplexTracer(np.log(np.hypot(re, im)), np.arctan2(im, re))  # the principal branch, as NumPy


@implements_complex(np.sqrt)
def _sqrt(z):
    # the principal root as C99's csqrt takes it, without cancellation: t = sqrt((|a| + |z|) / 2) is the
    # larger part's magnitude, the other part is b / 2t; the sign of b (-0.0 too) picks the half-plane
    re, im = parts(z)
    im = np.zeros(shape_of(re)) if im is None else im
    t = np.sqrt((np.abs(re) + np.hypot(re, im)) / 2)
    half = im / (2 * np.where(t == 0, 1.0, t))  # 0 at z = 0, where t is 0 too
    right = re >= 0
    return ComplexTracer(np.where(right, t, np.abs(half)), np.where(right, half, np.copysign(t, im)))


@implements_complex(np.square)
def _square(z):
    return bilinear(np.multiply, z, z)


@implements_complex(np.power)
def _power(z, exponent):
    if isinstance(exponent, Tracer | ComplexTracer) or np.iscomplexobj(exponent) or np.ndim(exponent) != 0:
        raise UnsupportedError("a power of a complex value is supported for a constant integer exponent", here())
    if float(exponent) != int(exponent):
        raise UnsupportedError(f"a complex value to the power {exponent}: only integer powers are supported", here())
    count = abs(int(exponent))
    result, base = None, made_complex(*parts(z))
    while count:  # by squaring: log2(exponent) products
        if count & 1:
            result = base if result is None else bilinear(np.multiply, result, base)
        count >>= 1
        if count:
            base = bilinear(np.multiply, base, base)
    if result is None:
        return made_complex(np.ones(shape_of(parts(z)[0])), None)
    return _divide(1.0, result) if exponent < 0 else result


# ---- functions linear in their one array: the same function of each part ----------------------

LINEAR_IN_THE_ARRAY = (
    operator.getitem,
    np.sum,
    np.mean,
    np.reshape,
    np.transpose,
    np.swapaxes,
    np.moveaxis,
    np.ravel,
    np.squeeze,
    np.expand_dims,
    np.broadcast_to,
    np.roll,
    np.flip,
    np.diagonal,
    np.trace,
    np.cumsum,
    np.diff,
    np.copy,
    np.tile,
    np.repeat,
)


def _on_each_part(function, z, *args, **kwargs):
    re, im = parts(z)
    return made_complex(function(re, *args, **kwargs), None if im is None else function(im, *args, **kwargs))


for _linear in LINEAR_IN_THE_ARRAY:
    implements_complex(_linear)(functools.partial(_on_each_part, _linear))


def _joined(function, arrays, *args, **kwargs):
    split = [parts(a) for a in arrays]
    if all(im is None for _, im in split):
        return function([re for re, _ in split], *args, **kwargs)
    imaginary = [im if im is not None else np.zeros(shape_of(re)) for re, im in split]
    return ComplexTracer(function([re for re, _ in split], *args, **kwargs), function(imaginary, *args, **kwargs))


for _join in (np.concatenate, np.stack, np.hstack, np.vstack):
    implements_complex(_join)(functools.partial(_joined, _join))


@implements_complex(np.vdot)
def _vdot(a, b):
    return bilinear(np.dot, np.ravel(made_complex(*parts(a)).conj()), np.ravel(b))


def complex_names() -> list[str]:
    """The sorted names of the NumPy functions that take traced complex values."""
    return sorted({function_name(f) for f in dispatch.COMPLEX_HANDLERS})
