"""More elementwise primitives of ``scipy.special``: Γ and its ratios, the normal quantile, the
exponential integral, Dawson's and Spence's functions, the regularized incomplete gamma functions
and the Bessel functions of real order. Entries as in ``special.py``; native code calls SciPy's
``cython_special`` (``backends/llvm/special_ops.py``).

Where SymPy's function has no NumPy/SciPy printer (E₁, Spence's dilogarithm), the definition is a
SymPy function of the same name with its derivative (``fdiff``) and SciPy's ufunc as its numeric
implementation (``_imp_``, which ``lambdify`` calls).

The incomplete gamma functions and the Bessel functions differentiate in their second operand
only: the derivative in the first (``a``, the order ``v``) has no closed form. Its rule refuses
(``refused_rule``): a gradient asked of it raises ``UnsupportedError`` rather than being a silent
zero; a traced ``a`` or ``v`` that no gradient is asked of (a constant argument, ``stop_gradient``)
traces and computes.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import scipy.special
import sympy as sp

from chainrule.errors import UnsupportedError
from chainrule.ir.builder import F
from chainrule.ir.elementwise import binary, unary

_SQRT_2PI = math.sqrt(2.0 * math.pi)
_SQRT_PI_OVER_2 = math.sqrt(math.pi) / 2.0


class exp1(sp.Function):  # named as SciPy's function, which it is
    """E₁(x) = ∫₁^∞ exp(-x t)/t dt for x > 0 (SymPy's ``expint(1, x)``, which lambdify cannot print)."""

    _imp_ = staticmethod(scipy.special.exp1)

    def fdiff(self, argindex: int = 1) -> sp.Basic:
        (x,) = self.args
        return -sp.exp(-x) / x

    def _eval_rewrite_as_expint(self, x: sp.Basic, **kwargs: Any) -> sp.Basic:
        return sp.expint(1, x)


class spence(sp.Function):  # named as SciPy's function, which it is
    """SciPy's Spence function ∫₁^z log(t)/(1 - t) dt = Li₂(1 - z), for z >= 0."""

    _imp_ = staticmethod(scipy.special.spence)

    def fdiff(self, argindex: int = 1) -> sp.Basic:
        (z,) = self.args
        return sp.log(z) / (1 - z)

    def _eval_rewrite_as_polylog(self, z: sp.Basic, **kwargs: Any) -> sp.Basic:
        return sp.polylog(2, 1 - z)


def refused_rule(op: str, operand: str) -> Any:
    """The VJP rule of an operand whose derivative has no closed form: raises when a gradient (or
    tangent) reaches it. Marked ``refused`` for the tests that enumerate rules."""

    def rule(*args: Any, **attrs: Any) -> None:
        raise UnsupportedError(
            f"scipy.special.{op}: no gradient with respect to its {operand} (the derivative in {operand} has "
            f"no closed form); pass {operand} as a constant or wrap it in cr.stop_gradient"
        )

    rule.refused = True  # type: ignore[attr-defined]
    return rule


def _positive_only(expression: sp.Basic, x: Any) -> sp.Basic:
    """``expression`` for x > 0, NaN elsewhere (where SciPy's real function gives NaN)."""
    return sp.Piecewise((expression, x > 0), (sp.nan, True))


def _gamma_ratio(numerator: tuple, denominator: tuple) -> sp.Basic:
    return sp.Mul(*[sp.gamma(u) for u in numerator]) / sp.Mul(*[sp.gamma(u) for u in denominator])


# ---- Γ and its ratios: derivatives through digamma, which keeps the sign of Γ (negative between
# -2k-1 and -2k), so they hold for negative non-integer operands too --------------------------------

unary(
    "gamma",
    sp.gamma,
    "special.gamma({0})",
    lambda g, y, x: g * y * F.digamma(x),
    note="Γ(x); poles at 0, -1, -2, ... (SciPy: ±inf at ±0, NaN at the negative integers)",
    implements=(scipy.special.gamma,),
)
unary(
    "rgamma",
    lambda x: 1 / sp.gamma(x),
    "special.rgamma({0})",
    # -ψ(x)/Γ(x) away from the zeros; at x = -n (where y = 0 and ψ has a pole) its limit (-1)^n n!,
    # which is cos(πx) Γ(1 - x) there
    lambda g, y, x: (
        g * F.where(F.logical_and(F.eq(y, 0), x <= 0), F.cos(np.pi * x) * F.gamma(1 - x), -(y * F.digamma(x)))
    ),
    note="1/Γ(x), entire: 0 at 0, -1, -2, ..., where its derivative is (-1)^n n!",
    implements=(scipy.special.rgamma,),
)
unary(
    "loggamma",
    lambda x: _positive_only(sp.loggamma(x), x),
    "special.loggamma({0})",
    lambda g, y, x: g * F.digamma(x),
    note="log Γ(x) of real x > 0 (NaN below: SciPy's real loggamma); complex x is not traced",
    implements=(scipy.special.loggamma,),
)
binary(
    "beta",
    lambda a, b: _gamma_ratio((a, b), (a + b,)),
    "special.beta({0}, {1})",
    (
        lambda g, y, a, b: g * y * (F.digamma(a) - F.digamma(a + b)),
        lambda g, y, a, b: g * y * (F.digamma(b) - F.digamma(a + b)),
    ),
    note="Γ(a)Γ(b)/Γ(a+b), signed (not exp(betaln))",
    implements=(scipy.special.beta,),
)
binary(
    "binom",
    lambda n, k: _gamma_ratio((n + 1,), (k + 1, n - k + 1)),
    "special.binom({0}, {1})",
    (
        lambda g, y, n, k: g * y * (F.digamma(n + 1) - F.digamma(n - k + 1)),
        lambda g, y, n, k: g * y * (F.digamma(n - k + 1) - F.digamma(k + 1)),
    ),
    note="Γ(n+1)/(Γ(k+1)Γ(n-k+1)); where it is 0 (a pole below) the rule's 0 * inf gives NaN",
    implements=(scipy.special.binom,),
)
binary(
    "poch",
    lambda z, m: _gamma_ratio((z + m,), (z,)),
    "special.poch({0}, {1})",
    (
        lambda g, y, z, m: g * y * (F.digamma(z + m) - F.digamma(z)),
        lambda g, y, z, m: g * y * F.digamma(z + m),
    ),
    note="the rising factorial Γ(z+m)/Γ(z)",
    implements=(scipy.special.poch,),
)

# ---- the normal quantile and the inverse complementary error function --------------------------

unary(
    "ndtri",
    lambda p: sp.sqrt(2) * sp.erfinv(2 * p - 1),
    "special.ndtri({0})",
    lambda g, y, p: g * _SQRT_2PI * F.exp(0.5 * (y * y)),
    note="the standard normal quantile, on [0, 1]; ndtri'(0) = ndtri'(1) = inf",
    implements=(scipy.special.ndtri,),
)
unary(
    "erfcinv",
    sp.erfcinv,
    "special.erfcinv({0})",
    lambda g, y, x: -(g * _SQRT_PI_OVER_2 * F.exp(y * y)),
    note="defined on [0, 2]",
    implements=(scipy.special.erfcinv,),
)

# ---- exponential integral, Dawson's and Spence's functions --------------------------------------

unary(
    "exp1",
    lambda x: _positive_only(exp1(x), x),
    "special.exp1({0})",
    lambda g, y, x: -(g * F.exp(-x) / x),
    note="E₁(x) for x > 0 (inf at 0, NaN below: SciPy's real exp1)",
    implements=(scipy.special.exp1,),
)
unary(
    "dawsn",
    lambda x: sp.sqrt(sp.pi) / 2 * sp.exp(-x * x) * sp.erfi(x),
    "special.dawsn({0})",
    lambda g, y, x: g * (1 - 2 * x * y),
    note="Dawson's integral exp(-x²) ∫₀ˣ exp(t²) dt",
    implements=(scipy.special.dawsn,),
)
unary(
    "spence",
    lambda z: sp.Piecewise((spence(z), z >= 0), (sp.nan, True)),
    "special.spence({0})",
    # log(z)/(1 - z), -1 at z = 1 (its limit); there z - 1 is replaced by 1 so no 0/0 is computed
    lambda g, y, z: g * F.where(F.eq(z, 1), -1.0, F.log(z) / F.where(F.eq(z, 1), 1.0, 1 - z)),
    note="∫₁^z log(t)/(1 - t) dt for z >= 0 (NaN below); spence'(0) = -inf",
    implements=(scipy.special.spence,),
)

# ---- regularized incomplete gamma functions: gradient to x only -------------------------------


def _incomplete_gamma_density(x: Any, a: Any) -> Any:
    """x^(a-1) exp(-x) / Γ(a), for a > 0, as exp((a-1) log x - x - log Γ(a))."""
    return F.exp(F.xlogy(a - 1, x) - x - F.gammaln(a))


binary(
    "gammainc",
    lambda a, x: sp.lowergamma(a, x) / sp.gamma(a),
    "special.gammainc({0}, {1})",
    (refused_rule("gammainc", "a"), lambda g, y, a, x: g * _incomplete_gamma_density(x, a)),
    note="P(a, x) for a > 0, x >= 0; a gradient to a is refused (no closed form)",
    implements=(scipy.special.gammainc,),
)
binary(
    "gammaincc",
    lambda a, x: sp.uppergamma(a, x) / sp.gamma(a),
    "special.gammaincc({0}, {1})",
    (refused_rule("gammaincc", "a"), lambda g, y, a, x: -(g * _incomplete_gamma_density(x, a))),
    note="Q(a, x) = 1 - P(a, x); a gradient to a is refused (no closed form)",
    implements=(scipy.special.gammaincc,),
)

# ---- Bessel functions of real order v: gradient to x only -------------------------------------

binary(
    "jv",
    sp.besselj,
    "special.jv({0}, {1})",
    (refused_rule("jv", "order v"), lambda g, y, v, x: g * 0.5 * (F.jv(v - 1, x) - F.jv(v + 1, x))),
    note="J_v(x); a gradient to the order v is refused",
    implements=(scipy.special.jv,),
)
binary(
    "yv",
    sp.bessely,
    "special.yv({0}, {1})",
    (refused_rule("yv", "order v"), lambda g, y, v, x: g * 0.5 * (F.yv(v - 1, x) - F.yv(v + 1, x))),
    note="Y_v(x) for x > 0; a gradient to the order v is refused",
    implements=(scipy.special.yv,),
)
binary(
    "iv",
    sp.besseli,
    "special.iv({0}, {1})",
    (refused_rule("iv", "order v"), lambda g, y, v, x: g * 0.5 * (F.iv(v - 1, x) + F.iv(v + 1, x))),
    note="I_v(x); a gradient to the order v is refused",
    implements=(scipy.special.iv,),
)
binary(
    "kv",
    sp.besselk,
    "special.kv({0}, {1})",
    (refused_rule("kv", "order v"), lambda g, y, v, x: -(g * 0.5 * (F.kv(v - 1, x) + F.kv(v + 1, x)))),
    note="K_v(x) for x > 0; a gradient to the order v is refused",
    implements=(scipy.special.kv,),
)
