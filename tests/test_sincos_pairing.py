"""sin and cos of one value are one sincos call in straight-line llvm code (irtext.Function.math).

The nested gradient needs sin and cos of x (sin forward, cos for its derivative), tan of sin(x)
(its derivative is 1 + tan**2, from the value), and cos and sin of that (cos forward, -sin for
its derivative): 3 math calls per level, counted in the optimized IR. Loops keep separate vector
sin and cos calls (mathlib.sincos_lines says why).
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

import chainrule as cr
from chainrule.backends.llvm import mathlib
from chainrule.cli.nested_function import X0, nested_numpy, reference

pytestmark = pytest.mark.skipif(not mathlib.pairs_sincos(), reason="this LLVM has no llvm.sincos")


def math_calls(optimized_ir: str) -> dict[str, int]:
    """How many calls of each math function (an intrinsic's name without ``llvm.``/type) the IR makes."""
    counts: dict[str, int] = {}
    for name in re.findall(r"call [^@\n]*@(?:llvm\.)?(sin|cos|tan|sincos)(?:\.f64)?\(", optimized_ir):
        counts[name] = counts.get(name, 0) + 1
    return counts


def optimized_ir_of(compiled, *args) -> str:
    entry, _ = compiled._specialize(args)
    return entry.kernel.native.optimized_ir


@pytest.mark.parametrize("depth", [10, 30])
def test_the_nested_scalar_gradient_makes_three_math_calls_per_level(depth):
    grad = cr.grad(nested_numpy(depth), backend="llvm")
    exact_value, exact_derivative = reference(depth)
    value, derivative = cr.value_and_grad(nested_numpy(depth), backend="llvm")(X0)
    assert (value, derivative) == pytest.approx((float(exact_value), float(exact_derivative)), rel=1e-12)
    assert grad(X0) == derivative
    calls = math_calls(optimized_ir_of(grad, X0))
    assert calls == {"sincos": 2 * depth, "tan": depth}


def test_a_pair_gives_exactly_what_libm_sin_and_cos_give():
    both = cr.jit(lambda x: (np.sin(x), np.cos(x), np.sin(x) * np.cos(x)), backend="llvm")
    assert math_calls(optimized_ir_of(both, 0.5)) == {"sincos": 1}
    for x in np.linspace(-20.0, 20.0, 401).tolist() + [1e-300, 3e10, -7.5e5]:
        sine, cosine, product = both(x)
        assert (sine, cosine) == (math.sin(x), math.cos(x))
        assert product == math.sin(x) * math.cos(x)


def test_the_paired_gradient_agrees_with_numpy_and_finite_differences():
    def f(x):
        return np.sin(x) ** 2 * np.cos(x) + np.tan(np.cos(x))

    for x in (0.3, 1.2, -2.1):
        llvm = cr.grad(f, backend="llvm")(x)
        assert llvm == pytest.approx(cr.grad(f)(x), rel=1e-14)
        step = 1e-6
        assert llvm == pytest.approx((f(x + step) - f(x - step)) / (2 * step), rel=1e-7)


def test_loops_keep_separate_vector_sin_and_cos():
    x = np.linspace(0.1, 3.0, 1000)
    grad = cr.grad(lambda x: np.sum(nested_numpy(3)(x)), backend="llvm")
    expected = cr.grad(lambda x: np.sum(nested_numpy(3)(x)))(x)
    np.testing.assert_allclose(grad(x), expected, rtol=1e-12)
    assert "sincos" not in math_calls(optimized_ir_of(grad, x))
