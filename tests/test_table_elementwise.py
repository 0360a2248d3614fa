"""Every differentiable elementwise op of the table, checked from its entry alone.

The ops are enumerated from ``OPS``, so a new entry is checked with no test
edits: its reverse-mode gradient against central finite differences (float64,
relative error < 1e-7, and float32 close to it), each VJP rule against
``sympy.diff`` of the op's SymPy definition, forward mode against reverse mode,
the LLVM backend against the NumPy backend, and the vectorized Jacobian against
one pass per row.

Sample points are chosen from the entry too: every combination of a fixed pool
of values (``POOL``; True/False for an operand the definition uses as a
condition) is a candidate, kept where the op's NumPy value is finite, the SymPy
derivatives are real and finite, and they barely move within ``KINK_DISTANCE``
of the point (so no kink, tie or pole is nearby). No op has points of its own.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass

import numpy as np
import pytest
import sympy as sp
from gradient_helpers import numerical_gradient, relative_error, weighted_sum

import chainrule as cr
from chainrule.errors import UnsupportedError
from chainrule.frontends.tracer import is_traced, operation
from chainrule.ir import OPS, Graph, TensorType, Value
from chainrule.ir.sympy_bridge import graph_to_sympy

# No 0, no +-1, no two values a simple relation ties: the candidates for a real operand.
POOL = (
    -2.9,
    -2.3,
    -1.7,
    -1.35,
    -1.15,
    -0.85,
    -0.55,
    -0.3,
    -0.1,
    0.15,
    0.35,
    0.6,
    0.8,
    0.95,
    1.1,
    1.4,
    1.75,
    2.2,
    2.6,
    3.1,
)
KINK_DISTANCE = 1e-3  # beyond the finite differences' reach (2 * 1e-4 * max(1, |x|))
MAX_CANDIDATES = 400
POINTS = 40  # kept points, spread evenly over the candidates that pass
# An op whose result type comes from an attribute cannot be built from operands alone.
ATTRIBUTES = {"cast": {"dtype": "float64"}}

DIFFERENTIABLE = sorted(
    name
    for name, op in OPS.items()
    if op.is_elementwise and op.vjp is not None and any(op.vjp_rule(i) is not None for i in range(op.arity))
)


def has_rule(name: str, position: int) -> bool:
    """A rule that gives a gradient (not None, and not one refusing: no closed form, see
    ``special_functions.refused_rule``)."""
    return OPS[name].vjp_rule(position) is not None and not OPS[name].refuses_gradient(position)


RULES = [(name, i) for name in DIFFERENTIABLE for i in range(OPS[name].arity) if has_rule(name, i)]
REFUSED = [(name, i) for name in DIFFERENTIABLE for i in range(OPS[name].arity) if OPS[name].refuses_gradient(i)]


@dataclass(frozen=True)
class Sampled:
    """An op's sample points (one array per operand), and what is derived from its entry."""

    name: str
    attrs: dict
    columns: tuple  # one array per operand
    wrt: tuple  # the operand positions with a VJP rule
    symbols: tuple  # one SymPy symbol per operand

    def function(self):
        """The op as a Python function of its differentiable operands (the others fixed)."""

        def apply_op(*differentiable):
            operands = list(self.columns)
            for position, value in zip(self.wrt, differentiable):
                operands[position] = value
            if any(is_traced(o) for o in operands):
                return operation(self.name, *operands, **self.attrs)
            return OPS[self.name].eager(*operands, **self.attrs)

        return apply_op

    def loss(self):
        apply_op = self.function()
        return lambda *differentiable: weighted_sum(apply_op(*differentiable))

    @property
    def args(self) -> tuple:
        return tuple(self.columns[i] for i in self.wrt)


def operand_symbols(op) -> tuple:
    """One SymPy symbol per operand: real, or a plain (Boolean) symbol where the definition
    uses the operand as a condition (where's first), which a number cannot stand in for."""
    real = tuple(sp.Symbol(f"a{i}", real=True) for i in range(op.arity))
    definition = op.sympy(*real)

    def is_condition(symbol) -> bool:
        try:
            definition.subs(symbol, sp.Float(0.5))
        except TypeError:
            return True
        return False

    return tuple(sp.Symbol(s.name) if is_condition(s) else s for s in real)


def numeric(expression, symbols):
    return sp.lambdify(symbols, expression, modules=["numpy", "scipy"])


def evaluate(function, columns, shape) -> tuple:
    """(real values, mask of where they are real and finite) of a lambdified expression at the points."""
    with np.errstate(all="ignore"):
        values = np.broadcast_to(np.asarray(function(*columns)), shape)
    real = np.isreal(values) if np.iscomplexobj(values) else np.ones(shape, bool)
    values = np.real(values).astype(np.float64)
    return values, real & np.isfinite(values)


def candidate_columns(symbols) -> list:
    pools = [POOL if s.is_real else (True, False) for s in symbols]
    candidates = list(itertools.product(*pools))
    if len(candidates) > MAX_CANDIDATES:  # a fixed spread-out subset (a stride would fix the last operand)
        chosen = np.random.default_rng(0).choice(len(candidates), MAX_CANDIDATES, replace=False)
        candidates = [candidates[i] for i in sorted(chosen)]
    return [np.array(column) for column in zip(*candidates)]


