"""What each NumPy ufunc and function does to traced values.

Primitives map to one op; the rest (mean, var, square, stack, norm, ...) are
composites written with NumPy itself, so they trace into primitives and read
like their definitions.
"""

from __future__ import annotations

import math
import operator

import numpy as np
import scipy.special

from chainrule.errors import ShapeError, TraceError, UnsupportedError
from chainrule.frontends.source import location_of, user_frame
from chainrule.frontends.tracer import Tracer, operation, record
from chainrule.ir.ops import normalize_axis

_UFUNC_OPS = {
    np.add: "add", np.subtract: "sub", np.multiply: "mul", np.divide: "div", np.power: "pow",
    np.maximum: "maximum", np.minimum: "minimum", np.matmul: "matmul",
    np.greater: "gt", np.greater_equal: "ge", np.less: "lt", np.less_equal: "le",
    np.equal: "eq", np.not_equal: "ne", np.logical_and: "logical_and", np.logical_or: "logical_or",
    np.logical_not: "logical_not", np.negative: "neg", np.absolute: "abs", np.fabs: "abs",
    np.sign: "sign", np.exp: "exp", np.expm1: "expm1", np.log: "log", np.log1p: "log1p",
    np.sqrt: "sqrt", np.sin: "sin", np.cos: "cos", np.tan: "tan", np.sinh: "sinh", np.cosh: "cosh",
    np.tanh: "tanh", np.arcsin: "arcsin", np.arccos: "arccos", np.arctan: "arctan",
    np.arcsinh: "arcsinh", np.arccosh: "arccosh", np.arctanh: "arctanh",
    scipy.special.erf: "erf", scipy.special.expit: "sigmoid",
}

_LN2, _LN10 = math.log(2.0), math.log(10.0)


def _here():
    return location_of(user_frame(3))


def _shape(x) -> tuple:
    return x.shape if isinstance(x, Tracer) else np.shape(x)


def _ndim(x) -> int:
    return len(_shape(x))


def _is_bool(x) -> bool:
    return np.dtype(x.dtype if hasattr(x, "dtype") else type(x)).kind == "b"


def _unsupported(name: str):
    raise UnsupportedError(f"{name} is not supported on traced values; see chainrule.frontends.numpy_api "
                           "for what is, or write it with supported NumPy functions", _here())


def _function_name(func) -> str:
    module = getattr(func, "__module__", "numpy") or "numpy"
    return module.replace("numpy", "np", 1) + "." + func.__name__


# ---- ufuncs ------------------------------------------------------------------------------

def _composite_ufuncs():
    return {
        np.positive: lambda x: x,
        np.square: lambda x: x * x,
        np.reciprocal: lambda x: 1.0 / x,
        np.log2: lambda x: np.log(x) / _LN2,
        np.log10: lambda x: np.log(x) / _LN10,
        np.exp2: lambda x: np.exp(x * _LN2),
        np.logaddexp: _logaddexp,
        np.invert: _invert,
        np.bitwise_and: lambda a, b: _logical("logical_and", a, b),
        np.bitwise_or: lambda a, b: _logical("logical_or", a, b),
    }


def _logaddexp(a, b):
    # log(e^a + e^b) = larger + softplus(smaller - larger): never overflows and, unlike
    # max + log1p(exp(-|a - b|)), has the right derivatives at a == b to every order (there
    # max and abs have kinks: d/dz logaddexp(0, z) at z = 0 came out 0, not 1/2).
    return np.where(a > b, a + operation("softplus", b - a), b + operation("softplus", a - b))


def _invert(x):
    if not _is_bool(x):
        _unsupported("bitwise ~ on integers")
    return operation("logical_not", x)


def _logical(op_name, a, b):
    if not (_is_bool(a) and _is_bool(b)):
        _unsupported("bitwise & and | on integers")
    return operation(op_name, a, b)


_COMPOSITE_UFUNCS = _composite_ufuncs()
_REDUCING_UFUNCS = {np.add: "sum", np.maximum: "max", np.minimum: "min"}


def call_ufunc(ufunc, method, inputs, kwargs):
    if kwargs:
        _check_ufunc_keywords(ufunc, kwargs)
    if method == "reduce" and ufunc in _REDUCING_UFUNCS:
        return _reduction(_REDUCING_UFUNCS[ufunc], inputs[0], 0 if len(inputs) < 2 else inputs[1], False)
    if method != "__call__":
        _unsupported(f"np.{ufunc.__name__}.{method}")
    if ufunc in _UFUNC_OPS:
        if ufunc is np.maximum and _is_zero(inputs[0]) != _is_zero(inputs[1]):
            # np.maximum(0, z) is relu; relu'(0) = 0 is the seeds' convention (the mask Z > 0)
            return operation("relu", inputs[1] if _is_zero(inputs[0]) else inputs[0])
        # user_frame(3) starts at the ufunc's caller: this function and __array_ufunc__ are ours
        return record(_UFUNC_OPS[ufunc], inputs, {}, user_frame(3))
    if ufunc in _COMPOSITE_UFUNCS:
        return _COMPOSITE_UFUNCS[ufunc](*inputs)
    _unsupported(f"np.{ufunc.__name__}")


