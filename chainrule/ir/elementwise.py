"""Elementwise primitives: one entry each.

An entry is: name, SymPy definition, NumPy lowering, and one VJP rule per
operand written as ``(g, y, *operands)`` -> cotangent, where ``g`` is the output
cotangent and ``y`` the op's output (reused where that is cheaper: tanh' = 1 - y**2).
A rule of ``None`` means no gradient flows to that operand. Rules produce the
broadcast shape; autodiff sums them back to each operand's shape. Elementwise
ops leave ``batch`` unset: they share one batching rule, ``batch_elementwise``.

Kink conventions (tested): relu'(0) = 0 (the seeds' and PyTorch's), abs'(0) = 0,
maximum/minimum split the gradient evenly on ties (as JAX and PyTorch do),
clip passes the gradient to x when lo <= x <= hi (PyTorch's clamp), and to hi when lo > hi.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.special
import sympy as sp

from chainrule.ir.builder import F, Value, apply
from chainrule.ir.ops import Attrs, NumpyTemplate, Op, VjpRule, elementwise_flops, infer_elementwise, register
from chainrule.ir.types import TensorType


# ``flops`` is per output element: 1 for an op NumPy evaluates with one ufunc or libm call
# (transcendentals included), the count of its definition's operations for an op that is a
# composition (sigmoid, softplus, clip), 0 for no arithmetic (see chainrule.compiler.cost).
# ``implements``: the NumPy/SciPy functions that are this op; ``libm``: the C math function native
# code computes one element with; ``numpy_out``: the in-place form, where the template is not a
# ufunc call (see ``Op.in_place``).
def _elementwise(
    name: str,
    arity: int,
    sympy_definition: Callable[..., Any],
    numpy: NumpyTemplate,
    vjp: tuple[VjpRule | None, ...],
    flops: int = 1,
    note: str = "",
    **facts: Any,
) -> None:
    register(
        Op(
            name,
            "elementwise",
            arity,
            infer_elementwise(name),
            numpy,
            vjp=vjp,
            flops=elementwise_flops(flops),
            sympy=sympy_definition,
            derivative_note=note,
            **facts,
        )
    )


def unary(
    name: str,
    sympy_definition: Callable[..., Any],
    numpy: NumpyTemplate,
    rule: VjpRule | None,
    flops: int = 1,
    note: str = "",
    **facts: Any,
) -> None:
    _elementwise(name, 1, sympy_definition, numpy, (rule,), flops, note, **facts)


def binary(
    name: str,
    sympy_definition: Callable[..., Any],
    numpy: NumpyTemplate,
    rules: tuple[VjpRule | None, VjpRule | None],
    flops: int = 1,
    note: str = "",
    **facts: Any,
) -> None:
    _elementwise(name, 2, sympy_definition, numpy, rules, flops, note, **facts)


def _sigmoid(x: sp.Expr) -> sp.Expr:
    return 1 / (1 + sp.exp(-x))


def _relu(x: sp.Expr) -> sp.Expr:
    return sp.Piecewise((x, x > 0), (0, True))


# ---- unary -------------------------------------------------------------------------------

unary(
    "neg", lambda x: -x, "-{0}", lambda g, y, x: -g, implements=(np.negative,), numpy_out="np.negative({0}, out={out})"
)
unary(
    "abs", sp.Abs, "np.abs({0})", lambda g, y, x: g * F.sign(x), note="abs'(0) = 0", implements=(np.absolute, np.fabs)
)
unary("sign", sp.sign, "np.sign({0})", None, note="zero gradient (piecewise constant)", implements=(np.sign,))
unary("exp", sp.exp, "np.exp({0})", lambda g, y, x: g * y, implements=(np.exp,), libm="exp")
unary(
    "expm1", lambda x: sp.exp(x) - 1, "np.expm1({0})", lambda g, y, x: g * (y + 1), implements=(np.expm1,), libm="expm1"
)
unary("log", sp.log, "np.log({0})", lambda g, y, x: g / x, implements=(np.log,), libm="log")
unary(
    "log1p", lambda x: sp.log(1 + x), "np.log1p({0})", lambda g, y, x: g / (1 + x), implements=(np.log1p,), libm="log1p"
)
unary(
    "sqrt",
    sp.sqrt,
    "np.sqrt({0})",
    lambda g, y, x: g / (2 * y),
    note="sqrt'(0) = inf",
    implements=(np.sqrt,),
    libm="sqrt",
)
unary("sin", sp.sin, "np.sin({0})", lambda g, y, x: g * F.cos(x), implements=(np.sin,), libm="sin")
# -(g * ...) rather than (-g) * ...: for the seed cotangent g = 1, -g would fold to a constant
# -1 that the product then drops (x * -1 -> -x), leaving a dead node behind (here, in arccos, div).
unary("cos", sp.cos, "np.cos({0})", lambda g, y, x: -(g * F.sin(x)), implements=(np.cos,), libm="cos")
unary("tan", sp.tan, "np.tan({0})", lambda g, y, x: g * (1 + y * y), implements=(np.tan,), libm="tan")
unary("sinh", sp.sinh, "np.sinh({0})", lambda g, y, x: g * F.cosh(x), implements=(np.sinh,), libm="sinh")
unary("cosh", sp.cosh, "np.cosh({0})", lambda g, y, x: g * F.sinh(x), implements=(np.cosh,), libm="cosh")
unary("tanh", sp.tanh, "np.tanh({0})", lambda g, y, x: g * (1 - y * y), implements=(np.tanh,), libm="tanh")
unary("arcsin", sp.asin, "np.arcsin({0})", lambda g, y, x: g / F.sqrt(1 - x * x), implements=(np.arcsin,), libm="asin")
unary(
    "arccos", sp.acos, "np.arccos({0})", lambda g, y, x: -(g / F.sqrt(1 - x * x)), implements=(np.arccos,), libm="acos"
)
unary("arctan", sp.atan, "np.arctan({0})", lambda g, y, x: g / (1 + x * x), implements=(np.arctan,), libm="atan")
unary(
    "arcsinh",
    sp.asinh,
    "np.arcsinh({0})",
    lambda g, y, x: g / F.sqrt(x * x + 1),
    implements=(np.arcsinh,),
    libm="asinh",
)
unary(
    "arccosh",
    sp.acosh,
    "np.arccosh({0})",
    lambda g, y, x: g / F.sqrt(x * x - 1),
    implements=(np.arccosh,),
    libm="acosh",
)
unary("arctanh", sp.atanh, "np.arctanh({0})", lambda g, y, x: g / (1 - x * x), implements=(np.arctanh,), libm="atanh")
unary(
    "erf",
    sp.erf,
    "special.erf({0})",
    lambda g, y, x: g * (2 / float(sp.sqrt(sp.pi))) * F.exp(-(x * x)),
    implements=(scipy.special.erf,),
    libm="erf",
)
unary(
    "erfc",
    sp.erfc,
    "special.erfc({0})",
    lambda g, y, x: -(g * (2 / float(sp.sqrt(sp.pi))) * F.exp(-(x * x))),
    implements=(scipy.special.erfc,),
    libm="erfc",
)
# 1/(1+exp(-x)): neg, exp, add, div, so nn.sigmoid costs what the spelled-out form does
unary(
    "sigmoid",
    _sigmoid,
    "sigmoid({0})",
    lambda g, y, x: g * y * (1 - y),
    flops=4,
    implements=(scipy.special.expit,),
    numpy_out="special.expit({0}, out={out})",
)
unary(
    "softplus",
    lambda x: sp.log(1 + sp.exp(x)),
    "softplus({0})",
    lambda g, y, x: g * F.sigmoid(x),
    flops=3,
    numpy_out="np.logaddexp(0, {0}, out={out})",
)  # exp, add, log
# The mask reads the output (y > 0 exactly when x > 0, NaN included), so the pre-activation
# can be freed after the forward pass and fused into it.
unary(
    "relu",
    _relu,
    "relu({0})",
    lambda g, y, x: F.where(y > 0, g, 0),
    note="relu'(0) = 0",
    numpy_out="np.maximum({0}, 0, out={out})",
)
unary("stop_gradient", lambda x: x, "{0}", None, flops=0, note="no gradient, by definition", view=True)

# ---- binary ------------------------------------------------------------------------------

binary(
    "add",
    lambda a, b: a + b,
    "{0} + {1}",
    (lambda g, y, a, b: g, lambda g, y, a, b: g),
    implements=(np.add,),
    numpy_out="np.add({0}, {1}, out={out})",
)
binary(
    "sub",
    lambda a, b: a - b,
    "{0} - {1}",
    (lambda g, y, a, b: g, lambda g, y, a, b: -g),
    implements=(np.subtract,),
    numpy_out="np.subtract({0}, {1}, out={out})",
)
binary(
    "mul",
    lambda a, b: a * b,
    "{0} * {1}",
    (lambda g, y, a, b: g * b, lambda g, y, a, b: g * a),
    implements=(np.multiply,),
    numpy_out="np.multiply({0}, {1}, out={out})",
)
binary(
    "div",
    lambda a, b: a / b,
    "{0} / {1}",
    (lambda g, y, a, b: g / b, lambda g, y, a, b: -(g * y / b)),
    implements=(np.divide,),
    numpy_out="np.divide({0}, {1}, out={out})",
)
binary(
    "pow",
    lambda a, b: a**b,
    "{0} ** {1}",
    (
        lambda g, y, a, b: g * b * a ** (b - 1),
        # d/db a**b = y*log(a); where y == 0 (a == 0, b > 0) the limit is 0, not 0*(-inf)
        lambda g, y, a, b: g * F.where(F.eq(y, 0), 0, y * F.log(a)),
    ),
    implements=(np.power,),
    libm="pow",
    numpy_out="np.power({0}, {1}, out={out})",
)
binary(
    "maximum",
    sp.Max,
    "np.maximum({0}, {1})",
    (
        lambda g, y, a, b: F.where(a > b, g, F.where(F.eq(a, b), 0.5 * g, 0)),
        lambda g, y, a, b: F.where(b > a, g, F.where(F.eq(a, b), 0.5 * g, 0)),
    ),
    note="ties split the gradient evenly",
    implements=(np.maximum,),
)
binary(
    "minimum",
    sp.Min,
    "np.minimum({0}, {1})",
    (
        lambda g, y, a, b: F.where(a < b, g, F.where(F.eq(a, b), 0.5 * g, 0)),
        lambda g, y, a, b: F.where(b < a, g, F.where(F.eq(a, b), 0.5 * g, 0)),
    ),
    note="ties split the gradient evenly",
    implements=(np.minimum,),
)

for _name, _symbol, _relation, _ufunc in [
    ("lt", "<", sp.StrictLessThan, np.less),
    ("le", "<=", sp.LessThan, np.less_equal),
    ("gt", ">", sp.StrictGreaterThan, np.greater),
    ("ge", ">=", sp.GreaterThan, np.greater_equal),
    ("eq", "==", sp.Eq, np.equal),
    ("ne", "!=", sp.Ne, np.not_equal),
]:
    binary(
        _name,
        _relation,
        f"{{0}} {_symbol} {{1}}",
        (None, None),
        note="comparison: no gradient",
        implements=(_ufunc,),
        numpy_out=f"np.{_ufunc.__name__}({{0}}, {{1}}, out={{out}})",
    )
binary(
    "logical_and",
    sp.And,
    "{0} & {1}",
    (None, None),
    implements=(np.logical_and,),
    numpy_out="np.logical_and({0}, {1}, out={out})",
)
binary(
    "logical_or",
    sp.Or,
    "{0} | {1}",
    (None, None),
    implements=(np.logical_or,),
    numpy_out="np.logical_or({0}, {1}, out={out})",
)
unary("logical_not", sp.Not, "~{0}", None, implements=(np.logical_not,), numpy_out="np.logical_not({0}, out={out})")

# ---- ternary -----------------------------------------------------------------------------

_elementwise(
    "where",
    3,
    lambda c, a, b: sp.Piecewise((a, c), (b, True)),
    "np.where({0}, {1}, {2})",
    (None, lambda g, y, c, a, b: F.where(c, g, 0), lambda g, y, c, a, b: F.where(c, 0, g)),
)
_elementwise(
    "clip",
    3,
    lambda x, lo, hi: sp.Min(sp.Max(x, lo), hi),
    "np.clip({0}, {1}, {2})",
    # clip is min(max(x, lo), hi): with lo > hi it is hi whatever x is, so hi gets the gradient
    (
        lambda g, y, x, lo, hi: F.where(x < lo, 0, F.where(x > hi, 0, g)),
        lambda g, y, x, lo, hi: F.where(F.logical_and(x < lo, F.le(lo, hi)), g, 0),
        lambda g, y, x, lo, hi: F.where(F.maximum(x, lo) > hi, g, 0),
    ),
    flops=2,
    note="gradient to x on lo <= x <= hi; to hi when lo > hi",
    numpy_out="np.clip({0}, {1}, {2}, out={out})",
)  # a max and a min


# ---- dtype conversion (elementwise, but its type comes from its attribute) ----------------


def _cast_rule(g: Value, y: Value, x: Value, dtype: str) -> Value | None:
    # A cast to bool or int is piecewise constant: no gradient, like comparisons.
    return F.cast(g, dtype=x.dtype) if x.type.is_float and y.type.is_float else None


register(
    Op(
        "cast",
        "elementwise",
        1,
        lambda types, attrs: TensorType(types[0].shape, attrs["dtype"]),
        lambda names, attrs: f"{names[0]}.astype(np.{attrs['dtype']})",
        vjp=(_cast_rule,),
        flops=elementwise_flops(0),
        sympy=lambda x: x,
    )
)


# ---- the batching rule every elementwise op shares --------------------------------------


def lined_up(value: Value, is_batched: bool, logical: TensorType, rank: int) -> Value:
    """A batched value with size-1 axes after the batch axis, so its logical axes end where a
    rank-``rank`` result's do (NumPy broadcasting lines axes up from the right, so the batch
    axis must lead)."""
    if not is_batched or logical.ndim == rank:
        return value
    return F.reshape(value, shape=(value.shape[0],) + (1,) * (rank - logical.ndim) + logical.shape)


def batch_elementwise(
    op_name: str,
    operands: list[Value],
    batched: list[bool],
    logical: list[TensorType],
    out_type: TensorType,
    attrs: Attrs,
    size: int,
) -> Value:
    """The elementwise op ``op_name`` on operands with a leading batch axis (``Op.batch``'s
    signature after the name): the batched operands lined up with the result's axes."""
    return apply(op_name, *(lined_up(v, b, t, out_type.ndim) for v, b, t in zip(operands, batched, logical)), **attrs)
