"""Depth (DESIGN.md, "The IR"): graphs of 100,000+ nodes and deeply nested pytrees are
handled with loops, never recursion over the depth.
"""

import sys

import numpy as np
import pytest

import chainrule as cr
from chainrule.frontends.pytree import flatten, unflatten

# x -> arcsinh(1.0001 * sinh(x)), repeated: three primitives a step, 100,002 in all. The value
# neither dies out nor blows up (sinh(x_N) = 1.0001**N * sinh(x_0)), so the gradient is a
# product of 100,002 factors that stays of order 1-30 and can be checked exactly.
STEPS = 33_334
GROWTH = 1.0001


def deep_chain(x):
    for _ in range(STEPS):
        x = np.arcsinh(np.sinh(x) * GROWTH)
    return np.sum(x)


def chain_rule_product(x0):
    """d deep_chain / dx, as the product of each primitive's derivative, in a NumPy loop."""
    value, derivative = x0.copy(), np.ones_like(x0)
    for _ in range(STEPS):
        u = np.sinh(value) * GROWTH
        derivative = derivative * np.cosh(value) * GROWTH / np.sqrt(u * u + 1)  # sinh', mul', arcsinh'
        value = np.arcsinh(u)
    return derivative


def test_a_100000_node_chain_traces_differentiates_and_runs_without_recursion():
    # A recursive walk of this graph would need a limit near 100,000; the suite runs with a
    # normal one, so this test cannot pass by raising it.
    assert sys.getrecursionlimit() <= 10_000
    x0 = np.array([-1.5, 0.0, 0.5, 2.0])
    f = cr.grad(deep_chain)
    gradient = f(x0)
    assert len(f.graph(x0, stage="traced")) >= 100_000
    np.testing.assert_allclose(gradient, chain_rule_product(x0), rtol=1e-9)
    # ... which is also the closed form 1.0001**N cosh(x_0) / cosh(x_N).
    scale = GROWTH**STEPS
    closed_form = scale * np.cosh(x0) / np.cosh(np.arcsinh(scale * np.sinh(x0)))
    np.testing.assert_allclose(gradient, closed_form, rtol=1e-8)
    assert gradient[1] == pytest.approx(scale, rel=1e-8)  # at x_0 = 0 every factor is 1.0001


# ---- deep pytrees ---------------------------------------------------------------------------

DEPTH = 5000


def nested_lists(depth, leaf, level_value=float):
    """``depth`` lists, one inside the next: [[...[leaf, v(0)]..., v(depth - 2)], v(depth - 1)]."""
    tree = leaf
    for level in range(depth):
        tree = [tree, level_value(level)]
    return tree


def innermost(tree):
    while isinstance(tree, list):
        tree = tree[0]
    return tree


def assert_same_nesting(a, b):
    """Equal nested lists, compared with a loop (list == list would recurse)."""
    stack = [(a, b)]
    while stack:
        x, y = stack.pop()
        assert type(x) is type(y)
        if isinstance(x, list):
            assert len(x) == len(y)
            stack.extend(zip(x, y))
        else:
            np.testing.assert_array_equal(x, y)


def test_a_pytree_nested_5000_deep_flattens_and_unflattens_without_recursion():
    tree = nested_lists(DEPTH, 1.0)
    leaves, paths, treedef = flatten(tree, "t")
    assert len(leaves) == DEPTH + 1 and treedef.num_leaves == DEPTH + 1
    assert leaves[0] == 1.0 and paths[0] == "t" + "[0]" * DEPTH
    assert leaves[-1] == DEPTH - 1.0 and paths[-1] == "t[1]"
    assert_same_nesting(unflatten(treedef, leaves), tree)


def test_the_structure_of_a_5000_deep_pytree_hashes_compares_and_prints_without_recursion():
    # The structure is part of the compile cache's key.
    treedef = flatten(nested_lists(DEPTH, 1.0))[2]
    same = flatten(nested_lists(DEPTH, 2.0))[2]
    shallower = flatten(nested_lists(DEPTH - 1, 2.0))[2]
    assert hash(treedef) == hash(same) and treedef == same and treedef != shallower
    assert str(treedef) == "[" * DEPTH + "*" + ", *]" * DEPTH


def test_grad_over_a_pytree_nested_5000_deep_has_the_same_nesting():
    tree = nested_lists(DEPTH, np.array([1.0, -2.0]))

    def loss(t):
        return np.sum(innermost(t) ** 2) + t[1] * t[0][1]

    # d/d leaf = 2 leaf; d/d t[1] = t[0][1] = DEPTH - 2 and d/d t[0][1] = t[1] = DEPTH - 1;
    # the floats of the other levels do not enter the loss.
    swapped = {DEPTH - 1: DEPTH - 2.0, DEPTH - 2: DEPTH - 1.0}
    expected = nested_lists(DEPTH, np.array([2.0, -4.0]), lambda level: swapped.get(level, 0.0))
    assert_same_nesting(cr.grad(loss)(tree), expected)
