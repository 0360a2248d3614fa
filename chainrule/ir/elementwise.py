"""Elementwise primitives: one entry each.

An entry is: name, SymPy definition, NumPy lowering, and one VJP rule per
operand written as ``(g, y, *operands)`` -> cotangent, where ``g`` is the output
cotangent and ``y`` the op's output (reused where that is cheaper: tanh' = 1 - y**2).
A rule of ``None`` means no gradient flows to that operand. Rules produce the
broadcast shape; autodiff sums them back to each operand's shape.

Kink conventions (tested): relu'(0) = 0 (the seeds' and PyTorch's), abs'(0) = 0,
maximum/minimum split the gradient evenly on ties (as JAX and PyTorch do),
clip passes the gradient to x when lo <= x <= hi (PyTorch's clamp), and to hi when lo > hi.
"""

from __future__ import annotations

import sympy as sp

from chainrule.ir.builder import F
from chainrule.ir.ops import Op, elementwise_flops, infer_elementwise, register
from chainrule.ir.types import TensorType


# ``flops`` is per output element: 1 for an op NumPy evaluates with one ufunc or libm call
# (transcendentals included), the count of its definition's operations for an op that is a
# composition (sigmoid, softplus, clip), 0 for no arithmetic (see chainrule.compiler.cost).
def _elementwise(name, arity, sympy_definition, numpy, vjp, flops=1, note=""):
    register(Op(name, "elementwise", arity, infer_elementwise(name), numpy, vjp=vjp,
                flops=elementwise_flops(flops), sympy=sympy_definition, derivative_note=note))


def unary(name, sympy_definition, numpy, rule, flops=1, note=""):
    _elementwise(name, 1, sympy_definition, numpy, (rule,), flops, note)


def binary(name, sympy_definition, numpy, rules, flops=1, note=""):
    _elementwise(name, 2, sympy_definition, numpy, rules, flops, note)


def _sigmoid(x):
    return 1 / (1 + sp.exp(-x))


def _relu(x):
    return sp.Piecewise((x, x > 0), (0, True))


# ---- unary -------------------------------------------------------------------------------

unary("neg", lambda x: -x, "-{0}", lambda g, y, x: -g)
unary("abs", sp.Abs, "np.abs({0})", lambda g, y, x: g * F.sign(x), note="abs'(0) = 0")
unary("sign", sp.sign, "np.sign({0})", None, note="zero gradient (piecewise constant)")
unary("exp", sp.exp, "np.exp({0})", lambda g, y, x: g * y)
unary("expm1", lambda x: sp.exp(x) - 1, "np.expm1({0})", lambda g, y, x: g * (y + 1))
unary("log", sp.log, "np.log({0})", lambda g, y, x: g / x)
unary("log1p", lambda x: sp.log(1 + x), "np.log1p({0})", lambda g, y, x: g / (1 + x))
unary("sqrt", sp.sqrt, "np.sqrt({0})", lambda g, y, x: g / (2 * y), note="sqrt'(0) = inf")
unary("sin", sp.sin, "np.sin({0})", lambda g, y, x: g * F.cos(x))
# -(g * ...) rather than (-g) * ...: for the seed cotangent g = 1, -g would fold to a constant
# -1 that the product then drops (x * -1 -> -x), leaving a dead node behind (here, in arccos, div).
unary("cos", sp.cos, "np.cos({0})", lambda g, y, x: -(g * F.sin(x)))
unary("tan", sp.tan, "np.tan({0})", lambda g, y, x: g * (1 + y * y))
unary("sinh", sp.sinh, "np.sinh({0})", lambda g, y, x: g * F.cosh(x))
unary("cosh", sp.cosh, "np.cosh({0})", lambda g, y, x: g * F.sinh(x))
unary("tanh", sp.tanh, "np.tanh({0})", lambda g, y, x: g * (1 - y * y))
unary("arcsin", sp.asin, "np.arcsin({0})", lambda g, y, x: g / F.sqrt(1 - x * x))
unary("arccos", sp.acos, "np.arccos({0})", lambda g, y, x: -(g / F.sqrt(1 - x * x)))
unary("arctan", sp.atan, "np.arctan({0})", lambda g, y, x: g / (1 + x * x))
unary("arcsinh", sp.asinh, "np.arcsinh({0})", lambda g, y, x: g / F.sqrt(x * x + 1))
unary("arccosh", sp.acosh, "np.arccosh({0})", lambda g, y, x: g / F.sqrt(x * x - 1))
unary("arctanh", sp.atanh, "np.arctanh({0})", lambda g, y, x: g / (1 - x * x))
unary("erf", sp.erf, "special.erf({0})",
      lambda g, y, x: g * (2 / float(sp.sqrt(sp.pi))) * F.exp(-(x * x)))
