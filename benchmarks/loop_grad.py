"""The gradient of an RK4 pendulum loop: chainrule's scan and while_loop vs JAX's lax.scan.

    python3 benchmarks/loop_grad.py [--steps 100,1000,10000] [--repeats 5] [--backend numpy]

d(final angle)/d(damping) of examples/pendulum_rk4.py's integrator written three ways:

- chainrule: ``cr.grad`` of a ``cr.scan`` over the steps (a loop node; the backward loop reads the
  tape of carries);
- chainrule: ``cr.grad`` of a ``cr.while_loop`` running until a step counter reaches the count:
  the trip count is not known when tracing, and reverse mode works anyway (the forward records
  it, the backward pass runs the steps again keeping their carries);
- JAX: ``jax.jit(jax.grad(...))`` of a ``lax.scan`` (float64, ``jax_enable_x64``), when JAX is
  installed. JAX refuses reverse mode through ``lax.while_loop``: the benchmark shows its error.

Each repeat builds a new function object (chainrule and JAX both cache compiled code per function),
times its first call (tracing, compiling, one run) and then the median of three calls; the table
shows medians over repeats, and the ratios are against JAX's call in the same run. All three
gradients agree (checked to 1e-10).
"""

from __future__ import annotations

import argparse
import sys
import time
import types
from pathlib import Path
from statistics import median

import numpy as np

try:
    import chainrule as cr
except ImportError:  # run from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import chainrule as cr

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from pendulum_rk4 import rk4_step

try:
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
except ImportError:
    jax = None


def scan_angle(damping, steps):
    (theta, _), _ = cr.scan(lambda s, _: (rk4_step(s, damping), None), (1.0, 0.0), None, length=steps)
    return theta


def while_angle(damping, steps):
    def step(state):
        count, theta, omega = state
        theta, omega = rk4_step((theta, omega), damping)
        return count + 1, theta, omega

    _, theta, _ = cr.while_loop(lambda state: state[0] < steps, step, (np.int64(0), 1.0, 0.0))
    return theta


def jax_rk4_step(state, damping, dt=1e-3):
    """examples/pendulum_rk4.py's step in jax.numpy."""

    def f(theta, omega):
        return omega, -9.81 * jnp.sin(theta) - damping * omega

    theta, omega = state
    k1 = f(theta, omega)
    k2 = f(theta + 0.5 * dt * k1[0], omega + 0.5 * dt * k1[1])
    k3 = f(theta + 0.5 * dt * k2[0], omega + 0.5 * dt * k2[1])
    k4 = f(theta + dt * k3[0], omega + dt * k3[1])
    return (
        theta + dt / 6 * (k1[0] + 2 * k2[0] + 2 * k3[0] + k4[0]),
        omega + dt / 6 * (k1[1] + 2 * k2[1] + 2 * k3[1] + k4[1]),
    )


def jax_scan_angle(steps):
    def angle(damping):
        state = (jnp.float64(1.0), jnp.float64(0.0))
        (theta, _), _ = jax.lax.scan(lambda s, _: (jax_rk4_step(s, damping), None), state, None, length=steps)
        return theta

    return angle


def jax_while_error() -> str:
    """What JAX says when asked for reverse mode through lax.while_loop."""

    def angle(damping):
        state = (0, jnp.float64(1.0), jnp.float64(0.0))

        def step(s):
            return (s[0] + 1, *jax_rk4_step(s[1:], damping))

        return jax.lax.while_loop(lambda s: s[0] < 100, step, state)[1]

    try:
        jax.grad(angle)(0.5)
    except Exception as error:  # JAX raises ValueError; report whatever it is
        return f"{type(error).__name__}: {str(error).splitlines()[0]}"
    return "no error (JAX differentiated the while loop)"


def fresh(fn):
    return types.FunctionType(fn.__code__, fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__)


def timed(call, repeats: int = 3) -> tuple[float, float, float]:
    """(first call seconds, median of later calls, gradient)."""
    start = time.perf_counter()
    value = call()
    first = time.perf_counter() - start
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        runs.append(time.perf_counter() - start)
    return first, median(runs), float(value)


def measure(steps: int, repeats: int, backend: str) -> dict:
    rows: dict[str, list] = {"scan": [], "while": [], "jax": []}
    for _ in range(repeats):
        scan_gradient = cr.grad(fresh(scan_angle), backend=backend)
        rows["scan"].append(timed(lambda: scan_gradient(0.5, steps)))
        while_gradient = cr.grad(fresh(while_angle), backend=backend)
        rows["while"].append(timed(lambda: while_gradient(0.5, np.int64(steps))))
        if jax is not None:
            jax_gradient = jax.jit(jax.grad(jax_scan_angle(steps)))
            rows["jax"].append(timed(lambda: jax_gradient(0.5).block_until_ready()))
    result = {}
    for name, measured in rows.items():
        if measured:
            firsts, calls, values = zip(*measured)
            result[name] = (median(firsts), median(calls), values[0])
    return result


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", default="100,1000,10000")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--backend", default="numpy", choices=["numpy", "llvm"])
    args = parser.parse_args(argv)
    print(f"d theta(T) / d damping, RK4 pendulum, chainrule {args.backend} backend vs jax.jit(jax.grad(lax.scan))")
    if jax is None:
        print("(JAX is not installed: chainrule's rows only)")
    else:
        print(f"JAX {jax.__version__}, reverse mode through lax.while_loop: {jax_while_error()}")
    print(
        f"{'steps':>6} {'cr scan 1st s':>14} {'cr scan ms':>11} {'cr while 1st s':>15} {'cr while ms':>12}"
        f" {'jax 1st s':>10} {'jax ms':>8} {'scan/jax':>9} {'while/jax':>10}"
    )
    results = {}
    for steps in [int(s) for s in args.steps.split(",")]:
        row = results[steps] = measure(steps, args.repeats, args.backend)
        values = [v[2] for v in row.values()]
        assert max(values) - min(values) <= 1e-10 * max(abs(v) for v in values), (steps, values)
        jax_first, jax_call = row["jax"][:2] if "jax" in row else (float("nan"), float("nan"))
        print(
            f"{steps:>6} {row['scan'][0]:>14.3f} {row['scan'][1] * 1e3:>11.2f} {row['while'][0]:>15.3f}"
            f" {row['while'][1] * 1e3:>12.2f} {jax_first:>10.3f} {jax_call * 1e3:>8.2f}"
            f" {row['scan'][1] / jax_call:>8.1f}x {row['while'][1] / jax_call:>9.1f}x"
        )
    return results


if __name__ == "__main__":
    main()