def _check_ufunc_keywords(ufunc, kwargs: dict) -> None:
    if kwargs.get("out") is not None:
        raise TraceError(f"np.{ufunc.__name__}(..., out=...) or an in-place operator (+=, *=) writes into a "
                         "NumPy array, which cannot hold a traced value; use `a = a + b`", _here())
    extra = {k: v for k, v in kwargs.items() if k != "out" and v is not None}
    if extra:
        raise UnsupportedError(f"np.{ufunc.__name__} with {', '.join(extra)}= is not supported on traced values", _here())


def _is_zero(x) -> bool:
    return not isinstance(x, Tracer) and np.ndim(x) == 0 and isinstance(x, (int, float, np.number)) and x == 0


# ---- reductions --------------------------------------------------------------------------

def _reduction(op_name, a, axis, keepdims, dtype=None):
    if dtype is not None:
        a = a.astype(dtype)
    elif _is_bool(a) and op_name == "sum":
        a = a.astype(np.int64)
    axes = _axes(axis, _ndim(a))
    return operation(op_name, a, axis=axes, keepdims=bool(keepdims))


def _axes(axis, ndim):
    try:
        return normalize_axis(axis, ndim)
    except ShapeError as error:
        raise error.at(_here()) from None


def _count(shape, axes) -> int:
    return math.prod(shape[i] for i in axes)


def _mean(a, axis=None, dtype=None, out=None, keepdims=False, **unsupported):
    _no_extras("np.mean", out, unsupported)
    if dtype is None and not np.issubdtype(a.dtype, np.floating):
        dtype = np.float64
    axes = _axes(axis, _ndim(a))
    return _reduction("sum", a, axes, keepdims, dtype) / float(_count(_shape(a), axes))


def _var(a, axis=None, dtype=None, out=None, ddof=0, keepdims=False, **unsupported):
    _no_extras("np.var", out, unsupported)
    axes = _axes(axis, _ndim(a))
    centered = a - np.mean(a, axis=axes, dtype=dtype, keepdims=True)
    return np.sum(centered * centered, axis=axes, keepdims=keepdims) / float(_count(_shape(a), axes) - ddof)


def _std(a, axis=None, dtype=None, out=None, ddof=0, keepdims=False, **unsupported):
    return np.sqrt(_var(a, axis, dtype, out, ddof, keepdims, **unsupported))


def _no_extras(name, out, unsupported):
    if out is not None:
        raise TraceError(f"{name}(..., out=...) cannot write a traced value into a NumPy array", _here())
    extra = [k for k, v in unsupported.items() if v is not np._NoValue and v is not None]
    if extra:
        raise UnsupportedError(f"{name} with {', '.join(extra)}= is not supported on traced values", _here())


def _reducer(op_name):
    def reduce(a, axis=None, dtype=None, out=None, keepdims=False, **unsupported):
        _no_extras(f"np.{op_name}", out, unsupported)
        return _reduction(op_name, a, axis, keepdims, dtype)
    return reduce


def _extremum(op_name):
    def reduce(a, axis=None, out=None, keepdims=False, **unsupported):
        _no_extras(f"np.{op_name}", out, unsupported)
        return _reduction(op_name, a, axis, keepdims)
    return reduce


def _norm(x, ord=None, axis=None, keepdims=False):
    if ord not in (None, 2, "fro") or (ord == 2 and (axis is None and _ndim(x) != 1)):
        _unsupported(f"np.linalg.norm with ord={ord!r} (only the 2-norm / Frobenius norm)")
    return np.sqrt(np.sum(x * x, axis=axis, keepdims=keepdims))


# ---- linear algebra ----------------------------------------------------------------------

def _dot(a, b, out=None):
    if out is not None:
        raise TraceError("np.dot(..., out=...) cannot write a traced value into a NumPy array", _here())
    if _ndim(a) == 0 or _ndim(b) == 0:
        return np.multiply(a, b)
    if _ndim(a) > 2 or _ndim(b) > 2:
        _unsupported("np.dot of arrays with more than 2 dimensions (use np.matmul or @)")
    return operation("matmul", a, b)


