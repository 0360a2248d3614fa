"""The LLVM backend's own compile work is linear in the graph (issue 19), counted, not timed.

tests/test_linear_passes.py counts the function calls of tracing and every pipeline pass; this
counts what the LLVM backend adds: the Python calls of lowering (planning, IR text, widening loop
bodies) per traced node, and the module's instructions per traced node, which LLVM's parse,
optimization and code generation are each linear in. Both must be flat within 2x from 10^3 to 10^4
traced nodes of the nested cos(tan(sin(...))) gradient over 100 points and of the unrolled RK4
gradient, from 10 to 100 steps. (A 3 x 10^4 case cost 30 s of the suite and found nothing the 10^4
one does not; benchmarks/compile_time.py --stages times depth 10^4.)
"""

import numpy as np
import pytest
from test_linear_passes import FLATNESS, CallCounter, passes_unverified, unrolled_rk4  # noqa: F401 (a fixture)

from chainrule.backends.llvm import engine
from chainrule.backends.llvm.lower import lower
from chainrule.compiler import pipeline
from chainrule.frontends.trace import describe_args, trace_graph


def nested_points(nodes: int):
    """Seed 001's cos(tan(sin(...))) over 100 points (long loops, widened), summed."""

    def nested(x):
        for _ in range((nodes - 2) // 3):
            x = np.cos(np.tan(np.sin(x)))
        return np.sum(x)

    return nested, (np.linspace(4.0, 4.4, 100),), (0,)


def lowering_work_per_node(program, nodes: int) -> tuple[float, float]:
    """(Python calls of lowering, module instructions) per traced node of ``program(nodes)``'s gradient."""
    fn, args, argnums = program(nodes)
    spec, leaves = describe_args(fn, args, argnums)
    traced, _ = trace_graph(fn, spec, leaves)
    wrt = [i for i, _ in enumerate(i for i, leaf in enumerate(spec.leaves) if leaf.traced)]
    final = pipeline.run(traced, wrt).final
    counter = CallCounter()
    with counter("lower"):
        lowered = lower(final, "kernel")
    return counter.calls["lower"] / len(traced), engine.instruction_count(lowered.ir) / len(traced)


@pytest.mark.parametrize(
    "program, sizes",
    [
        (nested_points, (1_000, 10_000)),
        (unrolled_rk4, (420, 4_200)),
    ],
)
def test_lowering_calls_and_module_instructions_per_node_are_flat(program, sizes):
    (small_calls, small_instructions), (large_calls, large_instructions) = (
        lowering_work_per_node(program, nodes) for nodes in sizes
    )
    assert large_calls < FLATNESS * small_calls
    assert large_instructions < FLATNESS * small_instructions
