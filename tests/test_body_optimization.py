"""The bodies of control nodes get the optimizing passes (compiler/body_passes.py)."""

from __future__ import annotations

import gc
import sys
from pathlib import Path

import numpy as np
import pytest
from gradient_helpers import numerical_gradient, relative_error

import chainrule as cr
from chainrule.compiler.body_passes import optimize_bodies
from chainrule.ir import Graph
from chainrule.ir.control import BODIES, Body, loop_node

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from pendulum_rk4 import rk4_step

POINT = (1.0, 0.3, 0.5)


def pendulum_angle(theta0, omega0, damping):
    theta, _ = cr.fori_loop(0, 50, lambda i, state: rk4_step(state, damping), (theta0, omega0))
    return theta


def loop_bodies(graph) -> list[Body]:
    """The Bodies of ``graph``'s control nodes, in node order."""
    bodies = []
    for node in graph.nodes:
        for _, value in node.attrs:
            values = value if isinstance(value, tuple) else (value,)
            bodies += [v for v in values if isinstance(v, Body)]
    return bodies


def computing_nodes(body: Body) -> int:
    """The nodes of ``body`` that compute (constants are literals in the generated code)."""
    graph = body.graph
    return sum(graph[i].op not in ("const", "input") for i in graph.live_nodes())


def redundant_rk4_angle(theta0, omega0, damping):
    """The RK4 pendulum with a step that leaves work for the optimizer: a double negation, constants
    to combine (2 * (0.5 * x) is x), a subtraction written as adding a negation."""

    def step(i, state):
        theta, omega = rk4_step(state, damping)
        return -np.negative(theta), 2.0 * (0.5 * omega) + -(0.0 * theta)

    theta, _ = cr.fori_loop(0, 50, step, (theta0, omega0))
    return theta


@pytest.mark.parametrize("fn", [pendulum_angle, redundant_rk4_angle])
def test_the_rk4_gradient_bodies_are_optimized_and_optimize_false_keeps_the_traced_ones(fn):
    optimized = cr.grad(fn, argnums=(0, 1, 2))
    before = loop_bodies(optimized.graph(*POINT, stage="grad"))
    after = loop_bodies(optimized.graph(*POINT))
    assert len(before) == len(after) == 2  # the forward loop and its VJP loop
    for traced, body in zip(before, after):
        assert body.input_types == traced.input_types and body.output_types == traced.output_types
        assert body.graph.memory_plan is not None  # scheduled (in place when the order stays)
        assert computing_nodes(body) <= computing_nodes(traced)
    if fn is redundant_rk4_angle:
        assert all(computing_nodes(b) < computing_nodes(t) for t, b in zip(before, after))
    plain = cr.grad(fn, argnums=(0, 1, 2), optimize=False)
    traced_bodies = loop_bodies(plain.graph(*POINT, stage="grad"))
    assert [id(b) for b in loop_bodies(plain.graph(*POINT))] == [id(b) for b in traced_bodies]


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
def test_gradient_through_an_optimized_body_matches_finite_differences(backend):
    gradient = cr.grad(pendulum_angle, argnums=(0, 1, 2), backend=backend)(*POINT)
    for position in range(3):
        expected = numerical_gradient(lambda *a: pendulum_angle_numpy(*a), POINT, position)
        assert relative_error(gradient[position], expected) < 1e-7


def pendulum_angle_numpy(theta0, omega0, damping):
    state = (theta0, omega0)
    for _ in range(50):
        state = rk4_step(state, damping)
    return state[0]


def test_nested_loop_bodies_are_optimized_inside_out():
    def nested(x):
        def inner(i, y):
            return y * 1.0 + 0.0 * 0.0 + np.sin(y) * 0.01

        return cr.fori_loop(0, 3, lambda j, z: cr.fori_loop(0, 4, inner, z) * 1.0, x)

    gradient = cr.grad(nested)
    graph = gradient.graph(0.7)
    outer = loop_bodies(graph)
    inner = [b for body in outer for b in loop_bodies(body.graph)]
    assert inner, "the outer bodies hold the inner loops"
    assert all(b.graph.memory_plan is not None for b in outer + inner)
    expected = numerical_gradient(lambda x: _nested_numpy(x), (0.7,), 0)
    assert relative_error(gradient(0.7), expected) < 1e-7


def _nested_numpy(x):
    for _ in range(3):
        for _ in range(4):
            x = x + np.sin(x) * 0.01
    return x


def test_a_body_shared_by_two_loop_nodes_is_optimized_once():
    def one_loop(x):
        return cr.fori_loop(0, 3, lambda i, y: y * 1.0 + np.cos(y), x)

    traced = cr.jit(one_loop).graph(0.4, stage="traced")
    (loop,) = [traced[i] for i in traced.live_nodes() if traced[i].op == "loop"]
    body, params = loop.params["body"], loop.params
    graph = Graph("two_loops")
    x = graph.add_input(traced.type(traced.inputs[0]), "x")
    settings = {k: params[k] for k in ("n_carry", "n_xs", "length", "reverse")}
    first = loop_node(graph, body, [x], **settings)
    second = loop_node(graph, body, [graph.add("neg", [x])], **settings)
    graph.set_outputs([first, second])
    result = optimize_bodies(graph)
    bodies = loop_bodies(result)
    assert len(bodies) == 2 and bodies[0] is bodies[1] and bodies[0] is not body
    assert len(bodies[0].graph) < len(body.graph)  # y * 1.0 is gone
    assert optimize_bodies(result) is result  # an optimized body is not optimized again


def test_compiling_and_dropping_loop_functions_does_not_grow_bodies_without_bound():
    def make():
        def f(x, scale):
            return cr.fori_loop(0, 5, lambda i, y: y * scale + np.sin(y), x)

        return f

    gc.collect()
    before = len(BODIES)
    for _ in range(200):
        gradient = cr.value_and_grad(make(), argnums=(0, 1))
        gradient(0.3, 0.9)
        del gradient
    gc.collect()
    assert len(BODIES) - before < 50
