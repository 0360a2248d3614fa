"""Disagreements the differential fuzzer (tests/test_fuzz.py) found, each kept as the minimized
program it shrank to and as the plain NumPy function a user would write.

Expected values come from the mathematics, not from chainrule: a function that is constant
near the point has derivative 0 at every order.
"""

from __future__ import annotations

import warnings

import numpy as np
from fuzz_programs import Instruction, Program
from hypothesis import Phase, example, given, settings
from hypothesis import strategies as st
from test_fuzz import check_program

import chainrule as cr

BACKENDS = ("numpy", "llvm")


def replay(*instructions: Instruction, seed: int = 0) -> None:
    """The fuzzer's checks on one minimized program, at the point ``seed`` draws."""
    program = Program(instructions, (1.0,) * len(instructions))

    @settings(phases=[Phase.explicit], database=None, deadline=None)
    @example(program, seed)
    @given(st.just(program), st.just(seed))
    def run(program: Program, seed: int) -> None:
        check_program(program, seed)

    run()


def assert_all_derivatives_zero(f, point) -> None:
    """grad (both backends), jvp and hvp of a function constant near ``point`` are all exactly 0."""
    direction = np.linspace(-1.0, 1.0, point.size).reshape(point.shape)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a 0 * inf on the way is a failure too
        for backend in BACKENDS:
            np.testing.assert_array_equal(cr.grad(f, backend=backend)(point), np.zeros_like(point))
        assert cr.jvp(f, (point,), (direction,))[1] == 0.0
        np.testing.assert_array_equal(cr.hvp(f)(point, direction), np.zeros_like(point))


def test_sqrt_of_a_broadcast_minus_itself_has_zero_derivatives():
    """Found by the widened generator: ``full(a) - full(a)`` for a row ``a`` traced as
    ``sub(a, broadcast_to(a))``, since the canonical rule that drops a broadcast NumPy would do
    anyway narrowed one side of ``b - b``; the sub was no longer ``x - x``, so sqrt'(0) = inf met
    a zero derivative: NaN, where the function is constant 0."""

    def sqrt_of_zero(row):
        full = np.broadcast_to(row, (2, 3)) * 1.0
        return np.sum(np.sqrt(full - full))

    assert_all_derivatives_zero(sqrt_of_zero, np.array([0.3, -0.7, 1.1]))
    replay(Instruction("special", "sqrt_zero", (1, 1)))


def test_std_of_a_broadcast_constant_has_zero_derivatives():
    """Zero variance reached by arithmetic, not by x - x: mean(broadcast_to(s)) is (s + s + s) / 3,
    a different node from s, exactly s at s = 1.0, so sqrt'(0) = inf met a zero derivative: NaN.
    Simplify now takes (3 * s) / 3 as s and hoists the broadcasts out of ``b - s``, which leaves
    ``s - s``, through which no derivative flows."""

    def std_of_constant(x):
        return np.std(np.broadcast_to(x[0], (3,)))

    assert_all_derivatives_zero(std_of_constant, np.array([1.0, 2.0]))


def test_where_on_x_greater_than_x_has_the_derivative_of_its_false_branch():
    """Found by the first long run (v1 generator, seed 101): ``where(x > x, x * x, x - x)`` is
    ``x - x`` for every x, so cbrt of it is constant; forward mode sent where(False, t, 0) = 0 into
    cbrt'(0) = inf: NaN. ``x > x`` is now the constant False and where on it keeps its branch."""

    def cbrt_of_where(x):
        return np.sum(np.cbrt(np.where(x > x, x * x, x - x)))

    assert_all_derivatives_zero(cbrt_of_where, np.array([[0.3, -0.2, 0.5], [0.1, 0.9, -0.4]]))
    replay(
        Instruction("where", "where", (0, 0)),
        Instruction("where", "where", (0, 0)),
        Instruction("unary", "cbrt", (2, 0)),
    )


def test_cbrt_of_a_product_with_x_minus_x_has_zero_derivative():
    """Found by the first long run (v1 generator, seed 101), shrunk: where(x > 0, x * (x - x), x).
    x * (x - x) is 0 for every finite x, but the product rule's x * 0 + (x - x) * 1 is a computed 0
    that met cbrt'(0) = inf (JAX and PyTorch give NaN too). It is a structural zero now
    (``chainrule.ir.structural_zeros``): no derivative flows through it."""

    def cbrt_of_zero_product(x):
        return np.sum(np.cbrt(x * (x - x)))

    assert_all_derivatives_zero(cbrt_of_zero_product, np.array([[0.3, -0.2, 0.5], [0.1, 0.9, -0.4]]))


