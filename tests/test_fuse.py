"""Fusion, scheduling and the memory plan.

Fused regions must be convex single-exit elementwise regions (maybe ending in a
reduction), show their inner expression in the dump, compute what the unfused
graph computes, and run in the NumPy backend with one allocation instead of one
per step. The schedule must be a valid order that does not raise the peak, and
the peak estimate must match what tracemalloc measures.
"""

from __future__ import annotations

import tracemalloc
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import chainrule as cr
from chainrule.compiler.fuse import fuse
from chainrule.compiler.schedule import greedy_order, plan_memory
from chainrule.ir.fused import FusedBody, plan_buffers
from chainrule.ir.types import TensorType

RNG = np.random.default_rng(1)


def ops(graph) -> Counter:
    return Counter(graph[i].op for i in graph.live_nodes())


def tanh_layer(W, X):
    Z = W @ X
    A = np.tanh(Z)
    return np.sum(A * A)


def test_the_backward_of_tanh_is_one_fused_node_showing_its_expression():
    f = cr.grad(tanh_layer)
    args = (RNG.standard_normal((3, 4)), RNG.standard_normal((4, 5)))
    fused = f.graph(*args, stage="fused")
    assert ops(fused)["fused"] >= 1
    text = f.ir(*args, stage="fused")
    assert "fused { mul(mul(2.0, %3), sub(1.0, %4)) }" in text  # dZ = (2 A) * (1 - A*A)


def test_an_elementwise_prologue_fuses_into_its_reduction():
    f = cr.jit(tanh_layer)
    args = (RNG.standard_normal((3, 4)), RNG.standard_normal((4, 5)))
    graph = f.graph(*args)
    assert ops(graph) == Counter({"input": 2, "matmul": 1, "fused": 1})
    assert "sum(mul(t0, t0)" in f.ir(*args)


def test_a_value_used_outside_its_region_is_the_region_boundary():
    def f(x):
        a = np.sin(x) * 2.0  # used twice below: it ends a region
        return np.sum(np.exp(a)) + np.sum(np.cos(a))

    graph = fuse(cr.trace(f, np.ones(8)))
    graph.verify()
    [producer] = [i for i in graph.live_nodes() if graph[i].op == "fused" and graph[i].params["body"].root[0] == "mul"]
    assert len(graph.users(producer)) == 2


def test_forward_and_backward_nodes_are_never_fused_together():
    f = cr.grad(lambda x: np.sum(np.tanh(np.sin(x) * 3.0)))
    graph = f.graph(np.ones(50), stage="fused")
    for i in graph.live_nodes():
        if graph[i].op == "fused":
            meta = graph[i].params["body"].meta
            assert len({origin is None for _, _, origin in meta}) == 1


def test_a_fused_region_runs_in_one_buffer_in_the_numpy_backend():
    f = cr.jit(lambda x: np.tanh(np.sin(x) * 2.0 + 1.0) * x)
    x = RNG.standard_normal(100_000)
    source = f.source(x)
    body = [line.split("#")[0].strip() for line in source.splitlines()[1:-1]]
    allocations = [line for line in body if "=" in line.split("(")[0]]
    in_place = [line for line in body if "out=" in line]
    assert len(allocations) == 1 and len(in_place) == 4, source
    np.testing.assert_allclose(f(x), np.tanh(np.sin(x) * 2.0 + 1.0) * x, rtol=1e-15)
    tracemalloc.start()
    f(x)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 1.2 * x.nbytes  # one array of x's size, not five


def test_small_fused_regions_read_as_nested_expressions_naming_the_users_values():
    source = cr.grad(tanh_layer).source(RNG.standard_normal((3, 4)), RNG.standard_normal((4, 5)))
    assert "dA = A + A" in source or "dA = 2.0 * A" in source
    assert "out=" not in source


def test_a_step_used_twice_is_computed_once():
    f = cr.jit(lambda x: np.sum(np.exp(np.sin(x)) * np.sin(x) ** 3))
    x = RNG.standard_normal(5000)
    assert f.source(x).count("np.sin(") == 1
    np.testing.assert_allclose(f(x), np.sum(np.exp(np.sin(x)) * np.sin(x) ** 3), rtol=1e-13)


# ---- random elementwise programs: fused == unfused ------------------------------------------

UNARY = [np.sin, np.cos, np.tanh, np.exp, lambda v: np.log1p(v * v), np.arctan, lambda v: -v, np.abs]
BINARY = [np.add, np.subtract, np.multiply, lambda a, b: a / (1.0 + b * b), np.maximum]


@st.composite
def programs(draw):
    """A random DAG of elementwise ops over three inputs, each step reading any earlier value."""
    steps = []
    for _ in range(draw(st.integers(1, 12))):
        if draw(st.booleans()):
            steps.append(("unary", draw(st.integers(0, len(UNARY) - 1)), draw(st.integers(0, 2 + len(steps)))))
        else:
            steps.append(
                (
                    "binary",
                    draw(st.integers(0, len(BINARY) - 1)),
                    draw(st.integers(0, 2 + len(steps))),
                    draw(st.integers(0, 2 + len(steps))),
                )
            )
    outputs = draw(st.lists(st.integers(0, 2 + len(steps)), min_size=1, max_size=3))
    reduce = draw(st.booleans())
    return steps, outputs, reduce


