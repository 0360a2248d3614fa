"""The scalar call and the default thread count, before and after, in one run.

    python3 benchmarks/scalar_call.py                       # about two minutes
    python3 benchmarks/scalar_call.py --quick               # fewer repeats
    python3 benchmarks/scalar_call.py --before /path/to/checkout   # the baseline to compare with

1. Scalar call: the median time of one call of ``cr.grad(nested30, backend="llvm")(4.2)``
   (seed 001's nested function at depth 30, a Python float in and out), on the LLVM and
   NumPy backends, for this checkout and the baseline (run in a subprocess with its
   checkout first on ``sys.path``), next to a hand-written Python derivative (``math``),
   ``jax.jit(jax.grad(f))`` when JAX is installed, and two floors: one ctypes call of libm's
   ``cos`` (what calling any native function through ctypes costs) and the kernel's native
   scalar entry called through ctypes directly (no ``Compiled`` in between). The issue's bar:
   <= 1.5 us per call.
2. Threads: the gradient of ``sum(nested30(x))`` at 10^2, 10^4 and 10^6 points on one thread
   and with the default thread count, for both checkouts. The bar: the default is never
   slower than one thread. Also the cost of one parallel loop handed to the worker pool
   (``parallel.py``, ``pool.py``), which sets ``kernel.HANDOFF_NS``.

Each repeat builds a fresh function object (kernels are cached per function object), warms it
with one call, then times a batch of calls; the figure is the median over repeats. The machine
is shared, so compare ratios within one run.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from statistics import median

ROOT = Path(__file__).resolve().parents[1]
DEPTH = 30
X0 = 4.2
POINTS = (100, 10_000, 1_000_000)


def per_call_ns(make, argument, calls: int, repeats: int) -> float:
    """Median over ``repeats`` of ns per call of a fresh ``make()``, warmed by one call."""
    times = []
    for _ in range(repeats):
        fn = make()
        fn(argument)
        start = time.perf_counter()
        for _ in range(calls):
            fn(argument)
        times.append((time.perf_counter() - start) / calls * 1e9)
    return median(times)


def hand_derivative(x: float) -> float:
    """d/dx of nested30 at x by the chain rule, written out with the math module."""
    derivative = 1.0
    for _ in range(DEPTH):
        s = math.sin(x)
        t = math.tan(s)
        derivative *= math.cos(x) / math.cos(s) ** 2 * -math.sin(t)
        x = math.cos(t)
    return derivative


def nested_sum_gradient(cr, nested_function):
    """cr.grad of sum(nested_function(x)) on the llvm backend: a fresh function object."""
    import numpy as np

    return cr.grad(lambda x: np.sum(nested_function(x)), backend="llvm")


def measure_checkout(quick: bool) -> dict[str, object]:
    """Every figure of one checkout (the one first on sys.path), as JSON-able numbers."""
    import numpy as np

    import chainrule as cr
    from chainrule.backends.llvm import kernel
    from chainrule.cli.nested_function import nested_numpy

    repeats, calls = (3, 5_000) if quick else (7, 20_000)
    rows: dict[str, object] = {}
    for backend in ("llvm", "numpy"):
        rows[f"scalar {backend}"] = per_call_ns(
            lambda: cr.grad(nested_numpy(DEPTH), backend=backend), X0, calls, repeats
        )
    probe = cr.grad(nested_numpy(DEPTH), backend="llvm")
    probe(X0)
    natives = getattr(next(iter(probe._cache.values())).kernel, "scalar_outputs", None)
    if natives is not None:
        rows["native entry"] = per_call_ns(lambda: natives[-1], X0, calls, repeats)
    most = kernel.get_num_threads()
    for points in POINTS:
        x = np.linspace(0.1, 3.0, points)
        batch = max(2, min(2_000, 20_000_000 // (points * DEPTH * 20)))
        for label, count in (("1 thread", 1), ("default", most)):
            kernel.set_num_threads(count)
            try:
                rows[f"{points} {label}"] = per_call_ns(
                    lambda: nested_sum_gradient(cr, nested_numpy(DEPTH)),
                    x,
                    batch,
                    max(3, repeats // 2),
                )
            finally:
                kernel.set_num_threads(most)
        made = nested_sum_gradient(cr, nested_numpy(DEPTH))
        made(x)
        compiled = next(iter(made._cache.values())).kernel
        rows[f"{points} threads"] = compiled.thread_count() if hasattr(compiled, "thread_count") else most
    rows["most threads"] = most
    return rows


def fork_join_us(threads: int) -> float:
    """One parallel loop (``parallel.py``, ``pool.py``) on ``threads`` threads over an empty body, in us."""
    from chainrule.backends.llvm import engine, parallel

    ir = (
        parallel.runtime("fj", 64)
        + parallel.DECLARATION
        + "\n"
        + (
            "define internal void @body(ptr %t, i64 %s, i64 %e, ptr %p) {\n  ret void\n}\n"
            "define void @fj_run(i64 %threads) {\n  %partials = alloca [64 x i64]\n"
            "  call void @fj_parallel(ptr @body, ptr null, i64 4096, ptr %partials, i64 8, i64 %threads, i64 64)\n"
            "  ret void\n}\n"
        )
    )
    module = engine.compile_ir(ir, name="fork_join")
    run = ctypes.CFUNCTYPE(None, ctypes.c_int64)(module.address("fj_run"))
    return per_call_ns(lambda: run, threads, 500, 5) / 1e3


def peers(quick: bool) -> dict[str, float]:
    """The hand-written derivative, JAX, and a bare ctypes call, in this process."""
    repeats, calls = (3, 5_000) if quick else (7, 20_000)
    rows = {"hand-written Python (math)": per_call_ns(lambda: hand_derivative, X0, calls, repeats)}
    libm = ctypes.CDLL("libm.so.6")
    libm.cos.restype, libm.cos.argtypes = ctypes.c_double, [ctypes.c_double]
    rows["ctypes call of libm cos"] = per_call_ns(lambda: libm.cos, X0, calls, repeats)
    try:
        import jax

        jax.config.update("jax_enable_x64", True)
        from chainrule.cli.nested_function import nested

        rows["jax.jit(jax.grad)"] = per_call_ns(
            lambda: jax.jit(jax.grad(nested(DEPTH, jax.numpy.sin, jax.numpy.tan, jax.numpy.cos))),
            X0,
            calls // 4,
            repeats,
        )
    except ImportError:
        pass
    return rows


def in_subprocess(checkout: Path, quick: bool) -> dict[str, object]:
    environment = dict(os.environ, PYTHONPATH=str(checkout))
    command = [sys.executable, __file__, "--worker"] + (["--quick"] if quick else [])
    done = subprocess.run(command, env=environment, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--before", type=Path, default=None, help="the baseline checkout")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(measure_checkout(args.quick)))
        return
    after = in_subprocess(ROOT, args.quick)
    before = in_subprocess(args.before, args.quick) if args.before else {}
    sys.path.insert(0, str(ROOT))
    print(f"1. Scalar call: cr.grad(nested{DEPTH})({X0}), median ns per call\n")
    print(f"| {'what':<34} | {'before':>9} | {'after':>9} |")
    print(f"|{'-' * 36}|{'-' * 11}|{'-' * 11}|")
    for key, label in (("scalar llvm", "chainrule llvm"), ("scalar numpy", "chainrule numpy")):
        print(f"| {label:<34} | {before.get(key, float('nan')):>9.0f} | {after[key]:>9.0f} |")
    if "native entry" in after:
        print(f"| {'native scalar entry via ctypes':<34} | {'':>9} | {after['native entry']:>9.0f} |")
    for label, value in peers(args.quick).items():
        print(f"| {label:<34} | {'':>9} | {value:>9.0f} |")
    print(f"\n2. Threads: grad of sum(nested{DEPTH}(x)) on the llvm backend, median us per call")
    print(f"   (default: up to {after['most threads']} threads, the kernel picks by work)\n")
    print("| points | before 1 thread | before default | after 1 thread | after default (threads) |")
    print("|-------:|----------------:|---------------:|---------------:|------------------------:|")
    for points in POINTS:
        cells = [before.get(f"{points} {label}", float("nan")) / 1e3 for label in ("1 thread", "default")]
        mine = [after[f"{points} {label}"] / 1e3 for label in ("1 thread", "default")]  # type: ignore[operator]
        chosen = after[f"{points} threads"]
        print(
            f"| {points:>6} | {cells[0]:>15.1f} | {cells[1]:>14.1f} | {mine[0]:>14.1f} | {mine[1]:>15.1f} ({chosen}) |"
        )
    forks = ", ".join(f"{t} threads {fork_join_us(t):.1f} us" for t in (1, 2, 4))
    print(f"\none parallel loop over an empty body (parallel.py, pool.py): {forks}")


if __name__ == "__main__":
    main()