def central_difference(f, point, along, step=1e-4):
    """Fourth-order central difference of f at point along a direction."""
    values = [f(point + k * step * along) for k in (-2, -1, 1, 2)]
    return (values[0] - 8 * values[1] + 8 * values[2] - values[3]) / (12 * step)


def row_norms_of_padded(x):
    padded = np.zeros((2, 3))
    padded[1] = x[0]
    return np.sum(np.linalg.norm(padded, axis=1))


def test_jvp_of_the_norms_of_a_padded_array_is_finite():
    """Found by the v2 long run (seed 201), shrunk: a row written into zeros, per-row norms. The
    zero row's tangent was sum(2 * 0 * t) = 0 and sqrt's JVP made 0 / (2 sqrt(0)) = NaN where the
    norm is constant 0 (reverse mode was right: the NaN cotangent landed on the constant zeros). The
    row is a structural zero now, and sqrt's derivative is set to 0 there (both modes), evaluated
    away from the zero so that NumPy has no division by 0 to warn of."""
    warnings.simplefilter("error", RuntimeWarning)  # (pytest restores the filters after the test)
    x = np.array([[0.3, -0.2, 0.5], [0.1, 0.9, -0.4]])
    along = np.linspace(-1.0, 1.0, 6).reshape(2, 3)
    expected = central_difference(row_norms_of_padded, x, along)
    np.testing.assert_allclose(expected, np.sum(x[0] * along[0]) / np.linalg.norm(x[0]), rtol=1e-9)
    for backend in BACKENDS:
        gradient = cr.grad(row_norms_of_padded, backend=backend)(x)
        np.testing.assert_allclose(np.sum(gradient * along), expected, rtol=1e-9)
        np.testing.assert_allclose(gradient[0], x[0] / np.linalg.norm(x[0]), rtol=1e-12)
    np.testing.assert_allclose(cr.jvp(row_norms_of_padded, (x,), (along,))[1], expected, rtol=1e-9)
    gradient = cr.grad(row_norms_of_padded)
    hessian_along = central_difference(gradient, x, along, step=1e-3)
    np.testing.assert_allclose(cr.hvp(row_norms_of_padded)(x, along), hessian_along, rtol=1e-7, atol=1e-9)


def test_derivatives_that_do_not_exist_stay_as_documented():
    """Structural zeros are elements constant at 0 whatever the inputs; a value that is 0 only at
    this point keeps the rules' answer: sqrt'(0) = inf, and the 2-norm at 0, |x| as sqrt(x * x) at
    0 and std of equal values have no derivative, NaN (docs/linalg.md, docs/reliability.md)."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for backend in BACKENDS:
            assert cr.grad(lambda x: np.sum(np.sqrt(x)), backend=backend)(np.array([0.0, 1.0]))[0] == np.inf
            assert np.isnan(cr.grad(np.linalg.norm, backend=backend)(np.zeros(3))).all()
            assert np.isnan(cr.grad(lambda x: np.sum(np.sqrt(x * x)), backend=backend)(np.zeros(2))).all()
            assert np.isnan(cr.grad(np.std, backend=backend)(np.ones(3))).all()
        assert np.isnan(cr.jvp(np.linalg.norm, (np.zeros(3),), (np.ones(3),))[1])
        assert cr.jvp(np.sqrt, (0.0,), (1.0,))[1] == np.inf


def test_a_row_that_is_zero_by_multiplication_by_a_constant_zero_is_a_structural_zero():
    """x * 0.0 (a constant) is 0 for every finite x: the norm of that row has derivative 0, so the
    forward-mode derivative is the other row's alone, and NumPy has no division by 0 to warn of."""
    warnings.simplefilter("error", RuntimeWarning)

    def norms(x):
        return np.sum(np.linalg.norm(np.stack([x * 0.0, x]), axis=1))

    x, along = np.array([0.3, 0.4]), np.array([-1.0, 1.0])
    expected = central_difference(norms, x, along)
    np.testing.assert_allclose(cr.jvp(norms, (x,), (along,))[1], expected, rtol=1e-9)
    for backend in BACKENDS:
        np.testing.assert_allclose(np.sum(cr.grad(norms, backend=backend)(x) * along), expected, rtol=1e-9)
