"""Loops that stay loops: compile time and run time of the RK4 pendulum's value and gradient.

    python3 benchmarks/loops.py [--repeats 3] [--steps 10,100,1000,10000] [--unrolled 10,100]

The damped pendulum of examples/pendulum_rk4.py, its final angle and the gradient with respect to
the initial state (theta0, omega0) and the damping, integrated by RK4 written several ways:

- ``fori_loop`` and ``scan`` (one loop node; the step is traced once) on the NumPy backend (a
  Python loop over the body's generated code) and on the LLVM backend (a native loop);
- the plain Python loop, which tracing unrolls into a copy of the step per step (10 and 100 steps
  by default: its compile time grows with the trip count);
- ``jax.lax.scan`` under ``jax.jit(jax.value_and_grad(...))`` in float64, when JAX is installed.

Compile is the first call of a new function object (tracing, differentiating, optimizing,
generating and compiling code; for JAX, tracing and XLA compilation) minus one later call; a call
is the median of later calls. Each row is the median over ``--repeats`` fresh function objects.
Ratios are same-run: per-step time against the native fori_loop at the same trip count. The
machine is shared: expect noise.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import types
from collections.abc import Callable
from pathlib import Path
from statistics import median

try:
    import chainrule as cr
except ImportError:  # run from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import chainrule as cr

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from pendulum_rk4 import rk4_step

POINT = (1.0, 0.0, 0.5)  # theta0, omega0, damping


def fori_angle(theta0, omega0, damping, steps):
    theta, _ = cr.fori_loop(0, steps, lambda i, state: rk4_step(state, damping), (theta0, omega0))
    return theta


def scan_angle(theta0, omega0, damping, steps):
    (theta, _), _ = cr.scan(lambda state, _: (rk4_step(state, damping), None), (theta0, omega0), None, length=steps)
    return theta


def unrolled_angle(theta0, omega0, damping, steps):
    state = (theta0, omega0)
    for _ in range(steps):
        state = rk4_step(state, damping)
    return state[0]


def _fresh(fn: Callable) -> Callable:
    """A new function object of the same code: compiled kernels are cached per function object."""
    return types.FunctionType(fn.__code__, fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__)


def _time(call: Callable[[], object], runs: int) -> tuple[float, float]:
    """(seconds of the first call, median seconds of ``runs`` later calls)."""
    start = time.perf_counter()
    call()
    first = time.perf_counter() - start
    later = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        later.append(time.perf_counter() - start)
    return first, median(later)


def measure_chainrule(fn: Callable, steps: int, backend: str, repeats: int) -> tuple[float, float]:
    """Medians of (compile seconds, seconds per call) of cr.value_and_grad(fn) on ``backend``, each
    compiled cold: a new function object and an empty object-code cache (the llvm backend keeps
    compiled modules on disk, keyed by their IR: a repeat would otherwise load the first one's)."""
    compiles, calls = [], []
    previous = os.environ.get("CHAINRULE_CACHE_DIR")
    for _ in range(repeats):
        cache = tempfile.mkdtemp(prefix="chainrule-bench-")
        os.environ["CHAINRULE_CACHE_DIR"] = cache
        try:
            # the trip count compiled in (static): a traced one would make fori_loop a while loop
            gradient = cr.value_and_grad(_fresh(fn), argnums=(0, 1, 2), backend=backend, static_argnums=3)
            first, call = _time(lambda gradient=gradient: gradient(*POINT, steps), 5)
        finally:
            shutil.rmtree(cache, ignore_errors=True)
            if previous is None:
                del os.environ["CHAINRULE_CACHE_DIR"]
            else:
                os.environ["CHAINRULE_CACHE_DIR"] = previous
        compiles.append(max(first - call, 0.0))
        calls.append(call)
    return median(compiles), median(calls)


def jax_scan_angle():
    """The same integrator with jax.lax.scan (JAX's own RK4 step: the same arithmetic)."""
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)

    def acceleration(theta, omega, damping):
        return -9.81 * jnp.sin(theta) - damping * omega

    def step(state, damping):
        theta, omega = state
        dt = 1e-3
        k1 = (omega, acceleration(theta, omega, damping))
        k2 = (omega + 0.5 * dt * k1[1], acceleration(theta + 0.5 * dt * k1[0], omega + 0.5 * dt * k1[1], damping))
        k3 = (omega + 0.5 * dt * k2[1], acceleration(theta + 0.5 * dt * k2[0], omega + 0.5 * dt * k2[1], damping))
        k4 = (omega + dt * k3[1], acceleration(theta + dt * k3[0], omega + dt * k3[1], damping))
        return (
            theta + dt / 6 * (k1[0] + 2 * k2[0] + 2 * k3[0] + k4[0]),
            omega + dt / 6 * (k1[1] + 2 * k2[1] + 2 * k3[1] + k4[1]),
        )

    def angle(theta0, omega0, damping, steps):
        (theta, _), _ = jax.lax.scan(lambda s, _: (step(s, damping), None), (theta0, omega0), None, length=steps)
        return theta

    return jax, angle