# 1/(1+exp(-x)): neg, exp, add, div, so nn.sigmoid costs what the spelled-out form does
unary("sigmoid", _sigmoid, "sigmoid({0})", lambda g, y, x: g * y * (1 - y), flops=4)
unary("softplus", lambda x: sp.log(1 + sp.exp(x)), "softplus({0})", lambda g, y, x: g * F.sigmoid(x),
      flops=3)  # exp, add, log
# The mask reads the output (y > 0 exactly when x > 0, NaN included), so the pre-activation
# can be freed after the forward pass and fused into it.
unary("relu", _relu, "relu({0})", lambda g, y, x: F.where(y > 0, g, 0), note="relu'(0) = 0")
unary("stop_gradient", lambda x: x, "{0}", None, flops=0, note="no gradient, by definition")

# ---- binary ------------------------------------------------------------------------------

binary("add", lambda a, b: a + b, "{0} + {1}", (lambda g, y, a, b: g, lambda g, y, a, b: g))
binary("sub", lambda a, b: a - b, "{0} - {1}", (lambda g, y, a, b: g, lambda g, y, a, b: -g))
binary("mul", lambda a, b: a * b, "{0} * {1}", (lambda g, y, a, b: g * b, lambda g, y, a, b: g * a))
binary("div", lambda a, b: a / b, "{0} / {1}", (lambda g, y, a, b: g / b, lambda g, y, a, b: -(g * y / b)))
binary("pow", lambda a, b: a ** b, "{0} ** {1}",
       (lambda g, y, a, b: g * b * a ** (b - 1),
        # d/db a**b = y*log(a); where y == 0 (a == 0, b > 0) the limit is 0, not 0*(-inf)
        lambda g, y, a, b: g * F.where(F.eq(y, 0), 0, y * F.log(a))))
binary("maximum", sp.Max, "np.maximum({0}, {1})",
       (lambda g, y, a, b: F.where(a > b, g, F.where(F.eq(a, b), 0.5 * g, 0)),
        lambda g, y, a, b: F.where(b > a, g, F.where(F.eq(a, b), 0.5 * g, 0))),
       note="ties split the gradient evenly")
binary("minimum", sp.Min, "np.minimum({0}, {1})",
       (lambda g, y, a, b: F.where(a < b, g, F.where(F.eq(a, b), 0.5 * g, 0)),
        lambda g, y, a, b: F.where(b < a, g, F.where(F.eq(a, b), 0.5 * g, 0))),
       note="ties split the gradient evenly")

for _name, _symbol, _relation in [("lt", "<", sp.StrictLessThan), ("le", "<=", sp.LessThan),
                                  ("gt", ">", sp.StrictGreaterThan), ("ge", ">=", sp.GreaterThan),
                                  ("eq", "==", sp.Eq), ("ne", "!=", sp.Ne)]:
    binary(_name, _relation, "{0} %s {1}" % _symbol, (None, None), note="comparison: no gradient")
binary("logical_and", sp.And, "{0} & {1}", (None, None))
binary("logical_or", sp.Or, "{0} | {1}", (None, None))
unary("logical_not", sp.Not, "~{0}", None)

# ---- ternary -----------------------------------------------------------------------------

_elementwise("where", 3, lambda c, a, b: sp.Piecewise((a, c), (b, True)), "np.where({0}, {1}, {2})",
             (None, lambda g, y, c, a, b: F.where(c, g, 0), lambda g, y, c, a, b: F.where(c, 0, g)))
_elementwise("clip", 3, lambda x, lo, hi: sp.Min(sp.Max(x, lo), hi), "np.clip({0}, {1}, {2})",
             # clip is min(max(x, lo), hi): with lo > hi it is hi whatever x is, so hi gets the gradient
             (lambda g, y, x, lo, hi: F.where(x < lo, 0, F.where(x > hi, 0, g)),
              lambda g, y, x, lo, hi: F.where(F.logical_and(x < lo, F.le(lo, hi)), g, 0),
              lambda g, y, x, lo, hi: F.where(F.maximum(x, lo) > hi, g, 0)),
             flops=2, note="gradient to x on lo <= x <= hi; to hi when lo > hi")  # a max and a min


# ---- dtype conversion (elementwise, but its type comes from its attribute) ----------------

def _cast_rule(g, y, x, dtype):
    # A cast to bool or int is piecewise constant: no gradient, like comparisons.
    return F.cast(g, dtype=x.dtype) if x.type.is_float and y.type.is_float else None


register(Op("cast", "elementwise", 1,
            lambda types, attrs: TensorType(types[0].shape, attrs["dtype"]),
            lambda names, attrs: f"{names[0]}.astype(np.{attrs['dtype']})",
            vjp=(_cast_rule,), flops=elementwise_flops(0), sympy=lambda x: x))