def _outer(a, b, out=None):
    return np.reshape(a, (-1, 1)) * np.reshape(b, (1, -1))


# ---- shape functions ---------------------------------------------------------------------

def _transpose(a, axes=None):
    ndim = _ndim(a)
    axes = tuple(reversed(range(ndim))) if axes is None else tuple(int(i) % ndim if ndim else int(i) for i in axes)
    return operation("transpose", a, axes=axes)


def _swapaxes(a, axis1, axis2):
    ndim = _ndim(a)
    axes = list(range(ndim))
    i, j = axis1 % ndim, axis2 % ndim
    axes[i], axes[j] = axes[j], axes[i]
    return _transpose(a, axes)


def _moveaxis(a, source, destination):
    # NumPy's own construction: the unmoved axes in order, each moved axis inserted at its destination
    ndim = _ndim(a)
    source, destination = _axis_list(source, ndim), _axis_list(destination, ndim)
    if len(source) != len(destination):
        raise ShapeError("np.moveaxis: `source` and `destination` must have the same number of elements", _here())
    order = [i for i in range(ndim) if i not in source]
    for dest, src in sorted(zip(destination, source)):
        order.insert(dest, src)
    return _transpose(a, order)


def _axis_list(axis, ndim) -> list:
    """``axis`` (an int or a sequence) as non-negative ints in the order given, bounds-checked."""
    axes = [axis] if isinstance(axis, (int, np.integer)) else list(axis)
    _axes(axes, ndim)  # raises on an out-of-bounds or repeated axis
    return [int(i) % ndim for i in axes]


