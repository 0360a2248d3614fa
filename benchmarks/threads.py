"""The LLVM kernels' threads: 1 thread vs 2 threads vs the default, before and after, in one run.

    python3 benchmarks/threads.py                                  # this checkout
    python3 benchmarks/threads.py --before /path/to/checkout       # and a baseline
    python3 benchmarks/threads.py --before ... --load              # with one core held by a busy loop

The gradient of ``sum(nested(x))`` (seed 001's nested function, ``chainrule bench nested``) on
the LLVM backend at depth 30 (10^4 and 10^6 points) and depth 1000 (10^4 points; at 10^6 points
its stored intermediates would take ~15 GB). Each checkout runs in its own subprocess with its
checkout first on ``sys.path``; the two subprocesses run one after the other, so the machine's
load is printed with each. Per case, one compiled function (the depth-1000 compile takes
seconds, and the figure is the call, not the compile) is called in rounds, each round timing a
batch of calls per setting, the settings' order rotating from round to round; the figure is the
median over rounds of the time per call.

Settings: "1 thread" and "2 threads" force exactly that count on every parallel loop; "default"
is what a user gets (no setting: the CPU count as the maximum and the checkout's own rule, which
after this change includes the kernel's first timed calls). "--load" starts
``python -c "while True: pass"`` for the duration and kills it at the end.
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
CASES = ((30, 10_000, 40), (30, 1_000_000, 3), (1000, 10_000, 3))  # depth, points, calls per batch
SETTINGS = ("1 thread", "2 threads", "default")


def force(kernel, count: int | None, most: int) -> None:
    """Exactly ``count`` threads on every parallel loop (None: the default rule, up to ``most``)."""
    if hasattr(kernel, "set_exact_threads"):
        kernel.set_exact_threads(count)
        kernel.set_num_threads(most)
        return
    original = getattr(force, "original", None) or kernel.threads_for  # the baseline: patch its rule
    force.original = original  # type: ignore[attr-defined]
    kernel.threads_for = original if count is None else (lambda work, loops, most: count)
    kernel.set_num_threads(most if count is None else count)


def measure_checkout(rounds: int) -> dict[str, object]:
    """Every figure of the checkout first on sys.path, as JSON-able numbers."""
    import numpy as np

    import chainrule as cr
    from chainrule.backends.llvm import kernel
    from chainrule.cli.nested_function import nested_numpy

    most = kernel.get_num_threads()
    rows: dict[str, object] = {"most threads": most, "load before": open("/proc/loadavg").read().split()[:4]}
    for depth, points, calls in CASES:
        nested = nested_numpy(depth)
        gradient = cr.grad(lambda x, nested=nested: np.sum(nested(x)), backend="llvm")
        x = np.linspace(0.1, 3.0, points)
        gradient(x)  # compiles
        times: dict[str, list[float]] = {setting: [] for setting in SETTINGS}
        for round_number in range(rounds):
            shift = round_number % len(SETTINGS)
            for setting in SETTINGS[shift:] + SETTINGS[:shift]:
                force(kernel, {"1 thread": 1, "2 threads": 2}.get(setting), most)
                gradient(x)  # not timed: the setting's first call
                start = time.perf_counter()
                for _ in range(calls):
                    gradient(x)
                times[setting].append((time.perf_counter() - start) / calls * 1e3)
        force(kernel, None, most)
        for setting in SETTINGS:
            rows[f"depth {depth}, {points:.0e} points: {setting}"] = median(times[setting])
        compiled = next(iter(gradient._cache.values())).kernel
        rows[f"depth {depth}, {points:.0e} points: default threads"] = compiled.thread_count()
    rows["load after"] = open("/proc/loadavg").read().split()[:4]
    return rows


def in_subprocess(checkout: Path, rounds: int) -> dict[str, object]:
    environment = {k: v for k, v in os.environ.items() if k not in ("CHAINRULE_NUM_THREADS", "OMP_NUM_THREADS")}
    environment["PYTHONPATH"] = str(checkout)
    command = [sys.executable, __file__, "--worker", "--rounds", str(rounds)]
    done = subprocess.run(command, env=environment, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def table(results: dict[str, dict[str, object]]) -> str:
    names = list(results)
    lines = [f"| case | setting | {' | '.join(f'{n} ms' for n in names)} |", "|---|---|" + "---:|" * len(names)]
    for depth, points, _ in CASES:
        case = f"depth {depth}, {points:.0e} points"
        for setting in SETTINGS:
            cells = [f"{results[n][f'{case}: {setting}']:.2f}" for n in names]
            lines.append(f"| {case} | {setting} | {' | '.join(cells)} |")
        used = [str(results[n][f"{case}: default threads"]) for n in names]
        lines.append(f"| {case} | default's threads | {' | '.join(used)} |")
    for n in names:
        lines.append(
            f"\n{n}: load (1, 5, 15 min, running/all) before {results[n]['load before']}, after {results[n]['load after']}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, default=None, help="the baseline checkout")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--load", action="store_true", help="hold one core with a busy loop meanwhile")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(measure_checkout(args.rounds)))
        return
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if args.load else None
    try:
        results = {"after": in_subprocess(ROOT, args.rounds)}
        if args.before is not None:
            results["before"] = in_subprocess(args.before, args.rounds)
    finally:
        if busy is not None:
            busy.kill()
            busy.wait()
    print(f"{os.cpu_count()} CPUs; {'one core held by a busy loop' if args.load else 'no added load'}\n")
    print(table(results))


if __name__ == "__main__":
    main()
