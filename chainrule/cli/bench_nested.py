"""``chainrule bench nested``: seed 001's experiment, d/dx of cos(tan(sin(...))) nested D deep.

The seed differentiates f(x) = cos(tan(sin(cos(tan(sin(... x)))))), the
triple applied ``depth`` times with sin innermost, at x = 4.2, once with SymPy
(``diff`` then ``subs``: 0.00255077238173787 at depth 30) and once by backprop.
Here every way of getting that number runs in its own subprocess, under a time
limit, and one table compares them:

- prepare: from the Python definition to something that returns the derivative
  (build or trace the expression, differentiate, compile);
- 1st value: prepare plus the first scalar evaluation (the seed's measurement);
- scalar: one more evaluation at x = 4.2;
- N points: the derivative at N points in one call (the one-time specialization
  to arrays of N, e.g. chainrule's vector kernel or JAX's jit of vmap, is not
  timed; for SymPy's subs it is extrapolated from 20 points, marked ~);
- the value, its relative error against a 50-digit mpmath reference that
  carries value and derivative through each step, and the expression's size
  (SymPy's count_ops, the size after SymPy's CSE, chainrule's node count).

Times are medians over repeats. A failure (RecursionError, timeout, crash) is
reported in its row. SymEngine, CasADi, JAX and PyTorch run with ``--peers``
when importable.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Callable, Optional


X0 = 4.2
SEED_DEPTH, SEED_DERIVATIVE = 30, 0.00255077238173787  # seed 001's printed SymPy result
SWEEP_DEPTHS = (10, 30, 100, 300, 1000, 3000, 10000)
REFERENCE_DIGITS = 50


# ---- the function and its reference --------------------------------------------------------

def nested(depth: int, sin, tan, cos):
    """f(x) = cos(tan(sin(...))) ``depth`` times, with the given sin, tan and cos (seed 001's loop)."""
    def f(x):
        for _ in range(depth):
            x = cos(tan(sin(x)))
        return x
    f.__name__ = f"nested{depth}"
    return f


def nested_numpy(depth: int):
    import numpy as np

    return nested(depth, np.sin, np.tan, np.cos)


def reference(depth: int, x0: float = X0, digits: int = REFERENCE_DIGITS):
    """(f(x0), f'(x0)) as mpmath numbers: value and derivative carried through each step at ``digits``."""
    import mpmath

    with mpmath.workdps(digits):
        value, derivative = mpmath.mpf(x0), mpmath.mpf(1)
        for _ in range(depth):
            derivative *= mpmath.cos(value)           # sin'
            value = mpmath.sin(value)
            derivative *= mpmath.sec(value) ** 2      # tan'
            value = mpmath.tan(value)
            derivative *= -mpmath.sin(value)          # cos'
            value = mpmath.cos(value)
        return +value, +derivative


def relative_error(value: float, exact) -> Optional[float]:
    """|value - exact| / |exact| in mpmath, or None when exact is 0."""
    import mpmath

    with mpmath.workdps(REFERENCE_DIGITS):
        if exact == 0:
            return None
        return float(abs((mpmath.mpf(value) - exact) / exact))


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
                evaluate = lambda at: derivative.subs(x, at)  # noqa: E731
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
            fresh = iter(X0 + 1e-9 * k for k in range(1, 10 ** 9))
            scalar = per_call(lambda: float(evaluate(next(fresh))), budget=0.5)
        else:
            scalar = per_call(lambda: evaluate(X0), budget=0.5)
        result = {"prepare": prepare_s, "first": first_s, "value": value, "scalar": scalar}
        xs = points_array(points)
        if variant == "subs":
            sample = xs[:min(points, 20)]
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
            start = time.perf_counter()
            derivative = cr.grad(f, backend=backend)
            derivative.source(x0)  # trace, differentiate, optimize, compile
            prepared = time.perf_counter() - start
            value = float(derivative(x0))
            return prepared, time.perf_counter() - start, (derivative, value)

        prepare_s, first_s, (derivative, value) = repeated(prepare, repeats, budget)
        result = {"prepare": prepare_s, "first": first_s, "value": value,
                  "scalar": per_call(lambda: derivative(x0)),
                  "size": f"{len(derivative.graph(x0))} nodes"}
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
                walls.append(_timed(lambda: compile_ir(source, name="nested", use_cache=False,
                                                       optimization=optimization))[0])
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
    return {"prepare": prepare_s, "first": first_s, "value": value, "size": "",
            "scalar": per_call(lambda: evaluate(X0)), "points": per_call(lambda: evaluate(xs))}


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
    return {"prepare": prepare_s, "first": first_s, "value": value,
            "scalar": per_call(lambda: derivative(X0)), "points": per_call(lambda: over_points(xs)),
            "size": f"{derivative.n_instructions()} instr"}


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
    return {"prepare": prepare_s, "first": first_s, "value": value,
            "scalar": per_call(lambda: derivative(x0).block_until_ready()),
            "points": per_call(lambda: over_points(xs).block_until_ready()),
            "size": f"{len(jax.make_jaxpr(jax.grad(f))(x0).eqns)} eqns"}


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
    return {"prepare": prepare_s, "first": first_s, "value": value, "size": "eager",
            "scalar": per_call(lambda: derivative_at(X0)), "points": per_call(lambda: derivative_at(xs))}


@dataclass(frozen=True)
class Method:
    key: str
    label: str
    measure: Callable
    module: Optional[str] = None  # a peer: run only when this imports
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
    command = [sys.executable, "-m", "chainrule.cli.bench_nested", key, str(depth), str(points), str(repeats), str(budget)]
    environment = dict(os.environ, PYTHONWARNINGS="ignore", TF_CPP_MIN_LOG_LEVEL="3")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
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


# ---- reporting -----------------------------------------------------------------------------

def format_seconds(seconds: Optional[float]) -> str:
    if seconds is None:
        return ""
    if seconds == 0:
        return "0"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def format_error(value: Optional[float], exact) -> str:
    if value is None:
        return ""
    if float(exact) == 0.0:  # the exact derivative is below the smallest float64
        return "exact (0)" if value == 0.0 else f"{value:.1e} vs 0"
    error = relative_error(value, exact)
    return "0" if error == 0 else f"{error:.1e}"


COLUMNS = ("method", "prepare", "1st value", "scalar", "N points", "derivative", "rel. error", "size")


def table_rows(results: list[tuple[Method, dict]], exact) -> list[tuple]:
    rows = []
    for method, result in results:
        if "error" in result:
            rows.append((method.label, result["error"]))
            continue
        points = format_seconds(result.get("points"))
        if result.get("points_estimated"):
            points = "~" + points
        rows.append((method.label, format_seconds(result["prepare"]), format_seconds(result["first"]),
                     format_seconds(result["scalar"]), points, f"{result['value']:.15g}",
                     format_error(result["value"], exact), result.get("size", "")))
    return rows


def render_table(rows: list[tuple], columns=COLUMNS) -> str:
    """Fixed-width text; a failed row is (label, message) and its message runs across the columns."""
    full = [row for row in rows if len(row) == len(columns)]
    widths = [max(len(str(row[i])) for row in [columns] + full) for i in range(len(columns))]
    widths[0] = max([widths[0]] + [len(row[0]) for row in rows])
    left = {0, len(columns) - 1}

    def line(row):
        if len(row) == 2:
            return f"{row[0].ljust(widths[0])}  {row[1]}"
        return "  ".join(str(c).ljust(w) if i in left else str(c).rjust(w)
                         for i, (c, w) in enumerate(zip(row, widths))).rstrip()

    return "\n".join([line(columns), "  ".join("-" * w for w in widths)] + [line(row) for row in rows])


def selected_methods(peers: bool) -> list[Method]:
    return [m for m in METHODS if m.module is None or (peers and available(m))]


def bench(depth: int, points: int, peers: bool, repeats: int, timeout: float, budget: float,
          out=None) -> list[tuple[Method, dict]]:
    import numpy as np

    out = out or sys.stdout
    value, exact = reference(depth)
    print(f"d/dx of cos(tan(sin(...))) nested {depth} deep at x = {X0} (seed 001), N = {points:,} points", file=out)
    print(f"mpmath reference ({REFERENCE_DIGITS} digits, value and derivative carried step by step): "
          f"{_mp_string(exact)}", file=out)
    if depth == SEED_DEPTH:
        print(f"seed 001's SymPy value: {SEED_DERIVATIVE!r}", file=out)
    print(f"Python {sys.version.split()[0]}, NumPy {np.__version__}; medians of up to {repeats} runs; "
          f"each row in its own process, limited to {timeout:g} s", file=out)
    print(file=out)
    results = []
    for method in selected_methods(peers):
        results.append((method, run_method(method.key, depth, points, repeats, timeout, budget)))
    print(render_table(table_rows(results, exact)), file=out)
    _footnotes(results, exact, out)
    return results


def _mp_string(number) -> str:
    import mpmath

    return mpmath.nstr(number, 20)


def _footnotes(results, exact, out) -> None:
    notes = ["prepare: build or trace + differentiate + compile; 1st value: prepare + first evaluation.",
             "N points: one call over N points (its one-time specialization untimed; ~ = extrapolated)."]
    if float(exact) == 0.0:
        notes.append(f"the exact derivative {_mp_string(exact)} is below the smallest float64, so the "
                     "correctly rounded answer is 0.")
    by_key = {m.key: r for m, r in results}
    ours, subs = by_key.get("chainrule", {}), by_key.get("sympy-subs", {})
    if "first" in ours and "first" in subs:
        notes.append(f"1st value: chainrule is {subs['first'] / ours['first']:.0f}x faster than SymPy diff+subs.")
    llvm, jax = by_key.get("chainrule-llvm", {}), by_key.get("jax", {})
    if "points" in llvm:
        peers = (("chainrule (numpy)", ours), ("JAX (jit of vmap of grad)", jax))
        versus = [f"{peer['points'] / llvm['points']:.1f}x faster than {name}" for name, peer in peers if "points" in peer]
        notes.append(f"N points: chainrule (llvm) is {' and '.join(versus) or 'alone'}; compiling its N-point "
                     f"kernel took {format_seconds(llvm['points_prepare'])} (trace, passes, LLVM, empty cache), "
                     f"LLVM alone {format_seconds(llvm['points_llvm'])} ({format_seconds(llvm['points_llvm_cpu'])} "
                     "of CPU time).")
    casadi = by_key.get("casadi", {})
    if "prepare" in ours and "prepare" in casadi:
        notes.append(f"prepare: chainrule takes {ours['prepare'] / casadi['prepare']:.2f}x CasADi's time.")
    for note in notes:
        print("  " + note, file=out)


def sweep(depths, peers: bool, repeats: int, timeout: float, budget: float, out=None) -> dict:
    """Prepare time of every method at each depth; a method that failed is not run deeper."""
    out = out or sys.stdout
    methods = selected_methods(peers)
    print("prepare time (build/trace + differentiate + compile) against depth; medians", file=out)
    header = ("depth",) + tuple(m.label for m in methods) + ("chainrule per level",)
    rows, failed, table = [], set(), {}
    for depth in depths:
        row = [str(depth)]
        for method in methods:
            if method.key in failed:
                row.append("-")
                continue
            result = run_method(method.key, depth, 10, repeats, timeout, budget)
            table[(method.key, depth)] = result
            if "error" in result:
                failed.add(method.key)
                row.append(result["error"].split(":")[0])
            else:
                row.append(format_seconds(result["prepare"]))
        ours = table.get(("chainrule", depth), {})
        row.append(format_seconds(ours["prepare"] / depth) if "prepare" in ours else "")
        rows.append(tuple(row))
        print(f"  depth {depth} done", file=sys.stderr)
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    print("  ".join(h.rjust(w) for h, w in zip(header, widths)), file=out)
    for r in rows:
        print("  ".join(c.rjust(w) for c, w in zip(r, widths)), file=out)
    return table


# ---- command line --------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--depth", type=int, default=SEED_DEPTH, help="nesting depth (default: the seed's 30)")
    parser.add_argument("--points", type=int, default=10_000, help="points of the vector evaluation")
    parser.add_argument("--peers", action="store_true", help="also run SymEngine, CasADi, JAX, PyTorch if installed")
    parser.add_argument("--sweep", action="store_true", help=f"prepare time at depths {', '.join(map(str, SWEEP_DEPTHS))}")
    parser.add_argument("--repeats", type=int, default=3, help="runs per measurement; the median is shown")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds allowed to each row")
    parser.add_argument("--budget", type=float, default=10.0,
                        help="seconds of repeats per row before the median is taken from fewer runs")


def run(args) -> int:
    if args.depth < 1 or args.points < 1:
        print("chainrule: --depth and --points must be positive", file=sys.stderr)
        return 2
    if args.sweep:
        sweep(SWEEP_DEPTHS, args.peers, args.repeats, args.timeout, args.budget)
    else:
        bench(args.depth, args.points, args.peers, args.repeats, args.timeout, args.budget)
    return 0


if __name__ == "__main__":
    _worker(sys.argv[1:])
