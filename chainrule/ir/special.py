"""Elementwise primitives of NumPy's rounding and two-operand ufuncs and of ``scipy.special``.

One entry each, as in ``elementwise.py`` (name, SymPy definition, NumPy lowering, VJP rules,
``implements``, ``libm``). Native code computes the ``scipy.special`` ones with SciPy's own
``cython_special`` functions (``backends/llvm/special_ops.py``), so both backends compute the
same elements.

Conventions (tested): floor, ceil, trunc and rint are piecewise constant: their gradient is
exactly zero (no gradient flows), also at the jumps. mod and fmod pass the gradient 1 to the
dividend and ``-floor(a/b)`` (``-trunc(a/b)``) to the divisor, away from the jumps. copysign's
gradient reaches only its first operand (the sign of the second is piecewise constant).
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import numpy as np
import scipy.special
import sympy as sp
from sympy.codegen.cfunctions import exp2, log2, log10

from chainrule.ir.builder import F
from chainrule.ir.elementwise import binary, unary

_SQRT_PI_OVER_2 = float(sp.sqrt(sp.pi) / 2)
_TWO_OVER_SQRT_PI = float(2 / sp.sqrt(sp.pi))
_LN2, _LN10 = float(sp.log(2)), float(sp.log(10))


class StepFloor(sp.floor):
    """SymPy's floor, differentiated as the step function it is: 0 away from the integers (SymPy
    leaves ``Derivative(floor(x), x)`` unevaluated). Used inside definitions (mod's) whose
    derivative ``sympy.diff`` must give; the floor op itself is defined by ``sp.floor``. Its
    ``__name__`` is floor's, so printers (``lambdify``) and readers see floor."""

    def fdiff(self, argindex: int = 1) -> sp.Basic:
        return sp.S.Zero


StepFloor.__name__ = "floor"


class StepCeiling(sp.ceiling):
    """SymPy's ceiling with derivative 0 away from the integers, as ``StepFloor``."""

    def fdiff(self, argindex: int = 1) -> sp.Basic:
        return sp.S.Zero


StepCeiling.__name__ = "ceiling"


class rint(sp.Function):  # named as NumPy's function, which it is
    """Rounding to the nearest integer, halves to even (NumPy's ``rint``, IEEE's default): SymPy
    has no such function. Piecewise constant: derivative 0 away from the half-integers."""

    @classmethod
    def eval(cls, x: sp.Basic) -> sp.Basic | None:
        if x.is_Rational or x.is_Float:
            return sp.Integer(round(Fraction(str(sp.Rational(x)))))  # Python's round is half-even
        return None

    def fdiff(self, argindex: int = 1) -> sp.Basic:
        return sp.S.Zero


def _truncated(x: Any, floor: type = sp.floor, ceiling: type = sp.ceiling) -> sp.Basic:
    """x rounded toward zero."""
    return sp.Piecewise((floor(x), x >= 0), (ceiling(x), True))


def _one_at_zero(y: Any) -> Any:
    """``y`` with its zeros replaced by 1: a divisor that is never 0."""
    return F.where(F.eq(y, 0), 1, y)


def _log_abs_gamma(x: Any) -> sp.Basic:
    """log|Γ(x)|: SciPy's gammaln (SymPy's loggamma is complex for negative x)."""
    return sp.log(sp.Abs(sp.gamma(x)))


_ZERO_GRADIENT = "zero gradient (piecewise constant), also at the jumps"

# ---- rounding: piecewise constant, so no gradient flows (an exact zero) ----------------------

unary("floor", sp.floor, "np.floor({0})", None, note=_ZERO_GRADIENT, implements=(np.floor,), libm="floor")
unary("ceil", sp.ceiling, "np.ceil({0})", None, note=_ZERO_GRADIENT, implements=(np.ceil,), libm="ceil")
unary("trunc", _truncated, "np.trunc({0})", None, note=_ZERO_GRADIENT, implements=(np.trunc,), libm="trunc")
unary(
    "rint",
    rint,
    "np.rint({0})",
    None,
    note=_ZERO_GRADIENT + "; halves round to even",
    implements=(np.rint,),
    libm="rint",
)

# ---- exponentials and logarithms to bases 2 and 10 (libm's, exact at powers of the base) --------

unary("log2", log2, "np.log2({0})", lambda g, y, x: g / (x * _LN2), implements=(np.log2,), libm="log2")
unary("log10", log10, "np.log10({0})", lambda g, y, x: g / (x * _LN10), implements=(np.log10,), libm="log10")
unary("exp2", exp2, "np.exp2({0})", lambda g, y, x: g * y * _LN2, implements=(np.exp2,), libm="exp2")

# ---- algebraic and trigonometric --------------------------------------------------------------

unary(
    "cbrt",
    lambda x: sp.Piecewise((x ** sp.Rational(1, 3), x >= 0), (-((-x) ** sp.Rational(1, 3)), True)),
    "np.cbrt({0})",
    lambda g, y, x: g / (3 * (y * y)),
    note="the real cube root; cbrt'(0) = inf",
    implements=(np.cbrt,),
    libm="cbrt",
)
binary(
    "arctan2",
    sp.atan2,
    "np.arctan2({0}, {1})",
    (lambda g, y, a, b: g * b / (a * a + b * b), lambda g, y, a, b: -(g * a / (a * a + b * b))),
    note="the angle of (b, a); a jump of 2*pi along a = 0, b < 0; no derivative at the origin",
    implements=(np.arctan2,),
    libm="atan2",
)
binary(
    "hypot",
    lambda a, b: sp.sqrt(a * a + b * b),
    "np.hypot({0}, {1})",
    # 0 at the origin (not 0/0): |z|**2 of a complex z = a + ib is hypot(a, b)**2, whose gradient
    # 2a there needs hypot's to be finite; 0 is a subgradient, and JAX's for |z| at 0. There a = b = 0,
    # so a / 1 is that 0, and no 0 / 0 is computed (NumPy would warn on every call)
    (lambda g, y, a, b: g * (a / _one_at_zero(y)), lambda g, y, a, b: g * (b / _one_at_zero(y))),
    note="a kink at the origin, where the gradient taken is 0",
    implements=(np.hypot,),
    libm="hypot",
)
binary(
    "copysign",
    lambda a, b: sp.Abs(a) * sp.sign(b),
    "np.copysign({0}, {1})",
    (lambda g, y, a, b: g * F.sign(a) * F.copysign(1.0, b), None),
    note="|a| with the sign of b (of -0.0 too); no gradient to b (its sign is piecewise constant)",
    implements=(np.copysign,),
    libm="copysign",
)
binary(
    "mod",
    lambda a, b: a - b * StepFloor(a / b),
    "np.remainder({0}, {1})",
    (lambda g, y, a, b: g, lambda g, y, a, b: -(g * F.floor(a / b))),
    note="Python's %: the sign of the divisor; jumps where a/b is an integer",
    implements=(np.remainder,),
)
binary(
    "fmod",
    lambda a, b: a - b * _truncated(a / b, StepFloor, StepCeiling),
    "np.fmod({0}, {1})",
    (lambda g, y, a, b: g, lambda g, y, a, b: -(g * F.trunc(a / b))),
    note="C's fmod: the sign of the dividend; jumps where a/b is a nonzero integer",
    implements=(np.fmod,),
    libm="fmod",
)

# ---- scipy.special -------------------------------------------------------------------------------

unary(
    "logit",
    lambda x: sp.log(x / (1 - x)),
    "special.logit({0})",
    lambda g, y, x: g / (x * (1 - x)),
    note="defined on [0, 1]: logit(0) = -inf, logit(1) = inf",
    implements=(scipy.special.logit,),
)
unary(
    "erfinv",
    sp.erfinv,
    "special.erfinv({0})",
    lambda g, y, x: g * _SQRT_PI_OVER_2 * F.exp(y * y),
    note="defined on [-1, 1]; erfinv'(±1) = inf",
    implements=(scipy.special.erfinv,),
)
unary(
    "erfcx",
    lambda x: sp.exp(x * x) * sp.erfc(x),
    "special.erfcx({0})",
    lambda g, y, x: g * (2 * x * y - _TWO_OVER_SQRT_PI),
    note="exp(x**2) * erfc(x), without its overflow and underflow",
    implements=(scipy.special.erfcx,),
)
unary(
    "gammaln",
    _log_abs_gamma,
    "special.gammaln({0})",
    lambda g, y, x: g * F.digamma(x),
    note="log|Γ(x)|; poles (inf) at 0, -1, -2, ...",
    implements=(scipy.special.gammaln,),
)
unary(
    "digamma",
    lambda x: sp.polygamma(0, x),
    "special.psi({0})",
    lambda g, y, x: g * F.zeta(2.0, x),  # trigamma(x) = ψ'(x) = ζ(2, x)
    note="poles at 0, -1, -2, ...",
    implements=(scipy.special.psi,),
)
binary(
    "zeta",
    sp.zeta,
    "special.zeta({0}, {1})",
    # d/dq ζ(s, q) = -s ζ(s + 1, q); no closed form in s, which is a constant (2) where digamma's
    # derivative uses it
    (None, lambda g, y, s, q: -(g * s * F.zeta(s + 1.0, q))),
    note="Hurwitz's zeta: defined for s > 1 (and integer s with q < 0); no gradient to s",
)
binary(
    "xlogy",
    lambda x, y: sp.Piecewise((0, sp.Eq(x, 0)), (x * sp.log(y), True)),
    "special.xlogy({0}, {1})",
    (
        lambda g, out, x, y: g * F.log(y),
        lambda g, out, x, y: F.where(F.eq(x, 0), 0, g * x / y),
    ),
    note="x*log(y), 0 where x == 0 (unless y is NaN); d/dx at x = 0 is log(y), -inf at y = 0",
    implements=(scipy.special.xlogy,),
)
binary(
    "xlog1py",
    lambda x, y: sp.Piecewise((0, sp.Eq(x, 0)), (x * sp.log(1 + y), True)),
    "special.xlog1py({0}, {1})",
    (
        lambda g, out, x, y: g * F.log1p(y),
        lambda g, out, x, y: F.where(F.eq(x, 0), 0, g * x / (1 + y)),
    ),
    note="x*log1p(y), 0 where x == 0 (unless y is NaN); d/dx at x = 0 is log1p(y)",
    implements=(scipy.special.xlog1py,),
)
unary(
    "entr",
    lambda x: sp.Piecewise((-x * sp.log(x), x > 0), (0, sp.Eq(x, 0)), (-sp.oo, True)),
    "special.entr({0})",
    lambda g, y, x: -(g * (F.log(x) + 1)),
    note="-x*log(x) for x > 0, 0 at 0, -inf below; entr'(0) = inf",
    implements=(scipy.special.entr,),
)
binary(
    "betaln",
    lambda a, b: _log_abs_gamma(a) + _log_abs_gamma(b) - _log_abs_gamma(a + b),
    "special.betaln({0}, {1})",
    (
        lambda g, y, a, b: g * (F.digamma(a) - F.digamma(a + b)),
        lambda g, y, a, b: g * (F.digamma(b) - F.digamma(a + b)),
    ),
    note="log|B(a, b)|",
    implements=(scipy.special.betaln,),
)

# Modified Bessel functions of the first kind (von Mises densities, Rician noise, Kaiser windows):
# i0' = i1, i1' = i0 - i1/x (1/2 at 0); the exponentially scaled ones, exp(-|x|) i_n(x), add
# -sign(x) times themselves
unary(
    "i0",
    lambda x: sp.besseli(0, x),
    "special.i0({0})",
    lambda g, y, x: g * F.i1(x),
    implements=(scipy.special.i0,),
)
unary(
    "i1",
    lambda x: sp.besseli(1, x),
    "special.i1({0})",
    lambda g, y, x: g * F.where(F.eq(x, 0), 0.5, F.i0(x) - y / _one_at_zero(x)),
    note="i1'(0) = 1/2",
    implements=(scipy.special.i1,),
)
unary(
    "i0e",
    lambda x: sp.exp(-sp.Abs(x)) * sp.besseli(0, x),
    "special.i0e({0})",
    lambda g, y, x: g * (F.i1e(x) - F.sign(x) * y),
    note="exp(-|x|) i0(x); the kink of |x| at 0 is harmless: i1e(0) = 0, sign(0) = 0",
    implements=(scipy.special.i0e,),
)
unary(
    "i1e",
    lambda x: sp.exp(-sp.Abs(x)) * sp.besseli(1, x),
    "special.i1e({0})",
    lambda g, y, x: g * (F.where(F.eq(x, 0), 0.5, F.i0e(x) - y / _one_at_zero(x)) - F.sign(x) * y),
    note="exp(-|x|) i1(x); i1e'(0) = 1/2",
    implements=(scipy.special.i1e,),
)
