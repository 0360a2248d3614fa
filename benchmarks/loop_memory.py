"""Memory of reverse mode through a 10,000-step loop: a tape of every carry vs checkpointing.

    python3 benchmarks/loop_memory.py [--steps 10000] [--pendulums 128] [--repeats 3]

The gradient of the mean final angle of a batch of damped pendulums (RK4, ``cr.scan`` over
``--steps`` steps, examples/pendulum_rk4.py's step, each pendulum from its own initial angle) with
respect to the damping, on the NumPy backend, under each loop checkpoint:

- ``store all``: the loop keeps the carry of every step (steps x carry bytes), the backward loop
  reads it;
- ``sqrt``: Chen's segments, about 2 sqrt(steps) carries;
- ``optimal``: Revolve with the fewest snapshots that reverse in about one extra sweep;
- ``snapshots=10``: Revolve with 10;
- a byte budget of 64 carries.

Columns: the bytes the memory report says (``.memory()``: the forward values kept for the backward
pass, and the snapshots a checkpointed loop holds at most), the peak that tracemalloc measures over
one more gradient call (Python's and NumPy's allocations, beyond what the inputs hold), the forward
steps computed again (Revolve's count), and the median time of a call (after a first call on a new
function object, which compiles). Gradients are checked against the store-all one (< 1e-12).
"""

from __future__ import annotations

import argparse
import sys
import time
import tracemalloc
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


def make_loss(steps: int, **checkpoint):
    def mean_final_angle(damping, theta0):
        state = (theta0, np.zeros_like(theta0))
        (theta, _), _ = cr.scan(lambda s, _: (rk4_step(s, damping), None), state, None, length=steps, **checkpoint)
        return np.mean(theta)

    return mean_final_angle


def measure(steps: int, pendulums: int, repeats: int, checkpoint: dict) -> dict:
    theta0 = np.linspace(0.2, 1.2, pendulums)
    loss = make_loss(steps, **checkpoint)
    times = []
    for _ in range(repeats):
        fresh = types.FunctionType(loss.__code__, loss.__globals__, "loss", loss.__defaults__, loss.__closure__)
        gradient = cr.grad(fresh)
        value = gradient(0.5, theta0)  # compiles the function and the loop's bodies
        start = time.perf_counter()
        gradient(0.5, theta0)
        times.append(time.perf_counter() - start)
    tracemalloc.start()  # apart from the timed calls: tracing every allocation slows them down
    gradient(0.5, theta0)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    report = gradient.memory(0.5, theta0)
    loops = report.loops
    return {
        "gradient": value,
        "kept": report.kept_bytes,
        "snapshots": sum(loop.snapshot_bytes for loop in loops),
        "slots": sum(loop.slots for loop in loops),
        "recomputed": sum(loop.advances for loop in loops),
        "peak": peak,
        "seconds": median(times),
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--pendulums", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    carry_bytes = 2 * 8 * args.pendulums
    policies = {
        "store all": {},
        "sqrt": {"checkpoint": "sqrt"},
        "optimal": {"checkpoint": "optimal"},
        "snapshots=10": {"snapshots": 10},
        f"budget {64 * carry_bytes} B": {"checkpoint": 64 * carry_bytes},
    }
    print(
        f"gradient of {args.pendulums} RK4 pendulums over {args.steps} steps (carry {carry_bytes} B, "
        f"tape of every carry {args.steps * carry_bytes / 1e6:.1f} MB), numpy backend, median of {args.repeats}"
    )
    header = f"{'checkpoint':<22}{'kept (report)':>15}{'snapshots':>11}{'held B':>11}"
    print(header + f"{'tracemalloc peak':>18}{'steps again':>13}{'call s':>9}{'vs store all':>14}")
    results = {name: measure(args.steps, args.pendulums, args.repeats, policy) for name, policy in policies.items()}
    base = results["store all"]
    for name, row in results.items():
        assert abs(row["gradient"] - base["gradient"]) <= 1e-12 * abs(base["gradient"]), name
        print(
            f"{name:<22}{row['kept']:>15,}{row['slots']:>11}{row['snapshots']:>11,}{row['peak']:>18,}"
            f"{row['recomputed']:>13,}{row['seconds']:>9.3f}{row['seconds'] / base['seconds']:>13.2f}x"
        )
    return results


if __name__ == "__main__":
    main()
