"""Reusing traces and kernels: a gradient made again inside a loop, and the transforms after grad.

    python3 benchmarks/trace_reuse.py                            # about a minute
    python3 benchmarks/trace_reuse.py --quick                    # fewer repeats
    python3 benchmarks/trace_reuse.py --before /path/to/checkout # the baseline to compare with

1. Per training step of ``g = cr.grad(lambda w: loss(w, x)); w -= lr * g(w)`` with the lambda
   made inside the loop (the issue's 3.7 ms against 0.01 ms), against the same loop with ``g``
   made once before it (the first step, which compiles in every variant, is not timed), for this checkout and the baseline (run in a subprocess with its
   checkout first on ``sys.path``), on both backends. The loss is a small MLP's (issue 24's
   "everyday programs"); each step also costs the kernel call, so "made once" is the floor.
2. The first call of ``cr.jacobian(f)``, ``cr.hessian(f)``, ``cr.value_and_grad(f)`` and
   ``cr.jit(f)`` right after ``cr.grad(f)(w)`` of the same function and shapes (numpy backend):
   with trace reuse the Python runs once for all of them (the runs each first call took are
   counted), and value_and_grad reuses grad's pipeline run.

Each repeat uses a function of a key of its own (a closure over another float), so no repeat
finds the kernels of the one before, and runs with the cycle collector off after a collection
(as ``timeit`` does); the figure is the median over repeats. The machine is
shared, so compare ratios within one run.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time
import types
from pathlib import Path
from statistics import median

ROOT = Path(__file__).resolve().parents[1]
STEPS = 50


def problem():
    import numpy as np

    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((64, 8)), rng.standard_normal(64)
    w = rng.standard_normal(8 * 16 + 16) * 0.3
    return x, y, w


# Runs of the loss's Python: one per trace. A module is keyed by identity: counting in its
# attribute does not change the loss's key.
RUNS = types.ModuleType("runs")
RUNS.count = 0  # type: ignore[attr-defined]


def make_loss(scale, y):
    """A small MLP's loss, closing over ``scale`` (a key of its own per repeat) and ``y``."""
    import numpy as np

    def loss(w, x):
        RUNS.count += 1
        hidden = np.tanh(x @ w[:128].reshape(8, 16))
        return scale * np.mean((hidden @ w[128:] - y) ** 2)

    return loss


def loop_ms(cr, backend: str, inside: bool, repeat: int) -> float:
    """ms per step of a training loop of STEPS steps, the gradient made inside the loop or once."""
    x, y, w = problem()
    loss = make_loss(1.0 + repeat * 1e-6 + (0.5 if inside else 0.25) + (0.125 if backend == "llvm" else 0.0), y)
    gradient = cr.grad(lambda v: loss(v, x), backend=backend)
    w = w - 0.01 * gradient(w)  # the first step compiles, in every variant: not timed
    start = time.perf_counter()
    if inside:
        for _ in range(STEPS):
            gradient = cr.grad(lambda v: loss(v, x), backend=backend)
            w = w - 0.01 * gradient(w)
    else:
        for _ in range(STEPS):
            w = w - 0.01 * gradient(w)
    return (time.perf_counter() - start) / STEPS * 1e3


def after_grad_ms(cr, transform: str, repeat: int) -> tuple[float, int]:
    """ms of the first call of ``transform`` of a function whose gradient was just computed, and
    the runs of its Python that call took."""
    x, y, w = problem()
    loss = make_loss(3.0 + repeat * 1e-6 + len(transform), y)

    def objective(v):
        return loss(v, x)

    cr.grad(objective)(w)
    runs, start = RUNS.count, time.perf_counter()
    getattr(cr, transform)(objective)(w)
    return (time.perf_counter() - start) * 1e3, RUNS.count - runs


def without_collection(measure):
    """``measure`` run with Python's cycle collector off after a full collection, as ``timeit``
    does: a full collection (~35 ms in a process with the compiler loaded) otherwise lands in
    some repeats and not others."""

    def measured(*args):
        gc.collect()
        gc.disable()
        try:
            return measure(*args)
        finally:
            gc.enable()

    return measured


def measure_checkout(quick: bool) -> dict[str, float]:
    import chainrule as cr

    repeats = 3 if quick else 7
    figures: dict[str, float] = {}
    for backend in ("numpy", "llvm"):
        for inside in (True, False):
            name = f"loop {backend} {'made inside' if inside else 'made once'}"
            figures[name] = median(without_collection(loop_ms)(cr, backend, inside, r) for r in range(repeats))
    for transform in ("jacobian", "hessian", "value_and_grad", "jit"):
        measured = [without_collection(after_grad_ms)(cr, transform, r) for r in range(repeats)]
        figures[f"{transform} after grad"] = median(ms for ms, _ in measured)
        figures[f"{transform} after grad: Python runs"] = max(runs for _, runs in measured)
    return figures


def in_subprocess(checkout: Path, quick: bool) -> dict[str, float]:
    """The figures of ``checkout``, measured by this script in a process of its own."""
    environment = dict(os.environ, PYTHONPATH=str(checkout))
    arguments = [sys.executable, __file__, "--measure"] + (["--quick"] if quick else [])
    done = subprocess.run(arguments, env=environment, capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--before", type=Path, help="a checkout of the baseline")
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.measure:
        print(json.dumps(measure_checkout(options.quick)))
        return
    now = in_subprocess(ROOT, options.quick)
    before = in_subprocess(options.before, options.quick) if options.before else None
    print(f"ms per step ({STEPS} steps) or per first call; medians; same run\n")
    header = f"{'case':42} {'this checkout':>14}"
    header += f" {'baseline':>10} {'speed-up':>9}" if before else ""
    print(header)
    for name, value in now.items():
        line = f"{name:42} {value:14.3f}"
        if before and name.endswith("runs"):
            line = f"{name:42} {value:14.0f} {before[name]:10.0f}"
        elif before:
            line += f" {before[name]:10.3f} {before[name] / value:8.1f}x"
        print(line)
    for backend in ("numpy", "llvm"):
        ratio = now[f"loop {backend} made inside"] / now[f"loop {backend} made once"]
        print(f"\n{backend}: a gradient made inside the loop costs {ratio:.2f}x one made once (this checkout)")


if __name__ == "__main__":
    main()
