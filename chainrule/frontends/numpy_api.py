"""What NumPy ufuncs, reductions and linear algebra do to traced values.

Primitives come from the op table: every function in an op's ``implements``
(``np.sin``, ``np.matmul``, ``scipy.special.erf``) records that op. The rest
(mean, var, square, logaddexp, norm, ...) are composites written with NumPy itself,
so they trace into primitives and read like their definitions; each is
registered once, with ``@implements``, into ``chainrule.frontends.dispatch``.
Shape functions and indexing are in ``numpy_shapes``.
"""

from __future__ import annotations

import math

import numpy as np

from chainrule.errors import ShapeError, TraceError, UnsupportedError
from chainrule.frontends.dispatch import (
    here,
    implements,
    register_primitive,
    unsupported,
)
from chainrule.frontends.source import user_frame
from chainrule.frontends.tracer import Tracer, operation, record
from chainrule.ir import OPS
from chainrule.ir.ops import normalize_axis


def shape_of(x) -> tuple:
    return x.shape if isinstance(x, Tracer) else np.shape(x)


def ndim_of(x) -> int:
    return len(shape_of(x))


def is_bool(x) -> bool:
    return np.dtype(x.dtype if hasattr(x, "dtype") else type(x)).kind == "b"


def axes_of(axis, ndim) -> tuple:
    """``normalize_axis``, with a bad axis reported at the user's line."""
    try:
        return normalize_axis(axis, ndim)
    except ShapeError as error:
        raise error.at(here()) from None


def no_extras(name, out, unsupported_keywords: dict) -> None:
    """Reject ``out=`` (a NumPy array cannot hold a traced value) and keywords chainrule does not trace."""
    if out is not None:
        raise TraceError(f"{name}(..., out=...) cannot write a traced value into a NumPy array", here())
    extra = [k for k, v in unsupported_keywords.items() if v is not np._NoValue and v is not None]
    if extra:
        raise UnsupportedError(f"{name} with {', '.join(extra)}= is not supported on traced values", here())


# ---- primitives: the op table's ``implements`` -------------------------------------------


def _recorder(op_name: str):
    def record_op(*operands):
        # user_frame(4) starts at the ufunc's caller: this function, dispatch.call_ufunc and
        # Tracer.__array_ufunc__ are ours (looking past them costs a frame object each)
        return record(op_name, operands, {}, user_frame(4))

    return record_op


def _is_zero(x) -> bool:
    return isinstance(x, (int, float, np.number)) and np.ndim(x) == 0 and x == 0


def _maximum_or_relu(a, b):
    if _is_zero(a) != _is_zero(b):
        # np.maximum(0, z) is relu; relu'(0) = 0 is the seeds' convention (the mask Z > 0)
        return record("relu", (b if _is_zero(a) else a,), {}, user_frame(4))
    return record("maximum", (a, b), {}, user_frame(4))


def _truth(x):
    """``x`` as booleans, as NumPy's logical functions read it (nonzero is True)."""
    if is_bool(x):
        return x
    return x.astype(np.bool_) if isinstance(x, Tracer) else np.asarray(x).astype(np.bool_)


def _logical_recorder(op_name: str):
    def record_logical(*operands):
        # the op is on booleans; np.logical_and(x, y) of numbers reads them as x != 0, y != 0
        return record(op_name, tuple(_truth(o) for o in operands), {}, user_frame(4))

    return record_logical


# A primitive whose NumPy function needs more than recording the op: its handler.
_REFINED = {
    "maximum": _maximum_or_relu,
    "logical_and": _logical_recorder("logical_and"),
    "logical_or": _logical_recorder("logical_or"),
    "logical_not": _logical_recorder("logical_not"),
}

for _op in OPS.values():
    for _function in _op.implements:
        register_primitive(_function, _op.name, _REFINED.get(_op.name) or _recorder(_op.name))


# ---- composite ufuncs --------------------------------------------------------------------


@implements(np.positive)
def _positive(x):
    return x.copy()  # a new array, as NumPy's: a write into it leaves x as it was


@implements(np.square)
def _square(x):
    return x * x


@implements(np.reciprocal)
def _reciprocal(x):
    return 1.0 / x


@implements(np.logaddexp)
def _logaddexp(a, b):
    # log(e^a + e^b) = larger + softplus(smaller - larger): never overflows and, unlike
    # max + log1p(exp(-|a - b|)), has the right derivatives at a == b to every order (there
    # max and abs have kinks: d/dz logaddexp(0, z) at z = 0 came out 0, not 1/2). Two equal
    # infinities are that infinity (their difference would be NaN).
    difference = np.where((a == b) & (np.abs(a) == np.inf), 0.0, b - a)
    return np.where(a > b, a + operation("softplus", difference), b + operation("softplus", -difference))


@implements(np.invert)
def _invert(x):
    if not is_bool(x):
        unsupported("bitwise ~ on integers")
    return operation("logical_not", x)


@implements(np.bitwise_and)
def _bitwise_and(a, b):
    return _logical("logical_and", a, b)


@implements(np.bitwise_or)
def _bitwise_or(a, b):
    return _logical("logical_or", a, b)


