"""Seed 001's nested function, cos(tan(sin(...))) ``depth`` deep, and its exact derivative.

The triple is applied ``depth`` times with sin innermost; seed 001 differentiates it at
x = 4.2 (SymPy gives 0.00255077238173787 at depth 30). ``reference`` carries value and
derivative through each step in 50-digit mpmath arithmetic.
"""

from __future__ import annotations

X0 = 4.2
SEED_DEPTH, SEED_DERIVATIVE = 30, 0.00255077238173787  # seed 001's printed SymPy result
SWEEP_DEPTHS = (10, 30, 100, 300, 1000, 3000, 10000)
REFERENCE_DIGITS = 50


# ---- the function and its reference --------------------------------------------------------


def nested(depth: int, sin, tan, cos):
    """f(x) = cos(tan(sin(...))) ``depth`` times, with the given sin, tan and cos (seed 001's loop)."""

    def f(x):
        for _ in range(depth):
            x = cos(tan(sin(x)))
        return x

    f.__name__ = f"nested{depth}"
    return f


def nested_numpy(depth: int):
    import numpy as np

    return nested(depth, np.sin, np.tan, np.cos)


def reference(depth: int, x0: float = X0, digits: int = REFERENCE_DIGITS):
    """(f(x0), f'(x0)) as mpmath numbers: value and derivative carried through each step at ``digits``."""
    import mpmath

    with mpmath.workdps(digits):
        value, derivative = mpmath.mpf(x0), mpmath.mpf(1)
        for _ in range(depth):
            derivative *= mpmath.cos(value)  # sin'
            value = mpmath.sin(value)
            derivative *= mpmath.sec(value) ** 2  # tan'
            value = mpmath.tan(value)
            derivative *= -mpmath.sin(value)  # cos'
            value = mpmath.cos(value)
        return +value, +derivative


def relative_error(value: float, exact) -> float | None:
    """|value - exact| / |exact| in mpmath, or None when exact is 0."""
    import mpmath

    with mpmath.workdps(REFERENCE_DIGITS):
        if exact == 0:
            return None
        return float(abs((mpmath.mpf(value) - exact) / exact))
