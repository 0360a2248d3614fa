"""Differential fuzzing: random programs over the op registry (tests/fuzz_programs.py), each
checked five ways against each other and against finite differences:

1. the value, traced and compiled by the NumPy and the LLVM backends (``value_and_grad``),
   against NumPy run eagerly;
2. the gradient, NumPy backend against LLVM backend;
3. the gradient along a random direction against a fourth-order central difference of the
   eagerly run program (relative error < 1e-7 of the derivative's scale);
4. forward mode (``cr.jvp``) against reverse mode (``cr.grad``) along the same direction;
5. second order: ``cr.hvp`` against a central difference of the gradient.

A point where two step sizes disagree (a pole, a kink, a jump nearby) is filtered out, not
failed. The default run tries ``FUZZ_EXAMPLES`` programs; ``CHAINRULE_FUZZ_EXAMPLES=10000
python -m pytest tests/test_fuzz.py`` is the long run (it is skipped otherwise, to keep the
suite's time). A disagreement hypothesis finds becomes a regression test in
tests/test_fuzz_regressions.py.
"""

from __future__ import annotations

import gc
import os
import tracemalloc
import warnings
import weakref

import numpy as np
import pytest
from fuzz_programs import NAMES, Instruction, Program, programs
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import chainrule as cr
from chainrule.transforms import recent_functions
from chainrule.transforms.reuse import RECENT_ENTRIES

FUZZ_EXAMPLES = 30
# Every instruction of the kinds random programs draw rarely, once each in the default run (loops
# with one body op each: the bodies are the elementwise ops the random programs cover anyway).
RARE_INSTRUCTIONS = [
    (kind, name)
    for kind in ("view", "loop", "linalg", "write", "special")
    for name in NAMES[kind]
    if kind != "loop" or name.endswith(("/sin", "/hypot"))
]
LONG_EXAMPLES = int(os.environ.get("CHAINRULE_FUZZ_EXAMPLES", "0"))


def directional_difference(f, point, direction, step):
    """Fourth-order central difference of f along direction at point."""
    values = [f(*(p + k * step * d for p, d in zip(point, direction))) for k in (-2, -1, 1, 2)]
    return (values[0] - 8 * values[1] + 8 * values[2] - values[3]) / (12 * step)


def check_program(program: Program, seed: int) -> None:
    rng = np.random.default_rng(seed)
    point = (rng.uniform(-1, 1, (2, 3)), rng.uniform(-1, 1, (3, 3)))
    direction = (rng.standard_normal((2, 3)), rng.standard_normal((3, 3)))
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        expected = program.reference(*point)
        assume(np.isfinite(expected) and abs(expected) < 1e8)
        coarse, fine = (directional_difference(program.reference, point, direction, h) for h in (2e-3, 1e-3))
    assume(np.isfinite(coarse) and np.isfinite(fine))
    scale = max(abs(fine), 1e-3)
    assume(abs(coarse - fine) < 1e-8 * scale * 16)  # smooth here: the stencil's error is tiny

    value, gradient = cr.value_and_grad(program, argnums=(0, 1))(*point)
    llvm_value, llvm_gradient = cr.value_and_grad(program, argnums=(0, 1), backend="llvm")(*point)
    for backend, got in (("numpy", value), ("llvm", llvm_value)):
        np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12, err_msg=f"value, {backend}: {program}")
    for got, want in zip(llvm_gradient, gradient):
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-11, err_msg=f"llvm vs numpy gradient: {program}")
    along = sum(np.sum(g * d) for g, d in zip(gradient, direction))
    assert abs(along - fine) <= 1e-7 * scale, f"gradient {along} vs finite differences {fine}: {program}"
    _, tangent = cr.jvp(program, point, direction)
    assert abs(tangent - along) <= 1e-10 * max(abs(along), 1.0), f"jvp {tangent} vs grad {along}: {program}"
    check_second_order(program, point, direction)


def check_second_order(program: Program, point, direction) -> None:
    """H v against a central difference of the gradient along v (on x only: hvp's argnums=0)."""
    value_and_grad = cr.value_and_grad(program, argnums=(0, 1))  # compiled above: a cache hit

    def gradient(x, weights_matrix):
        return value_and_grad(x, weights_matrix)[1][0]

    step = 1e-4
    with np.errstate(all="ignore"):
        ahead = gradient(point[0] + step * direction[0], point[1])
        behind = gradient(point[0] - step * direction[0], point[1])
        farther = gradient(point[0] + 2 * step * direction[0], point[1])
        farther_behind = gradient(point[0] - 2 * step * direction[0], point[1])
    estimate = (farther_behind - 8 * behind + 8 * ahead - farther) / (12 * step)
    coarse = (ahead - behind) / (2 * step)
    assume(np.all(np.isfinite(estimate)))
    scale = max(float(np.max(np.abs(estimate))), 1e-3)
    assume(float(np.max(np.abs(coarse - estimate))) < 1e-4 * scale)
    product = cr.hvp(program)(*point, direction[0])
    error = float(np.max(np.abs(product - estimate)))
    assert error <= 1e-6 * scale, f"hvp vs finite differences of grad: {error:.3g} (scale {scale:.3g}): {program}"


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(programs(), st.integers(0, 2**31 - 1))
def test_random_programs_agree_across_backends_modes_and_finite_differences(program, seed):
    check_program(program, seed)


