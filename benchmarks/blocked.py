"""Point-blocked chains: the nested gradient before and after, PyTorch eager and the math floor, in one run.

    python3 benchmarks/blocked.py                              # this checkout
    python3 benchmarks/blocked.py --before /path/to/checkout   # and a baseline

The gradient of ``sum(nested(x))`` (seed 001's nested function, ``chainrule bench nested``) on the
LLVM backend at depth 1000 x 10^4 points and depth 30 x 10^6 points. Each checkout runs in its own
subprocess (its checkout first on ``sys.path``), one after the other. Per case one compiled function
is called (the figure is the call, not the compile): "1 thread" is the median CPU time per call
(``time.process_time``, immune to other processes on the machine), "2 threads" the median wall
time per call and its CPU time. The same subprocess as "after" also times, when installed:

- PyTorch eager (``torch.sin``/``tan``/``cos`` then ``backward()``), 1 thread CPU and 2 threads wall;
- the forward floor (issue 19's "libmvec floor"): the LLVM forward pass alone (``nested(x)``, no
  gradient) over the same points, a loop doing nothing but three vector calls (sin, tan, cos) per
  level;
- the gradient's math floor: an LLVM forward pass making the five vector calls the gradient needs
  per level (sin x, cos x, tan s, cos t, sin t) and one multiply-add, no derivative and no stores
  of intermediates. Pairing sin and cos of one value cannot bring the gradient down to three calls:
  libmvec's vector sincos costs more than a vector sin and a vector cos together (it returns through
  a vector of pointers; ``sincos_structure.c`` part 2 times both, AVX2 and AVX-512).

The settings alternate round by round so a drift in the machine's load hits all alike.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from statistics import median

ROOT = Path(__file__).resolve().parents[1]
CASES = ((1000, 10_000), (30, 1_000_000))


def timed(call, rounds: int) -> tuple[float, float]:
    """Median wall and CPU milliseconds per call over ``rounds`` calls."""
    walls, cpus = [], []
    for _ in range(rounds):
        wall, cpu = time.perf_counter(), time.process_time()
        call()
        cpus.append(time.process_time() - cpu)
        walls.append(time.perf_counter() - wall)
    return median(walls) * 1e3, median(cpus) * 1e3


def five_math_calls(depth: int):
    """The nested function's forward pass plus the derivative factors' math (cos x, sin t) per level,
    folded into one sum so none is dead: the vector math calls of the gradient and nothing else."""
    import numpy as np

    def forward_and_factors(x):
        factors = np.zeros_like(x)
        for _ in range(depth):
            s = np.sin(x)
            t = np.tan(s)
            factors = factors + np.cos(x) * np.sin(t)
            x = np.cos(t)
        return x + factors

    return forward_and_factors


def chainrule_rows(depth: int, points: int, rounds: int, floor: bool) -> dict[str, float]:
    import numpy as np

    import chainrule as cr
    from chainrule.backends.llvm import kernel
    from chainrule.cli.nested_function import nested_numpy

    nested = nested_numpy(depth)
    gradient = cr.grad(lambda x: np.sum(nested(x)), backend="llvm")
    x = np.linspace(0.1, 3.0, points)
    gradient(x)  # compiles
    rows: dict[str, float] = {}
    samples: dict[int, list[tuple[float, float]]] = {1: [], 2: []}
    for round_number in range(rounds):
        for count in (1, 2) if round_number % 2 == 0 else (2, 1):
            kernel.set_exact_threads(count)
            kernel.set_num_threads(count)
            samples[count].append(timed(lambda: gradient(x), 1))
    rows["1 thread CPU"] = median(cpu for _, cpu in samples[1])
    rows["2 threads wall"] = median(wall for wall, _ in samples[2])
    rows["2 threads CPU"] = median(cpu for _, cpu in samples[2])
    if floor:
        forward = cr.jit(nested, backend="llvm")
        forward(x)
        kernel.set_exact_threads(1)
        rows["floor: forward alone, 1 thread CPU"] = timed(lambda: forward(x), rounds)[1]
        five_calls = cr.jit(five_math_calls(depth), backend="llvm")
        five_calls(x)
        rows["floor: the gradient's 5 math calls per level, 1 thread CPU"] = timed(lambda: five_calls(x), rounds)[1]
    kernel.set_exact_threads(None)
    return rows


def torch_rows(depth: int, points: int, rounds: int) -> dict[str, float]:
    try:
        import torch
    except ImportError:
        return {}
    import numpy as np

    x0 = torch.tensor(np.linspace(0.1, 3.0, points))

    def gradient() -> None:
        x = x0.clone().requires_grad_(True)
        y = x
        for _ in range(depth):
            y = torch.cos(torch.tan(torch.sin(y)))
        y.sum().backward()

    rows = {}
    torch.set_num_threads(1)
    gradient()
    rows["torch eager 1 thread CPU"] = timed(gradient, rounds)[1]
    torch.set_num_threads(2)
    gradient()
    rows["torch eager 2 threads wall"] = timed(gradient, rounds)[0]
    return rows


def measure_checkout(rounds: int, peers: bool) -> dict[str, object]:
    results: dict[str, object] = {"load before": open("/proc/loadavg").read().split()[:4]}
    for depth, points in CASES:
        case = f"depth {depth}, {points:.0e} points"
        rows = chainrule_rows(depth, points, rounds, floor=peers)
        if peers:
            rows.update(torch_rows(depth, points, rounds))
        results[case] = rows
    results["load after"] = open("/proc/loadavg").read().split()[:4]
    return results


def in_subprocess(checkout: Path, rounds: int, peers: bool) -> dict[str, object]:
    environment = {k: v for k, v in os.environ.items() if k not in ("CHAINRULE_NUM_THREADS", "OMP_NUM_THREADS")}
    environment["PYTHONPATH"] = str(checkout)
    command = [sys.executable, __file__, "--worker", "--rounds", str(rounds)] + (["--peers"] if peers else [])
    done = subprocess.run(command, env=environment, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def table(results: dict[str, dict[str, object]]) -> str:
    lines = ["| case | figure | " + " | ".join(f"{name} ms" for name in results) + " |"]
    lines.append("|---|---|" + "---:|" * len(results))
    for depth, points in CASES:
        case = f"depth {depth}, {points:.0e} points"
        figures: list[str] = []
        for rows in results.values():
            figures += [f for f in rows[case] if f not in figures]  # type: ignore[union-attr]
        for figure in figures:
            cells = [rows[case].get(figure) for rows in results.values()]  # type: ignore[union-attr]
            text = " | ".join("" if c is None else f"{c:.1f}" for c in cells)
            lines.append(f"| {case} | {figure} | {text} |")
    for name, rows in results.items():
        lines.append(
            f"\n{name}: load (1, 5, 15 min, running/all) before {rows['load before']}, after {rows['load after']}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, default=None, help="the baseline checkout")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--peers", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(measure_checkout(args.rounds, args.peers)))
        return
    results = {"after": in_subprocess(ROOT, args.rounds, peers=True)}
    if args.before is not None:
        results["before"] = in_subprocess(args.before, args.rounds, peers=False)
    print(f"{os.cpu_count()} CPUs\n")
    print(table(results))


if __name__ == "__main__":
    main()