@functools.cache
def sampled(name: str) -> Sampled:
    op, attrs = OPS[name], ATTRIBUTES.get(name, {})
    symbols = operand_symbols(op)
    wrt = tuple(i for i in range(op.arity) if has_rule(name, i))
    columns = candidate_columns(symbols)
    shape = columns[0].shape
    derivatives = [numeric(sp.diff(op.sympy(*symbols), symbols[i]), symbols) for i in wrt]
    at_point = [evaluate(d, columns, shape) for d in derivatives]
    with np.errstate(all="ignore"):
        value = np.asarray(op.eager(*columns, **attrs), dtype=np.float64)
    keep = np.isfinite(value)
    for _, finite in at_point:
        keep &= finite
    for position, (slope, _) in zip(wrt, at_point):
        for offset in (KINK_DISTANCE, -KINK_DISTANCE):
            shifted = [c + offset if i == position else c for i, c in enumerate(columns)]
            for derivative, (values, _) in zip(derivatives, at_point):
                nearby, finite = evaluate(derivative, shifted, shape)
                keep &= finite & (np.abs(nearby - values) <= 0.05 * (1 + np.abs(values)))
            # no jump nearby either (mod's): the value moves as its slope says, to first order
            with np.errstate(all="ignore"):
                moved = np.asarray(op.eager(*shifted, **attrs), dtype=np.float64)
                keep &= np.abs(moved - value - offset * slope) <= 0.05 * KINK_DISTANCE * (1 + np.abs(slope))
    kept = np.flatnonzero(keep)
    assert len(kept) >= 5, f"{name}: only {len(kept)} of the pool's points are inside its domain and off its kinks"
    chosen = kept[np.linspace(0, len(kept) - 1, min(POINTS, len(kept))).astype(int)]
    return Sampled(name, attrs, tuple(c[chosen] for c in columns), wrt, symbols)


def as_tuple(result) -> tuple:
    return result if isinstance(result, tuple) else (result,)


# ---- reverse mode against finite differences --------------------------------------------------


@pytest.mark.parametrize("name", DIFFERENTIABLE)
def test_gradient_matches_central_differences(name):
    s = sampled(name)
    gradients = as_tuple(cr.grad(s.loss(), argnums=tuple(range(len(s.wrt))))(*s.args))
    for argnum, gradient in enumerate(gradients):
        assert gradient.dtype == np.float64 and gradient.shape == s.args[argnum].shape
        numeric = numerical_gradient(s.loss(), s.args, argnum)
        error = relative_error(gradient, numeric)
        assert error < 1e-7, f"d/d operand {s.wrt[argnum]}: relative error {error:.1e}"


@pytest.mark.parametrize("name", DIFFERENTIABLE)
def test_float32_gradient_is_float32_and_close_to_float64(name):
    s = sampled(name)
    args32 = tuple(a.astype(np.float32) for a in s.args)
    gradients = as_tuple(cr.grad(s.loss(), argnums=tuple(range(len(s.wrt))))(*args32))
    expected = as_tuple(cr.grad(s.loss(), argnums=tuple(range(len(s.wrt))))(*(a.astype(np.float64) for a in args32)))
    for gradient, reference in zip(gradients, expected):
        assert gradient.dtype == np.float32
        np.testing.assert_allclose(gradient, reference, rtol=1e-4, atol=1e-5 * max(1.0, np.max(np.abs(reference))))


# ---- each VJP rule against sympy.diff of the definition ----------------------------------------


def rule_and_derivative(name, position):
    """(the rule as SymPy, g * sympy.diff of the definition, the symbols with g last)."""
    op, s = OPS[name], sampled(name)
    graph = Graph(name)
    operands = [
        graph.add_input(TensorType((), "float64" if symbol.is_real else "bool"), f"a{i}")
        for i, symbol in enumerate(s.symbols)
    ]
    g = graph.add_input(TensorType((), "float64"), "g")
    y = graph.add(name, operands, s.attrs)
    rule = op.vjp_rule(position)(Value(graph, g), Value(graph, y), *(Value(graph, a) for a in operands), **s.attrs)
    g_symbol = sp.Symbol("g", real=True)
    symbols = s.symbols + (g_symbol,)
    (rule_expression,) = graph_to_sympy(graph, [rule.id], list(symbols))
    return rule_expression, g_symbol * sp.diff(op.sympy(*s.symbols), s.symbols[position]), symbols


