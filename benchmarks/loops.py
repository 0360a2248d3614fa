"""Loops that stay loops: compile time and run time of the RK4 pendulum's gradient.

    python3 benchmarks/loops.py [--repeats 5] [--backend numpy]    # about a minute; prints one table

The gradient of the final angle with respect to the damping (examples/pendulum_rk4.py), with the
integrator written two ways: ``cr.fori_loop`` (one loop node; the step is traced once) and the
plain Python loop, which tracing unrolls into a copy of the step per step. Compile time is
tracing, differentiating, optimizing and generating code for a new function object (``.graph``);
the first call adds compiling the loop's bodies and one run;
each row is the median over ``--repeats`` fresh compilations. The unrolled form runs at 10 and 100
steps by default (``--unrolled 10,100,1000`` adds more): its compile time grows with the trip
count (the issue measured ~17 s at 1,000; ~3.4 s here once main's symbolic-pass fix landed). Ratios are
against the fori_loop at the same trip count, measured in the same process. The machine is shared:
expect noise.
"""

from __future__ import annotations

import argparse
import sys
import time
import types
from pathlib import Path
from statistics import median

try:
    import chainrule as cr
except ImportError:  # run from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import chainrule as cr

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from pendulum_rk4 import final_angle, rk4_step


def unrolled(damping, steps):
    state = (1.0, 0.0)
    for _ in range(steps):
        state = rk4_step(state, damping)
    return state[0]


def measure(fn, steps: int, repeats: int, backend: str) -> tuple[float, float, float]:
    """Medians of (compile seconds, first call seconds, seconds per later call) of cr.grad(fn)."""
    compiles, firsts, calls = [], [], []
    for _ in range(repeats):
        # a new function object each time: compiled kernels are shared per function (as jax.jit's)
        fresh = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__)
        gradient = cr.grad(fresh, backend=backend)
        start = time.perf_counter()
        gradient.graph(0.5, steps)  # trace, differentiate, optimize, generate code
        compiles.append(time.perf_counter() - start)
        start = time.perf_counter()
        gradient(0.5, steps)  # the first run also compiles the loop's bodies
        firsts.append(time.perf_counter() - start)
        runs = []
        for _ in range(3):
            start = time.perf_counter()
            gradient(0.5, steps)
            runs.append(time.perf_counter() - start)
        calls.append(median(runs))
    return median(compiles), median(firsts), median(calls)


def main(argv=None) -> list[tuple]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--backend", default="numpy", choices=["numpy", "llvm"])
    parser.add_argument("--unrolled", default="10,100", help="trip counts of the unrolled loop (comma-separated)")
    args = parser.parse_args(argv)
    rows = []
    loop_compile: dict[int, float] = {}
    for steps in (10, 100, 1_000, 10_000):
        compile_s, first_s, call_s = measure(final_angle, steps, args.repeats, args.backend)
        loop_compile[steps] = compile_s
        rows.append(("fori_loop", steps, compile_s, first_s, call_s, 1.0))
    for steps in [int(n) for n in args.unrolled.split(",")]:
        compile_s, first_s, call_s = measure(unrolled, steps, args.repeats, args.backend)
        rows.append(("unrolled", steps, compile_s, first_s, call_s, compile_s / loop_compile.get(steps, float("nan"))))
    print(f"RK4 pendulum, d(final angle)/d(damping), {args.backend} backend, medians of {args.repeats} compilations")
    header = f"{'integrator':<11} {'steps':>6} {'compile s':>10} {'1st call s':>11} {'call ms':>9} {'us/step':>8}"
    print(f"{header} {'compile / loop':>15}")
    for name, steps, compile_s, first_s, call_s, ratio in rows:
        timing = f"{compile_s:>10.3f} {first_s:>11.3f} {call_s * 1e3:>9.2f} {call_s / steps * 1e6:>8.1f}"
        print(f"{name:<11} {steps:>6} {timing} {ratio:>14.1f}x")
    return rows


if __name__ == "__main__":
    main()
