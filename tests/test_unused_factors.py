"""Gradients of programs that use some factors of a packed factorization: the zero cotangent of a
factor not used is the ``zeros`` node (a read of a scatter outside what it wrote), and the rules
leave its terms out, rather than multiply the other factors by zeros (qr's Q̄ᵀQ was a 500³ matmul
of zeros). What the IEEE rules still ask: ``0 @ x`` stays where x may be inf or NaN."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

import chainrule as cr
from chainrule.compiler.simplify import SIMPLIFY
from chainrule.ir import OPS, Graph, TensorType

N = 70  # 2 N² > fold.MAX_GROWN_ELEMENTS: the scattered cotangent is not folded away
RNG = np.random.default_rng(19)
WEIGHTS = RNG.uniform(0.5, 1.5, (N, N))


def only_r(a):
    return np.sum(np.sin(np.linalg.qr(a)[1]))  # a cotangent computed at run time, not a constant


def only_q(a):
    return np.sum(WEIGHTS * np.linalg.qr(a)[0])


def only_u(a):
    return np.sum(WEIGHTS * np.linalg.svd(a)[0] ** 2)  # squares: U's signs are arbitrary


def only_vectors(a):
    return np.sum(WEIGHTS * np.linalg.eigh(a + a.T)[1] ** 2)


# the gradient's matmuls, by its formula with the unused factor's terms left out:
# qr Ā = Q copyltu(R R̄ᵀ) R⁻ᵀ, and (Q̄ - Q copyltu(Q̄ᵀQ)) R⁻ᵀ; svd U [F∘(UᵀŪ - ŪᵀU) S] Vᵀ;
# eigh V (F∘(VᵀV̄)) Vᵀ
MATMULS = {only_r: 2, only_q: 2, only_u: 3, only_vectors: 3}


def matmuls(graph: Graph) -> int:
    return sum(graph[i].op == "matmul" for i in range(len(graph)))


@pytest.mark.parametrize("function", MATMULS, ids=lambda f: f.__name__)
def test_the_gradient_computes_no_product_with_the_unused_factors_cotangent(function):
    a = RNG.standard_normal((N, N))
    gradient = cr.grad(function, backend="llvm")
    result = gradient(a)
    assert matmuls(gradient.graph(a)) == MATMULS[function]
    # the directional derivative by central differences, along two directions
    for direction in RNG.standard_normal((2, N, N)):
        h = 1e-6
        numeric = (function(a + h * direction) - function(a - h * direction)) / (2 * h)
        np.testing.assert_allclose(np.sum(result * direction), numeric, rtol=1e-5)
    np.testing.assert_allclose(cr.grad(function, backend="numpy")(a), result, rtol=1e-9, atol=1e-11)


def test_without_the_simplify_rules_the_slice_outside_the_scatter_is_seen_as_zero():
    # optimize=False (and the backward of a loop body) builds the rules' operands without rewrites
    a = RNG.standard_normal((N, N))
    gradient = cr.grad(only_r, optimize=False)
    np.testing.assert_allclose(gradient(a), cr.grad(only_r)(a), rtol=1e-12, atol=1e-14)
    assert matmuls(gradient.graph(a)) == MATMULS[only_r]


def test_a_small_qr_folds_its_cotangents_to_the_same_gradient():
    # at 2 n² <= 4096 constant folding scatters the constant cotangent of R: a folded value of zeros is
    # the zeros node, which the rule sees as the scattered read
    w = RNG.uniform(0.5, 1.5, (40, 40))
    gradient = cr.grad(lambda a: np.sum(w * np.linalg.qr(a)[1]))
    a = RNG.standard_normal((40, 40))
    q, r = np.linalg.qr(a)
    m = r @ w.T
    by_hand = scipy.linalg.solve_triangular(r, (q @ (np.tril(m) + np.tril(m, -1).T)).T).T
    np.testing.assert_allclose(gradient(a), by_hand, rtol=1e-9, atol=1e-11)
    assert matmuls(gradient.graph(a)) == 2


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
def test_an_infinite_input_still_gives_the_nans_of_the_formula_by_hand(backend):
    # the left-out term Q̄ᵀQ is 0 @ Q: with inf in A, NumPy's Q and R hold NaN, and the terms left
    # make the gradient NaN where the gradient written out with NumPy is
    w = RNG.uniform(0.5, 1.5, (N, N))
    a = RNG.standard_normal((N, N))
    a[3, 5] = np.inf
    with np.errstate(all="ignore"):
        q, r = np.linalg.qr(a)
        m = r @ w.T
        by_hand = scipy.linalg.solve_triangular(r, (q @ (np.tril(m) + np.tril(m, -1).T)).T, check_finite=False).T
        gradient = cr.grad(lambda x: np.sum(w * np.linalg.qr(x)[1]), backend=backend)(a)
    np.testing.assert_array_equal(np.isnan(gradient), np.isnan(by_hand))
    assert np.isnan(gradient).any()


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
def test_zeros_times_a_matrix_that_may_be_infinite_is_computed(backend):
    # 0 @ inf is NaN: the product stays unless the other operand is never inf or NaN (a mask)
    x = RNG.standard_normal((3, 3))
    x[1, 2] = np.inf
    product = cr.jit(lambda x: np.zeros((3, 3)) @ x, backend=backend)
    masked = cr.jit(lambda x: np.zeros((3, 3)) @ (x > 0).astype(np.float64), backend=backend)
    with np.errstate(invalid="ignore"):
        result, expected = product(x), np.zeros((3, 3)) @ x
    np.testing.assert_array_equal(result, expected)
    assert np.isnan(result[:, 2]).all()
    assert matmuls(product.graph(x)) == 1 and matmuls(masked.graph(x)) == 0
    np.testing.assert_array_equal(masked(x), np.zeros((3, 3)))


# ---- the rule: reads of a scatter into zeros --------------------------------------------------


def template(*items):
    """An index template from Python slices and integers."""
    return tuple(("int", i) if isinstance(i, int) else ("slice", i.start, i.stop, i.step) for i in items)


SHAPE = (4, 6)
# (written index, read index, values' shape, whether the read keeps no scatter)
READS = [
    (template(slice(1, 3), slice(2, 5)), template(slice(3, 4)), (2, 3), True),  # misses it: zeros
    (template(slice(1, 3), slice(2, 5)), template(slice(1, 3), slice(2, 5)), (2, 3), True),  # the values
    (template(slice(1, 3), slice(2, 5)), template(slice(1, 3), slice(3, 4)), (2, 3), True),  # inside: a slice
    (template(slice(1, 3), slice(2, 5)), template(slice(None), 4), (2, 3), False),  # across: a smaller scatter
    (template(2, slice(1, 5)), template(slice(1, 3), slice(0, 3)), (4,), False),  # a row written, rows read
    (template(slice(1, 3)), template(-2), (2, 6), True),  # a negative integer
    (template(slice(-3, None), slice(-2, None)), template(slice(None, -1), slice(None)), (), False),  # broadcast
    (template(slice(0, 4, 2)), template(slice(0, 2)), (2, 6), False),  # a strided write: left as it is
]


def evaluate(graph: Graph, node_id: int, x: np.ndarray) -> np.ndarray:
    values: dict[int, np.ndarray] = {}
    for i in graph.live_nodes([node_id]):
        node = graph[i]
        if node.op == "input":
            values[i] = x
        elif node.op in ("const", "zeros"):
            values[i] = graph.const_value(i)
        else:
            values[i] = OPS[node.op].eager(*(values[a] for a in node.args), **node.params)
    return values[node_id]


@pytest.mark.parametrize("written,read,values_shape,no_scatter", READS)
def test_a_read_of_a_scatter_is_what_numpy_reads(written, read, values_shape, no_scatter):
    graph = Graph("reads")
    x = graph.add_input(TensorType(values_shape, "float64"), "x")
    with graph.rewriting(SIMPLIFY):
        scatter = graph.add("scatter_add", (x,), {"index": written, "shape": SHAPE, "dtype": "float64", "unique": True})
        result = graph.add("getitem", (scatter,), {"index": read})
    values = RNG.standard_normal(values_shape)
    buffer = np.zeros(SHAPE)
    buffer[tuple(slice(*i[1:]) if i[0] == "slice" else i[1] for i in written)] += values
    expected = buffer[tuple(slice(*i[1:]) if i[0] == "slice" else i[1] for i in read)]
    np.testing.assert_array_equal(evaluate(graph, result, values), expected)
    assert ("scatter_add" not in {graph[i].op for i in graph.live_nodes([result])}) == no_scatter
    assert (graph[result].op == "zeros") == (not expected.any())
