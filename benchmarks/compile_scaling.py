"""Compile time as programs grow, per backend, against a baseline checkout in the same run.

    python3 benchmarks/compile_time.py --scaling [--runs 3] [--against /path/to/other/checkout]
    python3 benchmarks/compile_time.py --stages [--runs 3] [--against /path/to/other/checkout]

``--stages``: the nested gradient's LLVM compile at depth 100, 1,000 and 10,000, its CPU seconds
(``time.process_time``) split into the compiler's passes, LLVM's parse, optimize and emit, and the
rest (trace, lowering to IR text, linking, the call), one fresh process and cache per sample.

Cases: the gradient of examples/pendulum_rk4.py's final angle with respect to the initial angle,
velocity and the damping, its RK4 step unrolled by a plain Python loop over 10, 100 and 1,000
steps (42 traced nodes a step); and the derivative of seed 001's cos(tan(sin(...))) nested 1,000
and 10,000 deep, summed over 1,000 points; and issue 24's Gaussian-process marginal likelihood
with a hand-written Cholesky factorization unrolled by Python loops at n = 10, 20 and 30 (about
n**3 traced nodes: "linear?" is not expected to be 1 there), differentiated with respect to its
three log hyper-parameters. Each sample is the first call of a fresh ``cr.grad`` in
a fresh process (trace, differentiate, optimize, generate and compile code, one run; chainrule's
imports and llvmlite's start-up are warmed first, and the on-disk kernel cache points at an empty
directory), so the checkouts do not share caches or heaps. Cells are medians over ``--runs``
samples, the checkouts alternating; a sample over TIMEOUT_SECONDS shows as ``> 240 s``. "per
unit" is the time per RK4 step or nesting level; "linear?" divides it by the per-unit time of
the case's smallest size (1.0: linear).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_SECONDS = 240
RK4_STEPS = (10, 100, 1_000)
NESTED_DEPTHS = (1_000, 10_000)
GP_SIZES = (10, 20, 30)
BACKENDS = ("numpy", "llvm")


def rk4_program(steps: int):
    sys.path.insert(0, str(ROOT / "examples"))
    from pendulum_rk4 import rk4_step

    def final_angle(theta0, omega0, damping):
        state = (theta0, omega0)
        for _ in range(steps):
            state = rk4_step(state, damping)
        return state[0]

    return final_angle, (1.0, 0.0, 0.5), (0, 1, 2)


def nested_program(depth: int):
    def nested_sum(x):
        for _ in range(depth):
            x = np.cos(np.tan(np.sin(x)))
        return np.sum(x)

    return nested_sum, (np.linspace(4.0, 4.4, 1_000),), 0


def gp_program(n: int):
    """Issue 24's GP marginal likelihood: a hand-written Cholesky unrolled by Python loops at size n
    (the program lives in tests/corpus/gp_hand_cholesky.py, whose test checks its gradient)."""
    path = ROOT / "tests" / "corpus" / "gp_hand_cholesky.py"
    spec = importlib.util.spec_from_file_location("chainrule_corpus_gp_hand_cholesky", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.negative_log_marginal(n), (np.array([0.1, -0.2, -2.0]),), 0


PROGRAMS = {
    "rk4": (rk4_program, RK4_STEPS),
    "nested": (nested_program, NESTED_DEPTHS),
    "gp": (gp_program, GP_SIZES),
}


def first_call(case: str, size: int, backend: str) -> dict:
    """One fresh compile and first call, in this process (the worker's side)."""
    import chainrule as cr

    os.environ["CHAINRULE_CACHE_DIR"] = tempfile.mkdtemp(prefix="chainrule-compile-scaling-")
    cr.grad(lambda x: np.sum(np.sin(x) * x), backend=backend)(np.ones(3))  # imports, llvmlite start-up
    fn, args, argnums = PROGRAMS[case][0](size)
    gradient = cr.grad(fn, argnums, backend=backend)
    start, start_cpu = time.perf_counter(), time.process_time()
    gradient(*args)
    seconds, cpu = time.perf_counter() - start, time.process_time() - start_cpu
    return {"seconds": seconds, "cpu": cpu, "chainrule": str(Path(cr.__file__).parents[1])}


def sample(checkout: Path, case: str, size: int, backend: str) -> float | None:
    """Seconds of one fresh first call with ``checkout``'s chainrule, or None past the timeout."""
    environment = dict(os.environ, PYTHONPATH=str(checkout))
    command = [sys.executable, __file__, "--worker", case, str(size), backend]
    try:
        done = subprocess.run(
            command, env=environment, capture_output=True, text=True, timeout=TIMEOUT_SECONDS, check=True
        )
    except subprocess.TimeoutExpired:
        return None
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert Path(result["chainrule"]) == checkout, f"{result['chainrule']} ran instead of {checkout}"
    return result["seconds"]


def _cell(seconds: float | None) -> str:
    if seconds is None:
        return f"> {TIMEOUT_SECONDS} s"
    return f"{seconds * 1e3:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def _median(samples: list[float | None]) -> float | None:
    return None if any(s is None for s in samples) else median(s for s in samples if s is not None)


def _alternating_samples(checkouts: dict[str, Path], case: str, size: int, backend: str, runs: int) -> dict:
    """The median seconds per checkout, the checkouts taking turns; one sample of a case over 60 s."""
    samples: dict[str, list[float | None]] = {name: [] for name in checkouts}
    for repeat in range(runs):
        if repeat > 0 and any(s[0] is None or s[0] > 60 for s in samples.values()):
            break
        for name, checkout in checkouts.items():
            samples[name].append(sample(checkout, case, size, backend))
    return {name: _median(taken) for name, taken in samples.items()}


def run_scaling(runs: int, against: str | None) -> None:
    checkouts = {"this": ROOT} | ({"baseline": Path(against).resolve()} if against else {})
    print(f"checkouts: {', '.join(f'{name} = {path}' for name, path in checkouts.items())}")
    print(f"first call of a fresh cr.grad in a fresh process; medians of {runs} (1 for cases over 60 s)")
    header = f"{'case':<8} {'size':>6} {'backend':<7}" + "".join(
        f" {name:>10} {name + ' per unit':>18} {'linear?':>7}" for name in checkouts
    )
    header += "  this/baseline" if against else ""
    print(header)
    print("-" * len(header))
    for case, (_, sizes) in PROGRAMS.items():
        for backend in BACKENDS:
            smallest: dict[str, float | None] = {}
            for size in sizes:
                results = _alternating_samples(checkouts, case, size, backend, runs)
                cells = f"{case:<8} {size:>6,} {backend:<7}"
                for name, seconds in results.items():
                    per_unit = None if seconds is None else seconds / size
                    smallest.setdefault(name, per_unit)
                    reference = smallest[name]
                    linear = "-" if per_unit is None or reference is None else f"{per_unit / reference:.2f}"
                    per_unit_cell = "-" if per_unit is None else f"{per_unit * 1e3:.2f} ms"
                    cells += f" {_cell(seconds):>10} {per_unit_cell:>18} {linear:>7}"
                if against:
                    this, baseline = results["this"], results["baseline"]
                    ratio = "-" if this is None or baseline is None else f"{this / baseline:.2f}"
                    cells += f"  {ratio:>13}"
                print(cells, flush=True)


STAGE_DEPTHS = (100, 1_000, 10_000)
STAGES = ("passes", "other", "parse", "optimize", "emit", "total")


def staged_first_call(depth: int) -> dict:
    """CPU seconds of one fresh LLVM compile and first call of the nested gradient at ``depth``,
    by stage (the worker's side): the compiler's passes, LLVM's parse (and verify), optimize and
    emit (object code), and the other work (trace, lowering to IR text, linking, the call)."""
    import chainrule as cr
    from chainrule.backends.llvm import engine
    from chainrule.compiler import pipeline

    os.environ["CHAINRULE_CACHE_DIR"] = tempfile.mkdtemp(prefix="chainrule-compile-stages-")
    cr.grad(lambda x: np.sum(np.sin(x) * x), backend="llvm")(np.ones(3))  # imports, llvmlite start-up
    spent = dict.fromkeys(("passes", "parse", "optimize", "build"), 0.0)
    for owner, attribute, stage in (
        (pipeline, "run", "passes"),
        (engine, "_parse", "parse"),
        (engine, "_optimize", "optimize"),
        (engine, "_build", "build"),
    ):
        setattr(owner, attribute, _timed(getattr(owner, attribute), spent, stage))
    fn, args, argnums = nested_program(depth)
    gradient = cr.grad(fn, argnums, backend="llvm")
    start = time.process_time()
    gradient(*args)
    total = time.process_time() - start
    emit = spent["build"] - spent["parse"] - spent["optimize"]
    other = total - spent["passes"] - spent["build"]
    stages = {"passes": spent["passes"], "other": other, "parse": spent["parse"], "optimize": spent["optimize"]}
    return stages | {"emit": emit, "total": total}


def _timed(function, spent: dict, stage: str):
    def timed(*args, **kwargs):
        start = time.process_time()
        try:
            return function(*args, **kwargs)
        finally:
            spent[stage] += time.process_time() - start

    return timed


def run_stages(runs: int, against: str | None) -> None:
    """The nested gradient's LLVM compile at depths 100 to 10,000, CPU seconds by stage, medians of
    ``runs`` fresh processes per checkout (one at depth 10,000), the checkouts alternating."""
    checkouts = {"this": ROOT} | ({"baseline": Path(against).resolve()} if against else {})
    print(f"checkouts: {', '.join(f'{name} = {path}' for name, path in checkouts.items())}")
    print(f"nested gradient, LLVM, first call: CPU seconds by stage, medians of {runs} (1 at depth 10,000)")
    header = f"{'depth':>6} {'checkout':<8}" + "".join(f" {stage:>8}" for stage in STAGES)
    print(header + "\n" + "-" * len(header))
    for depth in STAGE_DEPTHS:
        samples: dict[str, list[dict]] = {name: [] for name in checkouts}
        for _ in range(1 if depth >= 10_000 else runs):
            for name, checkout in checkouts.items():
                environment = dict(os.environ, PYTHONPATH=str(checkout))
                command = [sys.executable, __file__, "--stages-worker", str(depth)]
                done = subprocess.run(command, env=environment, capture_output=True, text=True, check=True)
                samples[name].append(json.loads(done.stdout.strip().splitlines()[-1]))
        for name, taken in samples.items():
            cells = "".join(f" {median(s[stage] for s in taken):8.2f}" for stage in STAGES)
            print(f"{depth:>6,} {name:<8}{cells}", flush=True)


if __name__ == "__main__" and sys.argv[1:2] == ["--worker"]:
    print(json.dumps(first_call(sys.argv[2], int(sys.argv[3]), sys.argv[4])))
if __name__ == "__main__" and sys.argv[1:2] == ["--stages-worker"]:
    print(json.dumps(staged_first_call(int(sys.argv[2]))))
