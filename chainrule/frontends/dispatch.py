"""The NumPy surface of traced values: which handler each NumPy/SciPy function or ufunc calls.

``Tracer.__array_ufunc__`` and ``Tracer.__array_function__`` look up ``HANDLERS``
here; this module knows nothing of tracers, so the tracer imports it and the
modules that fill it import the tracer (no cycle). Two kinds of entries:

- primitives: a function in an op's ``implements`` (``np.sin``, ``scipy.special.erf``)
  records that op; ``chainrule.frontends.numpy_api`` registers one for every such
  function of the op table, with ``register_primitive``;
- composites: NumPy functions written with NumPy itself (``np.mean``, ``np.stack``),
  registered where they are defined with the ``@implements(np.mean)`` decorator.

A ufunc method other than a call (``np.add.reduce``) is looked up as the bound
method itself. ``supported_names()`` lists everything registered.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NoReturn

import numpy as np

from chainrule.errors import TraceError, UnsupportedError
from chainrule.frontends.source import location_of, user_frame

# NumPy/SciPy callable (or bound ufunc method) -> the function computing it on traced values
HANDLERS: dict = {}
# the callables that are one op applied to their arguments -> that op's name
PRIMITIVES: dict = {}
# NumPy/SciPy callable -> the function computing it where an operand is complex: a traced complex
# value, or a complex constant next to a traced value (chainrule.frontends.complex_values fills it)
COMPLEX_HANDLERS: dict = {}
# the class of traced complex values (complex_values.ComplexTracer; this module imports no tracer)
COMPLEX_TYPES: set = set()


def here():
    """The user's source line, seen from a handler (the tracer and this module sit between)."""
    return location_of(user_frame(3))


def unsupported(name: str) -> NoReturn:
    raise UnsupportedError(
        f"{name} is not supported on traced values; chainrule.frontends.SUPPORTED lists "
        "what is, or write it with supported NumPy functions",
        here(),
    )


def _register(function, handler: Callable) -> None:
    if function in HANDLERS:
        raise ValueError(f"{function_name(function)} is registered twice on traced values")
    HANDLERS[function] = handler


def implements(*functions):
    """Decorator: the decorated function computes each of ``functions`` on traced values."""

    def register(handler: Callable) -> Callable:
        for function in functions:
            _register(function, handler)
        return handler

    return register


def register_primitive(function, op_name: str, handler: Callable) -> None:
    """``function`` is the op ``op_name`` applied to its arguments; ``handler`` records it."""
    _register(function, handler)
    PRIMITIVES[function] = op_name


def call_ufunc(ufunc, method: str, inputs: tuple, kwargs: dict):
    """``ufunc.method(*inputs, **kwargs)`` on traced values (NumPy's ``__array_ufunc__``)."""
    if _has_complex_operand(inputs):
        if kwargs and method == "__call__":
            _check_ufunc_keywords(ufunc, kwargs)
        return _call_complex(ufunc if method == "__call__" else getattr(ufunc, method), inputs, {})
    if method != "__call__":  # np.add.reduce(x, axis=1): the method's handler takes its keywords
        handler = HANDLERS.get(getattr(ufunc, method))
        if handler is None:
            unsupported(f"{function_name(ufunc)}.{method}")
        return handler(*inputs, **kwargs)
    if kwargs:
        _check_ufunc_keywords(ufunc, kwargs)
    handler = HANDLERS.get(ufunc)
    if handler is None:
        unsupported(function_name(ufunc))
    return handler(*inputs)


def _check_ufunc_keywords(ufunc, kwargs: dict) -> None:
    if kwargs.get("out") is not None:
        raise TraceError(
            f"{function_name(ufunc)}(..., out=...) or an in-place operator (+=, *=) writes into a "
            "NumPy array, which cannot hold a traced value; use `a = a + b`",
            here(),
        )
    extra = {k: v for k, v in kwargs.items() if k != "out" and v is not None}
    if extra:
        raise UnsupportedError(
            f"{function_name(ufunc)} with {', '.join(extra)}= is not supported on traced values", here()
        )


