"""The ways of computing seed 001's nested derivative that ``chainrule bench nested`` compares.

Each method runs in a worker process of its own (``run_method`` starts ``python -m
chainrule.cli.bench_methods KEY DEPTH POINTS REPEATS BUDGET``, which prints one JSON line), so a
RecursionError, a crash or a time-out is a row of the table, not the end of the benchmark.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from chainrule.cli.nested_function import X0, nested, nested_numpy

# ---- timing --------------------------------------------------------------------------------


def _timed(fn: Callable):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def per_call(fn: Callable, budget: float = 0.3, batches: int = 5) -> float:
    """Median seconds per call of ``fn`` (after one warm-up call), looping fast calls in batches so
    the clock can see them; a call slower than ``budget`` is timed once more and that time is it."""
    first, _ = _timed(fn)
    number = max(1, int(budget / batches / max(first, 1e-7)))
    times, spent = [], 0.0
    for _ in range(batches):
        elapsed, _ = _timed(lambda: [fn() for _ in range(number)])
        times.append(elapsed / number)
        spent += elapsed
        if spent > budget:
            break
    return statistics.median(times)


def repeated(prepare: Callable, repeats: int, budget: float):
    """Run ``prepare() -> (seconds, first_seconds, state)`` up to ``repeats`` times within ``budget``;
    medians of the two times and the last state."""
    prepares, firsts, state, spent = [], [], None, 0.0
    for _ in range(repeats):
        # The last run's result is let go, and its garbage collected, before the next run is timed:
        # each run is timed as a user's first, not alongside a copy the benchmark keeps.
        state = None
        gc.collect()
        seconds, first, state = prepare()
        prepares.append(seconds)
        firsts.append(first)
        spent += first
        if spent > budget:
            break
    return statistics.median(prepares), statistics.median(firsts), state


def points_array(count: int):
    import numpy as np

    return np.linspace(0.0, 2 * np.pi, count)


# ---- the methods (each runs inside a worker process) ---------------------------------------


class Failure(Exception):
    """A method failed in a known way; the message goes into its row."""


@contextlib.contextmanager
def failing_as(stage: str):
    """Say in which stage a RecursionError happened (SymPy's happen in different ones by depth)."""
    try:
        yield
    except RecursionError:
        raise Failure(f"RecursionError {stage}") from None


def _sympy_method(variant: str):
    def measure(depth, points, repeats, budget):
        import sympy
        from sympy.core.cache import clear_cache

        x = sympy.Symbol("x", real=True, positive=True)  # as in the seed

        def prepare():
            clear_cache()  # SymPy caches results: each repeat starts cold
            start = time.perf_counter()
            with failing_as("building the expression"):
                f = nested(depth, sympy.sin, sympy.tan, sympy.cos)(x)
            with failing_as("in diff"):
                derivative = sympy.diff(f, x)
            if variant == "subs":
                evaluate = lambda at: derivative.subs(x, at)
            else:
                with failing_as("in lambdify" + (" (cse)" if variant == "cse" else "")):
                    evaluate = sympy.lambdify(x, derivative, "numpy", cse=(variant == "cse"))
            prepared = time.perf_counter() - start
            with failing_as("evaluating"):
                value = float(evaluate(X0))
            return prepared, time.perf_counter() - start, (derivative, evaluate, value)

        prepare_s, first_s, (derivative, evaluate, value) = repeated(prepare, repeats, budget)
        if variant == "subs":
            # SymPy caches subs: a repeated point is a dict lookup, so each call gets a new point
            fresh = iter(X0 + 1e-9 * k for k in range(1, 10**9))
            scalar = per_call(lambda: float(evaluate(next(fresh))), budget=0.5)
        else:
            scalar = per_call(lambda: evaluate(X0), budget=0.5)
        result = {"prepare": prepare_s, "first": first_s, "value": value, "scalar": scalar}
        xs = points_array(points)
        if variant == "subs":
            sample = xs[: min(points, 20)]
            elapsed, _ = _timed(lambda: [float(evaluate(float(p))) for p in sample])
            result["points"], result["points_estimated"] = elapsed * points / len(sample), True
        else:
            result["points"] = per_call(lambda: evaluate(xs), budget=0.5)
        if variant == "cse":
            replacements, reduced = sympy.cse(derivative)
            ops = sum(sympy.count_ops(rhs) for _, rhs in replacements) + sympy.count_ops(reduced)
            result["size"] = f"cse {ops} ops"
        else:
            result["size"] = f"{sympy.count_ops(derivative)} ops"
        return result

    return measure


def _chainrule_method(backend: str):
    def measure(depth, points, repeats, budget):
        import tempfile

        import numpy as np

        import chainrule as cr

        f = nested_numpy(depth)
        x0 = np.float64(X0)

        def prepare():
            # a cache of compiled kernels, from an earlier run or repeat, would hide the compile time
            os.environ["CHAINRULE_CACHE_DIR"] = tempfile.mkdtemp(prefix="chainrule-bench-")
            # a new function object: kernels are shared per function, and this repeat must compile
            fresh = functools.wraps(f)(lambda x: f(x))
            start = time.perf_counter()
            derivative = cr.grad(fresh, backend=backend)
            derivative.source(x0)  # trace, differentiate, optimize, compile
            prepared = time.perf_counter() - start
            value = float(derivative(x0))
            return prepared, time.perf_counter() - start, (derivative, value)

        prepare_s, first_s, (derivative, value) = repeated(prepare, repeats, budget)
        result = {
            "prepare": prepare_s,
            "first": first_s,
            "value": value,
            "scalar": per_call(lambda: derivative(x0)),
            "size": f"{len(derivative.graph(x0))} nodes",
        }
        over_points = cr.grad(lambda x: np.sum(f(x)), backend=backend)  # d/dx_i sum_j f(x_j) = f'(x_i)
        xs = points_array(points)
        result["points_prepare"], source = _timed(lambda: over_points.source(xs))
        result["points"] = per_call(lambda: over_points(xs))
        if backend == "llvm":  # LLVM's part of the compile time alone (no cache), median of 3
            from chainrule.backends.llvm.engine import compile_ir

            optimization = over_points._specialize((xs,))[0].kernel.native.optimization  # as the kernel was
            walls, cpus = [], []
            for _ in range(3):
                cpu = time.process_time()
                walls.append(
                    _timed(lambda: compile_ir(source, name="nested", use_cache=False, optimization=optimization))[0]
                )
                cpus.append(time.process_time() - cpu)  # what a shared machine's load does not inflate
            result["points_llvm"], result["points_llvm_cpu"] = statistics.median(walls), statistics.median(cpus)
        return result

    return measure


def _measure_symengine(depth, points, repeats, budget):
    import symengine

    x = symengine.Symbol("x")

    def prepare():
        start = time.perf_counter()
        f = nested(depth, symengine.sin, symengine.tan, symengine.cos)(x)
        evaluate = symengine.Lambdify([x], [symengine.diff(f, x)], cse=True)
        prepared = time.perf_counter() - start
        value = float(evaluate(X0)[0])
        return prepared, time.perf_counter() - start, (evaluate, value)

    prepare_s, first_s, (evaluate, value) = repeated(prepare, repeats, budget)
    xs = points_array(points)
    return {
        "prepare": prepare_s,
        "first": first_s,
        "value": value,
        "size": "",
        "scalar": per_call(lambda: evaluate(X0)),
        "points": per_call(lambda: evaluate(xs)),
    }


def _measure_casadi(depth, points, repeats, budget):
    import casadi

    def prepare():
        start = time.perf_counter()
        x = casadi.SX.sym("x")
        f = nested(depth, casadi.sin, casadi.tan, casadi.cos)(x)
        derivative = casadi.Function("df", [x], [casadi.gradient(f, x)])
        prepared = time.perf_counter() - start
        value = float(derivative(X0))
        return prepared, time.perf_counter() - start, (derivative, value)

    prepare_s, first_s, (derivative, value) = repeated(prepare, repeats, budget)
    xs = points_array(points).reshape(1, -1)
    over_points = derivative.map(points)
    return {
        "prepare": prepare_s,
        "first": first_s,
        "value": value,
        "scalar": per_call(lambda: derivative(X0)),
        "points": per_call(lambda: over_points(xs)),
        "size": f"{derivative.n_instructions()} instr",
    }


def _measure_jax(depth, points, repeats, budget):
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    f = nested(depth, jnp.sin, jnp.tan, jnp.cos)
    x0 = jnp.float64(X0)

    def prepare():
        start = time.perf_counter()
        derivative = jax.jit(jax.grad(f)).lower(x0).compile()
        prepared = time.perf_counter() - start
        value = float(derivative(x0))
        return prepared, time.perf_counter() - start, (derivative, value)

    prepare_s, first_s, (derivative, value) = repeated(prepare, repeats, budget)
    xs = jnp.asarray(points_array(points))
    over_points = jax.jit(jax.vmap(jax.grad(f))).lower(xs).compile()
    return {
        "prepare": prepare_s,
        "first": first_s,
        "value": value,
        "scalar": per_call(lambda: derivative(x0).block_until_ready()),
        "points": per_call(lambda: over_points(xs).block_until_ready()),
        "size": f"{len(jax.make_jaxpr(jax.grad(f))(x0).eqns)} eqns",
    }


def _measure_torch(depth, points, repeats, budget):
    import torch

    # One thread, like the NumPy, SymEngine and CasADi rows: with two on a two-core machine its
    # times vary 10-50x from call to call.
    torch.set_num_threads(1)
    f = nested(depth, torch.sin, torch.tan, torch.cos)

    def derivative_at(values):
        x = torch.tensor(values, dtype=torch.float64, requires_grad=True)
        f(x).sum().backward()
        return x.grad

    def prepare():  # eager: nothing to prepare, every evaluation records and replays the tape
        start = time.perf_counter()
        value = float(derivative_at(X0))
        return 0.0, time.perf_counter() - start, value

    prepare_s, first_s, value = repeated(prepare, repeats, budget)
    xs = points_array(points)
    return {
        "prepare": prepare_s,
        "first": first_s,
        "value": value,
        "size": "eager",
        "scalar": per_call(lambda: derivative_at(X0)),
        "points": per_call(lambda: derivative_at(xs)),
    }


@dataclass(frozen=True)
class Method:
    key: str
    label: str
    measure: Callable
    module: str | None = None  # a peer: run only when this imports
    sympy: bool = False


METHODS = [
    Method("sympy-subs", "SymPy diff+subs", _sympy_method("subs"), sympy=True),
    Method("sympy-lambdify", "SymPy diff+lambdify", _sympy_method("lambdify"), sympy=True),
    Method("sympy-cse", "SymPy diff+cse+lambdify", _sympy_method("cse"), sympy=True),
    Method("chainrule", "chainrule (numpy)", _chainrule_method("numpy")),
    Method("chainrule-llvm", "chainrule (llvm)", _chainrule_method("llvm")),
    Method("symengine", "SymEngine", _measure_symengine, module="symengine"),
    Method("casadi", "CasADi (SX)", _measure_casadi, module="casadi"),
    Method("jax", "JAX (jit)", _measure_jax, module="jax"),
    Method("torch", "PyTorch (eager)", _measure_torch, module="torch"),
]
_BY_KEY = {m.key: m for m in METHODS}


def _worker(argv: list[str]) -> None:
    """Entry of a worker process: measure one method, print one JSON line."""
    key, depth, points, repeats, budget = argv[0], int(argv[1]), int(argv[2]), int(argv[3]), float(argv[4])
    try:
        result = _BY_KEY[key].measure(depth, points, repeats, budget)
    except Failure as failure:
        result = {"error": str(failure)}
    except RecursionError:
        result = {"error": "RecursionError"}
    except MemoryError:
        result = {"error": "MemoryError"}
    except Exception as error:  # a peer failing is a result, not a crash of the benchmark
        result = {"error": f"{type(error).__name__}: {str(error).splitlines()[0][:60] if str(error) else ''}"}
    print(json.dumps(result))


def run_method(key: str, depth: int, points: int, repeats: int, timeout: float, budget: float) -> dict:
    """Measure one method in a fresh interpreter, under ``timeout`` seconds."""
    command = [
        sys.executable,
        "-m",
        "chainrule.cli.bench_methods",
        key,
        str(depth),
        str(points),
        str(repeats),
        str(budget),
    ]
    environment = dict(os.environ, PYTHONWARNINGS="ignore", TF_CPP_MIN_LOG_LEVEL="3")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the checkout
    environment["PYTHONPATH"] = root + os.pathsep + environment.get("PYTHONPATH", "")
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=environment)
    except subprocess.TimeoutExpired:
        return {"error": f"timeout (> {timeout:g} s)"}
    lines = done.stdout.strip().splitlines()
    if done.returncode == 0 and lines:
        try:
            return json.loads(lines[-1])
        except json.JSONDecodeError:
            pass
    if done.returncode < 0:
        name = signal.Signals(-done.returncode).name
        hint = {"SIGKILL": ": killed, out of memory?", "SIGSEGV": ": stack overflow?"}.get(name, "")
        return {"error": f"crashed ({name}{hint})"}
    last = (done.stderr.strip().splitlines() or ["no output"])[-1]
    return {"error": f"failed: {last[:70]}"}


def available(method: Method) -> bool:
    if method.module is None:
        return True
    import importlib.util

    return importlib.util.find_spec(method.module) is not None


if __name__ == "__main__":
    _worker(sys.argv[1:])
