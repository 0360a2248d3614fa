"""The scalar gradient call at depth 30: this checkout against a baseline and the peers, one run.

    python3 benchmarks/scalar_gradient.py                              # this checkout and peers
    python3 benchmarks/scalar_gradient.py --before /path/to/checkout   # and the baseline

Times one call of ``cr.grad(nested30, backend="llvm")(4.2)`` (seed 001's cos(tan(sin(...))) at
depth 30, a Python float in and out), and, below it, what the call is made of: the kernel's
builtin called directly (python_entry.py; absent in the baseline), its native scalar entry
through ctypes, and the kernel body alone (the scalar entry called 10^5 times from a native
loop: no Python at all). Peers in the same run: ``jax.jit(jax.grad(f))`` and PyTorch eager
(``backward`` on a 0-d tensor), when installed, and the hand-written derivative with ``math``.

Each checkout runs in its own subprocess, the two alternating ``--rounds`` times; every row is
CPU time per call (``time.process_time``: the machine is shared), min and median over all
repeats, each repeat a fresh function object warmed by one call.
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
import timeit
from pathlib import Path
from statistics import median

ROOT = Path(__file__).resolve().parents[1]
DEPTH = 30
X0 = 4.2


def per_call_ns(make, calls: int, repeats: int) -> list[float]:
    """CPU ns per call of ``make()()``-style callables, one figure per repeat (fresh ``make()``)."""
    figures = []
    for _ in range(repeats):
        call = make()
        call()
        figures.append(min(timeit.repeat(call, number=calls, repeat=1, timer=time.process_time)) / calls * 1e9)
    return figures


def body_ns(native_entry, repeats: int) -> list[float]:
    """The kernel body alone: its native scalar entry called from a JIT loop (no Python, no ctypes)."""
    from chainrule.backends.llvm import engine

    ir = (
        "define double @body_loop(i64 %n, i64 %address, double %x) {\nentry:\n"
        "  %f = inttoptr i64 %address to ptr\n  br label %body\nbody:\n"
        "  %i = phi i64 [0, %entry], [%next, %body]\n  %acc = phi double [0.0, %entry], [%sum, %body]\n"
        "  %zero = fmul double %acc, 0.0\n  %arg = fadd double %x, %zero\n"  # a chain: no call is skipped
        "  %r = call double %f(double %arg)\n  %sum = fadd double %acc, %r\n"
        "  %next = add i64 %i, 1\n  %more = icmp ult i64 %next, %n\n"
        "  br i1 %more, label %body, label %done\ndone:\n  ret double %sum\n}\n"
    )
    module = engine.compile_ir(ir, name="body_loop", use_cache=False)
    loop = ctypes.CFUNCTYPE(ctypes.c_double, ctypes.c_int64, ctypes.c_int64, ctypes.c_double)(
        module.address("body_loop")
    )
    address = ctypes.cast(native_entry, ctypes.c_void_p).value
    calls = 20_000
    figures = []
    for _ in range(repeats):
        start = time.process_time()
        loop(calls, address, X0)
        figures.append((time.process_time() - start) / calls * 1e9)
    return figures


def measure_checkout(repeats: int, calls: int) -> dict[str, list[float]]:
    """This checkout's rows (the one first on sys.path)."""
    import chainrule as cr
    from chainrule.cli.nested_function import nested_numpy

    rows = {
        "chainrule llvm grad(4.2)": per_call_ns(
            lambda: _bound(cr.grad(nested_numpy(DEPTH), backend="llvm")), calls, repeats
        )
    }
    rows["chainrule numpy grad(4.2)"] = per_call_ns(lambda: _bound(cr.grad(nested_numpy(DEPTH))), calls // 10, repeats)
    probe = cr.grad(nested_numpy(DEPTH), backend="llvm")
    probe(X0)
    kernel = next(iter(probe._cache.values())).kernel
    natives = getattr(kernel, "scalar_outputs", None)
    make_builtin = getattr(kernel, "python_builtin", None)
    if make_builtin is not None and make_builtin(1, None) is not None:
        builtin = make_builtin(1, None)
        rows["  its builtin, called directly"] = per_call_ns(lambda: lambda: builtin(X0), calls, repeats)
    if natives is not None:
        rows["  its native entry through ctypes"] = per_call_ns(lambda: lambda: natives[1](X0), calls, repeats)
        rows["  its kernel body (native loop)"] = body_ns(natives[1], repeats)
    return rows


def _bound(grad):
    return lambda: grad(X0)


def peers(repeats: int, calls: int) -> dict[str, list[float]]:
    """JAX, PyTorch, hand-written math and a bare ctypes call, in this process."""
    rows = {"hand-written derivative (math)": per_call_ns(lambda: lambda: _hand_derivative(X0), calls, repeats)}
    libm = ctypes.CDLL("libm.so.6")
    libm.cos.restype, libm.cos.argtypes = ctypes.c_double, [ctypes.c_double]
    rows["one ctypes call of libm cos"] = per_call_ns(lambda: lambda: libm.cos(X0), calls, repeats)
    from chainrule.cli.nested_function import nested

    try:
        import jax

        jax.config.update("jax_enable_x64", True)
        rows["jax.jit(jax.grad(f))(4.2)"] = per_call_ns(
            lambda: _bound(jax.jit(jax.grad(nested(DEPTH, jax.numpy.sin, jax.numpy.tan, jax.numpy.cos)))),
            calls // 4,
            repeats,
        )
    except ImportError:
        pass
    try:
        import torch

        torch.set_num_threads(1)
        f = nested(DEPTH, torch.sin, torch.tan, torch.cos)

        def torch_grad():
            x = torch.tensor(X0, dtype=torch.float64, requires_grad=True)
            f(x).backward()
            return x.grad

        rows["torch eager backward (0-d tensor)"] = per_call_ns(lambda: torch_grad, calls // 40, repeats)
    except ImportError:
        pass
    return rows


def _hand_derivative(x: float) -> float:
    derivative = 1.0
    for _ in range(DEPTH):
        s, c = math.sin(x), math.cos(x)
        t = math.tan(s)
        derivative *= c * (1 + t * t) * -math.sin(t)
        x = math.cos(t)
    return derivative


def in_subprocess(checkout: Path, repeats: int, calls: int) -> dict[str, list[float]]:
    environment = dict(os.environ, PYTHONPATH=str(checkout))
    command = [sys.executable, __file__, "--worker", "--repeats", str(repeats), "--calls", str(calls)]
    done = subprocess.run(command, env=environment, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, default=None, help="the baseline checkout")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(measure_checkout(args.repeats, args.calls)))
        return
    after: dict[str, list[float]] = {}
    before: dict[str, list[float]] = {}
    for _ in range(args.rounds):  # alternating, so both see the same machine
        for checkout, rows in ((ROOT, after), (args.before, before)):
            if checkout is not None:
                for label, figures in in_subprocess(checkout, args.repeats, args.calls).items():
                    rows.setdefault(label, []).extend(figures)
    sys.path.insert(0, str(ROOT))
    others = peers(args.repeats * args.rounds, args.calls)
    print(f"cr.grad(nested{DEPTH})({X0}): CPU ns per call, min / median of {args.rounds * args.repeats} repeats\n")
    print(f"| {'what':<36} | {'before min':>10} | {'before med':>10} | {'after min':>9} | {'after med':>9} |")
    print(f"|{'-' * 38}|{'-' * 12}|{'-' * 12}|{'-' * 11}|{'-' * 11}|")
    for label in after | before:
        cells = []
        for rows in (before, after):
            figures = rows.get(label)
            cells += [f"{min(figures):.0f}", f"{median(figures):.0f}"] if figures else ["", ""]
        print(f"| {label:<36} | {cells[0]:>10} | {cells[1]:>10} | {cells[2]:>9} | {cells[3]:>9} |")
    for label, figures in others.items():
        print(f"| {label:<36} | {'':>10} | {'':>10} | {min(figures):>9.0f} | {median(figures):>9.0f} |")


if __name__ == "__main__":
    main()