def measure_jax(steps: int, repeats: int) -> tuple[float, float] | None:
    try:
        jax, angle = jax_scan_angle()
    except ImportError:
        return None
    compiles, calls = [], []
    for _ in range(repeats):
        compiled = jax.jit(jax.value_and_grad(_fresh(angle), argnums=(0, 1, 2)), static_argnums=3)
        point = tuple(jax.numpy.float64(v) for v in POINT)

        def call(compiled=compiled, point=point):
            return jax.block_until_ready(compiled(*point, steps))

        first, later = _time(call, 5)
        compiles.append(max(first - later, 0.0))
        calls.append(later)
    return median(compiles), median(calls)


def main(argv=None) -> list[tuple]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", default="10,100,1000,10000", help="trip counts (comma-separated)")
    parser.add_argument("--unrolled", default="10,100", help="trip counts of the unrolled loop (comma-separated)")
    args = parser.parse_args(argv)
    trip_counts = [int(n) for n in args.steps.split(",")]
    unrolled = {int(n) for n in args.unrolled.split(",")}
    measure_chainrule(fori_angle, 2, "llvm", 1)  # imports and first-use setup, not measured
    rows = []
    for steps in trip_counts:
        native = measure_chainrule(fori_angle, steps, "llvm", args.repeats)
        rows.append(("chainrule llvm", "fori_loop", steps, *native, native[1]))
        for name, fn, backend in [("chainrule llvm", scan_angle, "llvm"), ("chainrule numpy", fori_angle, "numpy")]:
            label = "scan" if fn is scan_angle else "fori_loop"
            rows.append((name, label, steps, *measure_chainrule(fn, steps, backend, args.repeats), native[1]))
        if steps in unrolled:
            for backend in ("llvm", "numpy"):
                timing = measure_chainrule(unrolled_angle, steps, backend, args.repeats)
                rows.append((f"chainrule {backend}", "unrolled", steps, *timing, native[1]))
        jax_timing = measure_jax(steps, args.repeats)
        if jax_timing is not None:
            rows.append(("jax jit", "lax.scan", steps, *jax_timing, native[1]))
    print_table(rows, args.repeats)
    print_unrolled_ratios(rows)
    return rows


def print_unrolled_ratios(rows: list[tuple]) -> None:
    """Per step, the fori_loop against the unrolled program on the same backend (issue 17's measure)."""
    calls = {(name, integrator, steps): call_s for name, integrator, steps, _, call_s, _ in rows}
    print(f"{'backend':<16} {'steps':>6} {'fori us/step':>13} {'unrolled us/step':>17} {'fori / unrolled':>16}")
    for (name, integrator, steps), unrolled in calls.items():
        loop = calls.get((name, "fori_loop", steps))
        if integrator == "unrolled" and loop is not None:
            print(
                f"{name:<16} {steps:>6} {loop / steps * 1e6:>13.3f} {unrolled / steps * 1e6:>17.3f} {loop / unrolled:>15.2f}x"
            )


def print_table(rows: list[tuple], repeats: int) -> None:
    print(f"RK4 pendulum, value and gradient w.r.t. (theta0, omega0, damping); medians of {repeats} fresh functions")
    print(
        f"{'backend':<16} {'integrator':<10} {'steps':>6} {'compile s':>10} {'call ms':>10} {'us/step':>9} "
        f"{'per step / llvm fori':>21}"
    )
    for name, integrator, steps, compile_s, call_s, native_call in rows:
        timing = f"{compile_s:>10.3f} {call_s * 1e3:>10.3f} {call_s / steps * 1e6:>9.3f}"
        print(f"{name:<16} {integrator:<10} {steps:>6} {timing} {call_s / native_call:>20.2f}x")


if __name__ == "__main__":
    main()