def _reshape(a, shape=None, order="C", *, newshape=None, copy=None):
    if order != "C":
        _unsupported(f"reshape with order={order!r}")
    shape = newshape if shape is None else shape
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(int(d) for d in shape)
    size = math.prod(_shape(a))
    if shape.count(-1) == 1:
        known = math.prod(d for d in shape if d != -1)
        if known == 0 or size % known:
            raise ShapeError(f"cannot reshape an array of shape {list(_shape(a))} into shape {list(shape)}", _here())
        shape = tuple(size // known if d == -1 else d for d in shape)
    return operation("reshape", a, shape=shape)


def _ravel(a, order="C"):
    return _reshape(a, (-1,), order)


def _squeeze(a, axis=None):
    shape = _shape(a)
    axes = tuple(i for i, d in enumerate(shape) if d == 1) if axis is None else _axes(axis, len(shape))
    for i in axes:
        if shape[i] != 1:
            raise ShapeError(f"cannot squeeze axis {i} of size {shape[i]} (shape {list(shape)})", _here())
    return _reshape(a, tuple(d for i, d in enumerate(shape) if i not in axes))


def _expand_dims(a, axis):
    shape = list(_shape(a))
    axes = _axes(axis, len(shape) + (len(axis) if isinstance(axis, (tuple, list)) else 1))
    for i in axes:
        shape.insert(i, 1)
    return _reshape(a, tuple(shape))


def _broadcast_to(array, shape, subok=False):
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    if not isinstance(array, Tracer):
        return np.broadcast_to(array, shape)
    return operation("broadcast_to", array, shape=shape)


def _concatenate(arrays, axis=0, out=None, dtype=None, casting=None):
    arrays = list(arrays)
    if axis is None:
        arrays, axis = [np.ravel(a) for a in arrays], 0
    ndim = _ndim(arrays[0])
    if ndim == 0:
        raise ShapeError("zero-dimensional arrays cannot be concatenated", _here())
    return operation("concatenate", *arrays, axis=_axes(axis, ndim)[0])


def _stack(arrays, axis=0, out=None, dtype=None, casting=None):
    arrays = list(arrays)
    shapes = {_shape(a) for a in arrays}
    if len(shapes) != 1:
        raise ShapeError(f"all input arrays must have the same shape to stack, got {[list(s) for s in shapes]}", _here())
    return _concatenate([np.expand_dims(a, axis) for a in arrays], axis=axis)


def _hstack(tup, dtype=None, casting=None):
    arrays = [_atleast_1d(a) for a in tup]
    return _concatenate(arrays, axis=0 if _ndim(arrays[0]) == 1 else 1)


def _vstack(tup, dtype=None, casting=None):
    return _concatenate([_atleast_2d(a) for a in tup], axis=0)


def _atleast_1d(a):
    return _reshape(a, (1,)) if _ndim(a) == 0 else a


def _atleast_2d(a):
    return _reshape(a, (1,) * (2 - _ndim(a)) + tuple(_shape(a))) if _ndim(a) < 2 else a


def _where(condition, x=None, y=None):
    if x is None or y is None:
        _unsupported("np.where(condition) with one argument (its shape depends on the data)")
    return operation("where", condition, x, y)


def _clip(a, a_min=None, a_max=None, out=None, *, min=None, max=None, **kwargs):
    lo = a_min if a_min is not None else min
    hi = a_max if a_max is not None else max
    if out is not None:
        raise TraceError("np.clip(..., out=...) cannot write a traced value into a NumPy array", _here())
    if lo is None and hi is None:
        raise ShapeError("np.clip needs a_min or a_max", _here())
    if lo is None:
        return np.minimum(a, hi)
    if hi is None:
        return np.maximum(a, lo)
    return operation("clip", a, lo, hi)


def _full_like(a, fill_value, dtype=None, order="K", subok=True, shape=None):
    return np.full(_shape(a) if shape is None else shape, fill_value, dtype=dtype or a.dtype)


_FUNCTIONS = {
    np.sum: _reducer("sum"), np.mean: _mean, np.var: _var, np.std: _std,
    np.max: _extremum("max"), np.amax: _extremum("max"), np.min: _extremum("min"), np.amin: _extremum("min"),
    np.dot: _dot, np.outer: _outer, np.linalg.norm: _norm,
    np.transpose: _transpose, np.swapaxes: _swapaxes, np.moveaxis: _moveaxis, np.reshape: _reshape, np.ravel: _ravel,
    np.squeeze: _squeeze, np.expand_dims: _expand_dims, np.broadcast_to: _broadcast_to,
    np.concatenate: _concatenate, np.stack: _stack, np.hstack: _hstack, np.vstack: _vstack,
    np.atleast_1d: _atleast_1d, np.atleast_2d: _atleast_2d,
    np.where: _where, np.clip: _clip, np.copy: lambda a, order="K", subok=False: a,
    np.zeros_like: lambda a, dtype=None, order="K", subok=True, shape=None: _full_like(a, 0, dtype, shape=shape),
    np.ones_like: lambda a, dtype=None, order="K", subok=True, shape=None: _full_like(a, 1, dtype, shape=shape),
    np.full_like: _full_like,
    np.shape: _shape, np.ndim: _ndim, np.size: lambda a, axis=None: math.prod(_shape(a)) if axis is None else _shape(a)[axis],
}


def call_function(func, args, kwargs):
    handler = _FUNCTIONS.get(func)
    if handler is None:
        _unsupported(_function_name(func))
    return handler(*args, **kwargs)


SUPPORTED = sorted({f"np.{u.__name__}" for u in list(_UFUNC_OPS) + list(_COMPOSITE_UFUNCS)}
                   | {_function_name(f) for f in _FUNCTIONS})


# ---- indexing ----------------------------------------------------------------------------

def getitem(x: Tracer, key):
    """``x[key]`` for basic slices, ints, None, Ellipsis and integer arrays (NumPy semantics)."""
    key = key if isinstance(key, tuple) else (key,)
    consumed = sum(1 for k in key if k is not None and k is not Ellipsis)
    if sum(1 for k in key if k is Ellipsis) > 1:
        raise ShapeError("an index can only have a single ellipsis ('...')", _here())
    expanded = []
    for k in key:
        if k is Ellipsis:
            expanded.extend([slice(None)] * (x.ndim - consumed))
        else:
            expanded.append(k)
    items, arrays = [], []
    for k in expanded:
        if k is None:
            items.append(("none",))
        elif isinstance(k, slice):
            items.append(("slice",) + tuple(_slice_bound(v) for v in (k.start, k.stop, k.step)))
        elif isinstance(k, (int, np.integer)) and not isinstance(k, (bool, np.bool_)):
            items.append(("int", int(k)))
        elif isinstance(k, Tracer) or isinstance(k, (list, np.ndarray)):
            kind = k.dtype.kind if isinstance(k, (Tracer, np.ndarray)) else np.asarray(k).dtype.kind
            if kind == "b":
                raise UnsupportedError("boolean-mask indexing is not supported on traced values: the result's "
                                       "shape depends on the data. Use np.where(mask, x, 0) instead", _here())
            if kind not in "iu":
                raise TraceError(f"array indices must be integers, got {k.dtype if hasattr(k, 'dtype') else 'a list of floats'}", _here())
            items.append(("array", len(arrays)))
            arrays.append(k if isinstance(k, Tracer) else np.asarray(k))
        else:
            raise TraceError(f"cannot index a traced array with a {type(k).__name__}", _here())
    return operation("getitem", x, *arrays, index=tuple(items))


def _slice_bound(value):
    if value is None:
        return None
    if isinstance(value, Tracer):
        raise TraceError("slice bounds must be Python ints, not traced values: the result's shape "
                         "would depend on data", _here())
    return operator.index(value)
