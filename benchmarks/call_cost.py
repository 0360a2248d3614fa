"""What a call of a small compiled function costs, and where it goes (issue 16: slogdet at n = 8).

    python3 benchmarks/call_cost.py                                   # this checkout
    python3 benchmarks/call_cost.py --baseline /path/to/old/checkout  # and another, same run

Times, in ns of the process's CPU time per call (the minimum over 7 repeats of many calls; CPU
time, since the machine is shared), the calls of small functions of an 8×8 matrix: a plain
Python function, NumPy by hand, chainrule's NumPy backend, and its LLVM backend, whole and in
pieces: the kernel's generated ``fn`` alone (what ``Compiled.__call__`` adds is the rest), the
native entry called through ``ctypes`` (the general path's core), the array builtin
(``backends/llvm/array_entry.py``) when the kernel has one, and what the general path spends on
Python operations: finding the specialization (``call_key``), the lock, ``ascontiguousarray``,
``arr.ctypes.data`` and ``np.empty``. With ``--baseline`` the rows that exist in both are timed
for the other checkout in a subprocess and printed beside them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import timeit
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np

try:
    import chainrule as cr
except ImportError:  # run from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import chainrule as cr
from chainrule.frontends.trace import call_key

N = 8


def per_call_ns(statement: str, namespace: dict, number: int = 20_000, repeat: int = 7) -> float:
    timer = timeit.Timer(statement, globals=namespace, timer=time.process_time)
    return min(timer.repeat(repeat, number)) / number * 1e9


def _kernel_fn(compiled: cr.Compiled, a: np.ndarray):
    compiled(a)
    return next(iter(compiled._cache.values())).kernel.fn


def rows() -> dict[str, float]:
    m = np.random.default_rng(0).standard_normal((N, N))
    a = m @ m.T / N + np.eye(N)
    namespace: dict = {"a": a, "np": np, "identity": lambda a: a, "lock": threading.Lock()}
    functions = {
        "sum": lambda a: np.sum(a),
        "slogdet": lambda a: np.linalg.slogdet(a)[1],
    }
    results = {
        "python identity(a)": per_call_ns("identity(a)", namespace),
        "numpy np.sum(a)": per_call_ns("np.sum(a)", namespace),
        "numpy slogdet(a)[1]": per_call_ns("np.linalg.slogdet(a)[1]", namespace),
        "numpy inv(a).T": per_call_ns("np.linalg.inv(a).T", namespace),
    }
    for backend in ("numpy", "llvm"):
        for name, function in functions.items():
            for transform in (cr.jit, cr.grad):
                compiled = transform(function, backend=backend)
                kernel_fn = _kernel_fn(compiled, a)
                namespace.update(compiled=compiled, kernel_fn=kernel_fn)
                label = f"{backend} {transform.__name__} {name}"
                results[f"{label}: call"] = per_call_ns("compiled(a)", namespace)
                results[f"{label}: kernel.fn"] = per_call_ns("kernel_fn(a)", namespace)
                generated = getattr(kernel_fn, "__globals__", {})
                if backend == "llvm" and name == "sum" and transform is cr.jit:
                    # the table as the general path fills it (the builtin, if any, ran the calls so far)
                    lowered = next(iter(compiled._cache.values())).kernel.lowered
                    generated["table"][lowered.inputs[0].slot] = a.ctypes.data
                    namespace.update(entry=generated["entry"], address=generated["table_address"])
                    results["llvm entry via ctypes (jit sum)"] = per_call_ns("entry(address, 1)", namespace)
                    if "arrays" in generated:
                        namespace.update(arrays=generated["arrays"])
                        results["llvm array builtin (jit sum)"] = per_call_ns("arrays(a)", namespace)
    results |= {
        "  call_key((a,))": per_call_ns("call_key((a,))", {**namespace, "call_key": call_key}),
        "  with lock: pass": per_call_ns("with lock: pass", namespace),
        "  np.ascontiguousarray(a, float64)": per_call_ns("np.ascontiguousarray(a, np.float64)", namespace),
        "  a.ctypes.data": per_call_ns("a.ctypes.data", namespace),
        "  np.empty((8, 8))": per_call_ns("np.empty((8, 8), np.float64)", namespace),
    }
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline", help="a checkout to time too (a subprocess)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.worker:
        print(json.dumps(rows()))
        return
    before = None
    if options.baseline:
        command = [sys.executable, __file__, "--worker"]
        environment = {**os.environ, "PYTHONPATH": options.baseline}
        output = subprocess.run(command, env=environment, capture_output=True, text=True, check=True).stdout
        before = json.loads(output.strip().splitlines()[-1])
    now = rows()
    print(
        f"ns of CPU per call (min of 7 repeats), {N}x{N} float64; OPENBLAS_NUM_THREADS={os.environ['OPENBLAS_NUM_THREADS']}"
    )
    header = f"{'':<42}{'now':>10}" + (f"{'before':>10}{'now/before':>12}" if before else "")
    print(header + "\n" + "-" * len(header))
    for name, ns in now.items():
        line = f"{name:<42}{ns:10.0f}"
        if before is not None and name in before:
            line += f"{before[name]:10.0f}{ns / before[name]:12.2f}"
        print(line)


if __name__ == "__main__":
    main()
