"""A damped pendulum integrated with RK4 over 10,000 steps, differentiated through the loop.

    python examples/pendulum_rk4.py [--steps 10000] [--backend numpy|llvm]

theta'' = -(g / L) sin(theta) - damping * theta', from theta = 1 rad at rest, dt = 1 ms. The
integrator is a ``cr.fori_loop``: the RK4 step is traced once into the body of one loop node, so
compiling the gradient takes the same time for 10 steps or 10,000 (a Python loop would be
unrolled into 10,000 copies of the step: see benchmarks/loops.py). The gradient of the final
angle with respect to the damping comes from a backward loop over the step's VJP, and is checked
here against central finite differences of the same integrator written as a plain Python loop.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

try:
    import chainrule as cr
except ImportError:  # run from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import chainrule as cr

GRAVITY, LENGTH, DT = 9.81, 1.0, 1e-3


def acceleration(theta, omega, damping):
    return -(GRAVITY / LENGTH) * np.sin(theta) - damping * omega


def rk4_step(state, damping):
    """One classical Runge-Kutta step of (theta, omega)."""
    theta, omega = state
    k1 = (omega, acceleration(theta, omega, damping))
    k2 = (omega + 0.5 * DT * k1[1], acceleration(theta + 0.5 * DT * k1[0], omega + 0.5 * DT * k1[1], damping))
    k3 = (omega + 0.5 * DT * k2[1], acceleration(theta + 0.5 * DT * k2[0], omega + 0.5 * DT * k2[1], damping))
    k4 = (omega + DT * k3[1], acceleration(theta + DT * k3[0], omega + DT * k3[1], damping))
    return (
        theta + DT / 6 * (k1[0] + 2 * k2[0] + 2 * k3[0] + k4[0]),
        omega + DT / 6 * (k1[1] + 2 * k2[1] + 2 * k3[1] + k4[1]),
    )


def final_angle(damping, steps):
    """theta after ``steps`` RK4 steps: one loop node, whatever ``steps`` is."""
    theta, _ = cr.fori_loop(0, steps, lambda i, state: rk4_step(state, damping), (1.0, 0.0))
    return theta


def final_angle_python(damping, steps):
    """The same integrator as a plain Python loop (the reference)."""
    state = (1.0, 0.0)
    for _ in range(steps):
        state = rk4_step(state, damping)
    return state[0]


def finite_difference(damping, steps, h=1e-4):
    """d final angle / d damping by the fourth-order central difference of the Python loop."""

    def f(c):
        return final_angle_python(c, steps)

    return (8 * (f(damping + h) - f(damping - h)) - (f(damping + 2 * h) - f(damping - 2 * h))) / (12 * h)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--damping", type=float, default=0.5)
    parser.add_argument("--backend", default="numpy", choices=["numpy", "llvm"])
    args = parser.parse_args(argv)

    # steps is static: the loop has a fixed trip count (a traced one would make it a while loop)
    gradient = cr.value_and_grad(final_angle, static_argnames="steps", backend=args.backend)
    start = time.perf_counter()
    angle, slope = gradient(args.damping, args.steps)
    first_call = time.perf_counter() - start
    start = time.perf_counter()
    gradient(args.damping, args.steps)
    run = time.perf_counter() - start
    reference = finite_difference(args.damping, args.steps)
    error = abs(slope - reference) / (abs(slope) + abs(reference) + 1e-8)
    print(f"damped pendulum, RK4, {args.steps} steps of {DT} s, damping {args.damping} ({args.backend} backend)")
    print(
        f"final angle                    {angle:.12f} rad (Python loop: {final_angle_python(args.damping, args.steps):.12f})"
    )
    print(f"d final angle / d damping      {slope:.12f} (chainrule, through the loop)")
    print(f"finite differences             {reference:.12f}")
    print(f"relative difference            {error:.2e} (criterion: < 1e-7)")
    print(f"first call (trace, compile, run) {first_call:.3f} s; a call {run * 1e3:.1f} ms")
    traced = gradient.ir(args.damping, args.steps, stage="traced").splitlines()
    print("the traced IR's loop:", next(line for line in traced if "= loop[" in line).split("=", 1)[1].strip())
    return angle, slope, reference, error


if __name__ == "__main__":
    main()