def _logical(op_name, a, b):
    if not (is_bool(a) and is_bool(b)):
        unsupported("bitwise & and | on integers")
    return operation(op_name, a, b)


# ---- reductions --------------------------------------------------------------------------


def _reduction(op_name, a, axis, keepdims, dtype=None):
    if dtype is not None:
        a = a.astype(dtype)
    elif is_bool(a) and op_name == "sum":
        a = a.astype(np.int64)
    axes = axes_of(axis, ndim_of(a))
    return operation(op_name, a, axis=axes, keepdims=bool(keepdims))


def _count(shape, axes) -> int:
    return math.prod(shape[i] for i in axes)


@implements(np.mean)
def _mean(a, axis=None, dtype=None, out=None, keepdims=False, **unsupported_keywords):
    where = unsupported_keywords.pop("where", np._NoValue)
    no_extras("np.mean", out, unsupported_keywords)
    if dtype is None and not np.issubdtype(a.dtype, np.floating):
        dtype = np.float64
    axes = axes_of(axis, ndim_of(a))
    if (
        where is not np._NoValue and where is not True
    ):  # the mean of the elements where is True: their sum over their count
        count = np.sum(np.broadcast_to(where, shape_of(a)), axis=axes, keepdims=keepdims)
        return _reduction("sum", np.where(where, a, 0), axes, keepdims, dtype) / count
    return _reduction("sum", a, axes, keepdims, dtype) / float(_count(shape_of(a), axes))


@implements(np.var)
def _var(a, axis=None, dtype=None, out=None, ddof=0, keepdims=False, **unsupported_keywords):
    no_extras("np.var", out, unsupported_keywords)
    axes = axes_of(axis, ndim_of(a))
    centered = a - np.mean(a, axis=axes, dtype=dtype, keepdims=True)
    return np.sum(centered * centered, axis=axes, keepdims=keepdims) / float(_count(shape_of(a), axes) - ddof)


@implements(np.std)
def _std(a, axis=None, dtype=None, out=None, ddof=0, keepdims=False, **unsupported_keywords):
    return np.sqrt(_var(a, axis, dtype, out, ddof, keepdims, **unsupported_keywords))


@implements(np.sum)
def _sum(a, axis=None, dtype=None, out=None, keepdims=False, **unsupported_keywords):
    where = unsupported_keywords.pop("where", np._NoValue)
    initial = unsupported_keywords.pop("initial", np._NoValue)
    no_extras("np.sum", out, unsupported_keywords)
    total = _reduction(
        "sum", a if where is np._NoValue or where is True else np.where(where, a, 0), axis, keepdims, dtype
    )
    return total if initial is np._NoValue else total + initial


@implements(np.max, np.amax)
def _max(a, axis=None, out=None, keepdims=False, **unsupported_keywords):
    return _extremum("max", np.maximum, a, axis, out, keepdims, unsupported_keywords)


@implements(np.min, np.amin)
def _min(a, axis=None, out=None, keepdims=False, **unsupported_keywords):
    return _extremum("min", np.minimum, a, axis, out, keepdims, unsupported_keywords)


def _extremum(op_name, combine, a, axis, out, keepdims, keywords):
    """np.max / np.min, with NumPy's ``initial`` (one more element) and ``where`` (the elements
    taken; NumPy needs ``initial`` with it, which stands in for the others)."""
    initial = keywords.pop("initial", np._NoValue)
    where = keywords.pop("where", True)
    no_extras(f"np.{op_name}", out, keywords)
    if where is not True:
        if initial is np._NoValue:
            raise TraceError(f"np.{op_name} with where= needs initial= (as NumPy does)", here())
        a = np.where(where, a, initial)
    extremum = _reduction(op_name, a, axis, keepdims)
    return extremum if initial is np._NoValue else combine(extremum, initial)


def _ufunc_reduction(op_name, ufunc):
    def reduce(a, axis=0, dtype=None, out=None, keepdims=False, **unsupported_keywords):
        no_extras(f"np.{ufunc.__name__}.reduce", out, unsupported_keywords)
        return _reduction(op_name, a, axis, keepdims, dtype)

    return reduce


for _ufunc, _op_name in [(np.add, "sum"), (np.maximum, "max"), (np.minimum, "min")]:
    implements(_ufunc.reduce)(_ufunc_reduction(_op_name, _ufunc))


# ---- linear algebra ----------------------------------------------------------------------


@implements(np.dot)
def _dot(a, b, out=None):
    if out is not None:
        raise TraceError("np.dot(..., out=...) cannot write a traced value into a NumPy array", here())
    if ndim_of(a) == 0 or ndim_of(b) == 0:
        return np.multiply(a, b)
    if ndim_of(a) > 2 or ndim_of(b) > 2:  # a's last axis with b's second-to-last
        return np.tensordot(a, b, axes=([-1], [-2 if ndim_of(b) > 1 else -1]))
    return operation("matmul", a, b)


@implements(np.outer)
def _outer(a, b, out=None):
    return np.reshape(a, (-1, 1)) * np.reshape(b, (1, -1))