def run_program(program, x, y, s):
    steps, outputs, reduce = program
    values = [x, y, s]
    for step in steps:
        if step[0] == "unary":
            values.append(UNARY[step[1]](values[step[2]]))
        else:
            values.append(BINARY[step[1]](values[step[2]], values[step[3]]))
    results = [values[o] for o in outputs]
    total = sum(np.sum(r) for r in results) if reduce else results[-1] * 1.0
    return total


@settings(max_examples=60, deadline=None)
@given(programs(), st.sampled_from([(7,), (2000,), (40, 60)]), st.sampled_from(["numpy", "llvm"]))
def test_fusion_and_scheduling_keep_the_values_of_random_programs(program, shape, backend):
    # the optimized program on either backend against the unoptimized one on NumPy
    x = RNG.uniform(-2, 2, shape)
    y = RNG.uniform(-2, 2, shape)
    s = RNG.uniform(-2, 2, shape[-1:])  # broadcast along the rows
    fn = lambda x, y, s: run_program(program, x, y, s)
    optimized, plain = cr.jit(fn, backend=backend), cr.jit(fn, optimize=False)
    np.testing.assert_allclose(optimized(x, y, s), plain(x, y, s), rtol=1e-11, atol=1e-12)
    if np.ndim(plain(x, y, s)) == 0:
        g_on = cr.grad(fn, (0, 1, 2), backend=backend)(x, y, s)
        g_off = cr.grad(fn, (0, 1, 2), optimize=False)(x, y, s)
        for a, b in zip(g_on, g_off):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


# ---- schedule and memory plan ---------------------------------------------------------------


def mlp(p, x, y):
    h = np.tanh(x @ p["W1"] + p["b1"])
    h2 = np.tanh(h @ p["W2"] + p["b2"])
    z = h2 @ p["W3"] + p["b3"]
    return np.mean((z - y) ** 2)


def mlp_args():
    rng = np.random.default_rng(0)
    p = {
        "W1": rng.standard_normal((784, 256)) * 0.05,
        "b1": np.zeros(256),
        "W2": rng.standard_normal((256, 256)) * 0.05,
        "b2": np.zeros(256),
        "W3": rng.standard_normal((256, 10)) * 0.05,
        "b3": np.zeros(10),
    }
    return p, rng.standard_normal((128, 784)), rng.standard_normal((128, 10))


def measured_peak(f, args) -> int:
    f(*args)  # compile first
    tracemalloc.start()
    f(*args)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


@pytest.mark.parametrize("optimize", [True, False])
def test_the_peak_estimate_matches_tracemalloc_within_ten_percent(optimize):
    f = cr.grad(mlp, optimize=optimize)
    args = mlp_args()
    estimate = f.graph(*args).memory_plan.peak_bytes
    assert estimate == pytest.approx(measured_peak(f, args), rel=0.10)


def test_the_greedy_schedule_is_a_topological_order_of_the_live_nodes():
    graph = cr.grad(mlp).graph(*mlp_args(), stage="fused")
    order = greedy_order(graph)
    assert sorted(order) == graph.live_nodes()
    position = {n: i for i, n in enumerate(order)}
    for n in order:
        assert all(position[a] < position[n] for a in graph[n].args)


def test_the_schedule_never_raises_the_estimated_peak():
    f = cr.grad(mlp)
    args = mlp_args()
    fused, scheduled = f.graph(*args, stage="fused"), f.graph(*args, stage="scheduled")
    assert scheduled.memory_plan.peak_bytes <= plan_memory(fused).peak_bytes


def test_the_schedule_frees_a_big_value_before_computing_the_next_one():
    # Traced order computes both big products before either sum; freeing each first halves the peak.
    def f(x):
        a = np.sum(np.outer(x, x) @ np.ones(len(x)))
        b = np.sum(np.outer(x, 2 * x) @ np.ones(len(x)))
        return a + b

    x = RNG.standard_normal(300)
    graph = cr.jit(f).graph(x)
    assert graph.memory_plan.peak_bytes <= 1.1 * 300 * 300 * 8


def test_a_fused_bodys_buffers_are_reused_across_its_steps():
    f = cr.jit(lambda x: np.exp(np.sin(np.cos(np.tanh(x)))))
    graph = f.graph(np.ones(10_000))
    [body] = [graph[i].params["body"] for i in graph.live_nodes() if graph[i].op == "fused"]
    plan = plan_buffers(body)
    assert len(plan.types) == 1 and plan.writes_over == (False, True, True, True)


def test_a_deep_fused_body_is_written_out_in_linear_time_and_without_recursion():
    element = TensorType((), "float64")
    depth = 20_000  # deeper than Python's recursion limit
    steps = [("sin", (-1,), (), element)] + [("sin", (k,), (), element) for k in range(depth - 1)]
    steps.append(("mul", (depth - 1, depth - 1), (), element))  # a step used twice is bound first
    body = FusedBody(tuple(steps))
    assert body.expression(["%x"]) == f"t0 = {'sin(' * depth}%x{')' * depth}; mul(t0, t0)"
    # the LLVM module's comment for such a body says what it is, not all of it
    assert body.summary(["%x"]) == "20001 steps, the last mul, reading %x"
    assert FusedBody(tuple(steps[:3])).summary(["%x"]) == "sin(sin(sin(%x)))"