def call_function(func, args: tuple, kwargs: dict):
    """``func(*args, **kwargs)`` on traced values (NumPy's ``__array_function__``)."""
    if _has_complex_operand(args):
        return _call_complex(func, args, kwargs)
    handler = HANDLERS.get(func)
    if handler is None:
        unsupported(function_name(func))
    return handler(*args, **kwargs)


def _is_complex(value) -> bool:
    if type(value) in COMPLEX_TYPES or isinstance(value, complex):
        return True
    return isinstance(value, np.ndarray | np.generic) and value.dtype.kind == "c"


def _has_complex_operand(values) -> bool:
    """Whether a complex value is among ``values`` or in a list or tuple among them."""
    for value in values:
        if type(value) in (list, tuple):
            if any(_is_complex(item) for item in value):
                return True
        elif _is_complex(value):
            return True
    return False


def _call_complex(func, args: tuple, kwargs: dict):
    handler = COMPLEX_HANDLERS.get(func)
    if handler is None:
        raise UnsupportedError(
            f"{function_name(func)} is not supported on complex values; "
            "chainrule.frontends.COMPLEX_SUPPORTED lists what is (complex values are traced as their real "
            "and imaginary parts: np.real, np.imag and np.abs of them are real arrays)",
            here(),
        )
    return handler(*args, **kwargs)


def function_name(func) -> str:
    """How users spell ``func``: ``np.sum``, ``np.linalg.norm``, ``scipy.special.erf``, ``np.add.reduce``,
    ``operator.getitem`` (``x[index]``)."""
    owner = getattr(func, "__self__", None)
    if isinstance(owner, np.ufunc):
        return f"{function_name(owner)}.{func.__name__}"
    if isinstance(func, np.ufunc):  # a ufunc names no module; those traced are NumPy's or scipy.special's
        module = "np" if getattr(np, func.__name__, None) is func else "scipy.special"
        return f"{module}.{func.__name__}"
    module = (getattr(func, "__module__", None) or "numpy").lstrip("_")  # _operator.getitem: x[index]
    public = ".".join(part for part in module.split(".") if not part.startswith("_"))  # scipy.linalg._basic
    return public.replace("numpy", "np", 1) + "." + func.__name__


def supported_names() -> list[str]:
    """The sorted names of every function registered on traced values."""
    return sorted({function_name(f) for f in HANDLERS})


# Types whose own reflected operators (``__rmatmul__``, ``__rmul__``) handle a traced left operand:
# ``x @ A`` with a SciPy sparse ``A`` is ``A.__rmatmul__(x)``, which chainrule wraps (scipy_sparse.py).
_DEFERRED_TO: tuple[type, ...] = ()


def defer_operators_to(kind: type) -> None:
    """A traced value's ``*`` and ``@`` return NotImplemented for a ``kind`` right operand."""
    global _DEFERRED_TO
    _DEFERRED_TO += (kind,)


def _defers(other) -> bool:
    return isinstance(other, _DEFERRED_TO)  # one check of a tuple: these operators are tracing's hot path


class NumpyOperators:
    """Python's operators on a traced value (a ``Tracer``, a ``ComplexTracer``), by way of NumPy's
    functions, and NumPy's protocols routed to the handler tables above."""

    __slots__ = ()

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        return call_ufunc(ufunc, method, inputs, kwargs)

    def __array_function__(self, func, types, args, kwargs):
        return call_function(func, args, kwargs)

    def __add__(self, other):
        return np.add(self, other)

    def __radd__(self, other):
        return np.add(other, self)

    def __sub__(self, other):
        return np.subtract(self, other)

    def __rsub__(self, other):
        return np.subtract(other, self)

    def __mul__(self, other):
        if _defers(other):
            return NotImplemented
        return np.multiply(self, other)

    def __rmul__(self, other):
        return np.multiply(other, self)

    def __truediv__(self, other):
        return np.divide(self, other)

    def __rtruediv__(self, other):
        return np.divide(other, self)

    def __pow__(self, other):
        return np.power(self, other)

    def __matmul__(self, other):
        if _defers(other):
            return NotImplemented
        return np.matmul(self, other)

    def __rmatmul__(self, other):
        return np.matmul(other, self)

    def __abs__(self):
        return np.absolute(self)