@pytest.mark.parametrize(("kind", "name"), RARE_INSTRUCTIONS)
@settings(max_examples=1, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_each_instruction_agrees_across_backends_modes_and_finite_differences(kind, name, seed):
    first = Instruction("unary", "tanh", (0, 0))
    check_program(Program((first, Instruction(kind, name, (2, 1), axis=1)), (1.0, -0.5)), seed)


@pytest.mark.slow
@pytest.mark.skipif(LONG_EXAMPLES == 0, reason="the long run: set CHAINRULE_FUZZ_EXAMPLES=10000")
@settings(max_examples=max(LONG_EXAMPLES, 1), deadline=None, suppress_health_check=list(HealthCheck))
@given(programs(max_instructions=10), st.integers(0, 2**31 - 1))
def test_long_fuzzing_run(program, seed):
    check_program(program, seed)


def test_compiled_and_dropped_programs_leave_memory_flat(monkeypatch):
    """A long fuzzing run grew by ~1.5 MB per program (3.5 GB after 2,500): cr.jvp's per-function
    cache was weak-keyed by the function but its values held the function, so no entry ever died.
    Now at most ``RECENT_FUNCTIONS`` stay: programs past that bound are freed, and memory traced
    over many programs compiled (value_and_grad, jvp, hvp) and dropped stays flat. (LLVM modules
    compiled and dropped: tests/test_memory.py.)"""
    monkeypatch.setattr(recent_functions, "RECENT_FUNCTIONS", 4)
    point = (np.full((2, 3), 0.3), np.full((3, 3), 0.2))
    alive = []

    def compile_and_drop(weight: float) -> None:
        program = Program((Instruction("unary", "tanh", (0, 0)), Instruction("binary", "mul", (2, 1))), (weight, 1.0))
        cr.value_and_grad(program, argnums=(0, 1))(*point)
        cr.jvp(program, point, point)
        cr.hvp(program)(*point, point[0])
        alive.append(weakref.ref(program))

    for weight in range(6):  # fills the bounded caches
        compile_and_drop(float(weight))
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for weight in range(6, 20):
            compile_and_drop(float(weight))
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert sum(ref() is not None for ref in alive) <= recent_functions.RECENT_FUNCTIONS + RECENT_ENTRIES
    assert grown < 4 * 2**20, f"14 programs compiled and dropped kept {grown / 2**20:.1f} MB"


def test_fused_bodies_die_with_their_programs(monkeypatch):
    """A long fuzzing run (docs/reliability.md) kept ~0.03 MB of Python objects per program after
    its functions were gone: the op table's inferred-type memo (``ir.ops.INFERRED``, cleared only at
    65,536 entries) was keyed by each fused node's body, its steps, names and source lines. Fused
    bodies are made once per fusion and never looked up again, so they are not remembered, and the
    fused bodies alive stay those of the functions the bounded caches keep."""
    monkeypatch.setattr(recent_functions, "RECENT_FUNCTIONS", 4)
    point = (np.full((2, 3), 0.3), np.full((3, 3), 0.2))

    def compile_and_drop(first: str, second: str) -> None:
        steps = (Instruction("unary", first, (0, 0)), Instruction("unary", second, (2, 2)))
        program = Program((*steps, Instruction("binary", "mul", (3, 1))), (1.0, -0.5, 0.25))
        cr.value_and_grad(program, argnums=(0, 1))(*point)
        cr.jvp(program, point, point)

    def fused_bodies_alive() -> int:
        gc.collect()
        return sum(type(o).__name__ == "FusedBody" for o in gc.get_objects())

    unary = NAMES["unary"]
    pairs = [(a, b) for a in unary[:8] for b in unary[8:16]]  # structurally different programs
    for first, second in pairs[:10]:  # fills the bounded caches
        compile_and_drop(first, second)
    before = fused_bodies_alive()
    for first, second in pairs[10:40]:
        compile_and_drop(first, second)
    grown = fused_bodies_alive() - before
    assert grown <= 20, f"30 programs compiled and dropped left {grown} more fused bodies alive"
