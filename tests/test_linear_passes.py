"""Every compile pass is linear in the graph's size (issue 19): the work per node is flat within 2x
from 10^3 to 10^4 and 10^5 traced nodes.

Work is counted, not timed: the number of Python and builtin function calls each pass makes
(cProfile's call count, which does not depend on the machine's load). A pass that walked the
whole graph once per node (rebuilding a name map per region, say) makes calls per node that grow
with the graph; ``test_the_count_catches_a_quadratic_pass`` shows the measure sees one. What it
cannot see is a loop that calls nothing: one C call (``list.index`` on a long list) or a Python
loop of bare indexing and comparisons; benchmarks/compile_time.py (per-stage seconds on chains of
10^3 to 10^5 nodes) and benchmarks/compile_scaling.py time the passes as well.
"""

import contextlib
import cProfile
import pstats
import sys
from pathlib import Path

import numpy as np
import pytest

from chainrule.backends.numpy import compile_graph
from chainrule.compiler import pipeline
from chainrule.frontends.trace import describe_args, trace_graph
from chainrule.ir import Graph

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from pendulum_rk4 import rk4_step

FLATNESS = 2.0  # per-node work at the larger size may be at most this times that at the smaller


@pytest.fixture(autouse=True)
def passes_unverified(monkeypatch):
    """These tests count work; CHAINRULE_VERIFY (conftest) would check every pass's graph again,
    doubling their time (test_deep_graphs verifies the passes on a 100,000-node chain)."""
    monkeypatch.setenv("CHAINRULE_VERIFY", "0")


class CallCounter:
    """``with counter(name): ...`` adds the function calls made inside to ``counter.calls[name]``;
    the counter is also a pipeline ``around_pass`` hook."""

    def __init__(self):
        self.calls: dict[str, int] = {}

    @contextlib.contextmanager
    def __call__(self, name: str):
        profile = cProfile.Profile()
        profile.enable()
        try:
            yield
        finally:
            profile.disable()
            made = sum(entry[1] for entry in pstats.Stats(profile).stats.values())  # type: ignore[attr-defined]
            self.calls[name] = self.calls.get(name, 0) + made


def sin_chain(nodes: int):
    """``nodes`` traced nodes: an input vector, ``nodes - 2`` sines and a sum."""

    def chain(x):
        for _ in range(nodes - 2):
            x = np.sin(x)
        return np.sum(x)

    return chain, (np.linspace(-1.0, 1.0, 4),), (0,)


def nested_chain(nodes: int):
    """Seed 001's cos(tan(sin(...))) over a vector of points, summed: three nodes a level."""

    def nested(x):
        for _ in range((nodes - 2) // 3):
            x = np.cos(np.tan(np.sin(x)))
        return np.sum(x)

    return nested, (np.linspace(0.1, 1.0, 8),), (0,)


def unrolled_rk4(nodes: int):
    """examples/pendulum_rk4.py's step unrolled by a Python loop (42 traced nodes a step), its
    gradient taken with respect to the initial angle, velocity and the damping."""
    steps = max(1, nodes // 42)

    def final_angle(theta0, omega0, damping):
        state = (theta0, omega0)
        for _ in range(steps):
            state = rk4_step(state, damping)
        return state[0]

    return final_angle, (1.0, 0.0, 0.5), (0, 1, 2)


def work_per_node(program, nodes: int, transforms=()) -> dict[str, float]:
    """Function calls per traced node of tracing, each pipeline pass of the gradient, and NumPy
    code generation, for ``program(nodes)``."""
    fn, args, argnums = program(nodes)
    spec, leaves = describe_args(fn, args, argnums)
    counter = CallCounter()
    with counter("trace"):
        traced, _ = trace_graph(fn, spec, leaves)
    traced_positions = [i for i, leaf in enumerate(spec.leaves) if leaf.traced]
    wrt = [traced_positions.index(i) for i, leaf in enumerate(spec.leaves) if leaf.traced]
    compilation = pipeline.run(traced, wrt, transforms=transforms, around_pass=counter)
    with counter("numpy codegen"):
        compile_graph(compilation.final, "kernel")
    return {name: calls / len(traced) for name, calls in counter.calls.items()}


def not_flat(small: dict[str, float], large: dict[str, float]) -> dict[str, tuple[float, float]]:
    """The passes whose calls per node at the larger size exceed FLATNESS times those at the smaller
    (plus 0.01 a node, for a pass that does next to nothing at either size)."""
    return {
        name: (small.get(name, 0.0), per_node)
        for name, per_node in large.items()
        if per_node > FLATNESS * small.get(name, 0.0) + 0.01
    }


@pytest.mark.parametrize(
    "program, sizes",
    [
        pytest.param(sin_chain, (1_000, 10_000, 100_000), marks=pytest.mark.slow, id="sin_chain-100000"),
        (nested_chain, (1_000, 10_000)),
        (unrolled_rk4, (1_000, 10_000)),
    ],
)
def test_every_pass_does_flat_work_per_node(program, sizes):
    small, *larger = (work_per_node(program, nodes) for nodes in sizes)
    for large in larger:
        assert {"trace", "reverse", "simplify forward", "symbolic", "fuse", "schedule", "numpy codegen"} <= set(large)
        assert not_flat(small, large) == {}


def test_the_count_catches_a_quadratic_pass():
    def quadratic(graph: Graph) -> Graph:  # looks at every earlier node's type, for each node
        for node_id in range(len(graph)):
            for earlier in range(node_id):
                graph.type(earlier)
        return graph

    transforms = [("grad", "quadratic", quadratic)]
    small, large = (work_per_node(sin_chain, nodes, transforms) for nodes in (100, 1_000))
    assert set(not_flat(small, large)) == {"quadratic"}