@pytest.mark.parametrize("name,position", RULES, ids=[f"{n}-{p}" for n, p in RULES])
def test_vjp_rule_equals_sympy_diff_of_the_definition(name, position):
    rule, derivative, symbols = rule_and_derivative(name, position)
    if sp.simplify(rule - derivative) == 0:
        return
    # simplify cannot always decide (Heaviside against Piecewise, a float constant, a domain
    # identity): then the two agree at the sample points, with random cotangents.
    s = sampled(name)
    cotangent = np.random.default_rng(0).uniform(-2, 2, s.columns[0].shape)
    points = list(s.columns) + [cotangent]
    got, got_finite = evaluate(numeric(rule, symbols), points, cotangent.shape)
    expected, expected_finite = evaluate(numeric(derivative, symbols), points, cotangent.shape)
    assert got_finite.all() and expected_finite.all()
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-14)


# ---- forward mode, the LLVM backend, batching ----------------------------------------------------


@pytest.mark.parametrize("name", DIFFERENTIABLE)
def test_forward_mode_agrees_with_reverse_mode(name):
    # Along the tangent that is 1 on operand k and 0 elsewhere, the JVP of an elementwise op is
    # its k-th partial derivative at each point, which the VJP of a cotangent of ones also is.
    s = sampled(name)
    apply_op = s.function()
    _, pullback = cr.vjp(apply_op, *s.args)
    partials = as_tuple(pullback(np.ones_like(s.args[0])))
    for k, partial in enumerate(partials):
        tangents = tuple(np.ones_like(a) if j == k else np.zeros_like(a) for j, a in enumerate(s.args))
        _, tangent_out = cr.jvp(apply_op, s.args, tangents)
        np.testing.assert_allclose(tangent_out, partial, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("name", DIFFERENTIABLE)
def test_llvm_backend_agrees_with_numpy_backend(name):
    s = sampled(name)
    argnums = tuple(range(len(s.wrt)))
    value, gradients = cr.value_and_grad(s.loss(), argnums, backend="numpy")(*s.args)
    llvm_value, llvm_gradients = cr.value_and_grad(s.loss(), argnums, backend="llvm")(*s.args)
    np.testing.assert_allclose(llvm_value, value, rtol=1e-12)
    for got, expected in zip(as_tuple(llvm_gradients), as_tuple(gradients)):
        assert got.dtype == expected.dtype
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=0)


@pytest.mark.parametrize("name", DIFFERENTIABLE)
def test_vectorized_jacobian_equals_one_pass_per_row(name):
    s = sampled(name)
    argnums = tuple(range(len(s.wrt)))
    points = tuple(a[:8] for a in s.args)
    short = Sampled(name, s.attrs, tuple(c[:8] for c in s.columns), s.wrt, s.symbols)
    for mode in ["fwd", "rev"]:
        vectorized = cr.jacobian(short.function(), argnums, mode=mode)
        looped = cr.jacobian(short.function(), argnums, mode=mode, vectorize=False)
        for a, b in zip(as_tuple(vectorized(*points)), as_tuple(looped(*points))):
            np.testing.assert_allclose(a, b, rtol=1e-14, atol=0)
        assert vectorized.kernel_calls == 1, f"{mode}: not vectorized"


def test_the_sampled_points_avoid_kinks_ties_and_domain_edges():
    # the filter, seen on ops whose domains and kinks are known
    assert (sampled("log").columns[0] > 0).all() and (np.abs(sampled("arctanh").columns[0]) < 1).all()
    assert (sampled("arccosh").columns[0] > 1).all() and (sampled("relu").columns[0] != 0).all()
    a, b = sampled("maximum").columns
    assert (np.abs(a - b) > KINK_DISTANCE).all()
    x, lo, hi = sampled("clip").columns
    inside = lo <= hi  # with lo > hi, clip is hi whatever x is: x == lo or x == hi is no kink there
    assert (np.abs(x - lo)[inside] > KINK_DISTANCE).all() and (np.abs(x - hi)[inside] > KINK_DISTANCE).all()
    assert inside.any() and not inside.all()
    assert sampled("where").columns[0].dtype == bool


def test_every_elementwise_op_whose_type_needs_an_attribute_has_one_here():
    for name in DIFFERENTIABLE:
        try:
            OPS[name].infer([TensorType((), "float64")] * OPS[name].arity, {})
        except KeyError:
            assert name in ATTRIBUTES, f"{name}: its type needs attributes; add them to ATTRIBUTES"


@pytest.mark.parametrize("name,position", REFUSED, ids=[f"{n}-{i}" for n, i in REFUSED])
def test_a_derivative_with_no_closed_form_is_refused_when_asked_for(name, position):
    # gammainc's a, the Bessel order v: asked for, in either mode, the gradient raises (never a silent
    # zero); that operand traced but not differentiated (not in argnums) still traces and computes
    s = sampled(name)
    columns = list(s.columns)

    def with_operand(value):
        operands = columns[:position] + [value] + columns[position + 1 :]
        return weighted_sum(operation(name, *operands))

    for mode in ["rev", "fwd"]:
        with pytest.raises(UnsupportedError, match="no closed form"):
            cr.jacobian(with_operand, mode=mode)(columns[position])
    both = lambda first, second: weighted_sum(operation(name, first, second))
    gradient = cr.grad(both, argnums=1 - position)(*columns)
    np.testing.assert_allclose(gradient, cr.grad(s.loss())(*s.args), rtol=1e-15)
