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
import sys

from chainrule.cli.bench_methods import METHODS, Method, available, run_method
from chainrule.cli.nested_function import (
    REFERENCE_DIGITS,
    SEED_DEPTH,
    SEED_DERIVATIVE,
    SWEEP_DEPTHS,
    X0,
    reference,
    relative_error,
)

# ---- reporting -----------------------------------------------------------------------------


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds == 0:
        return "0"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def format_error(value: float | None, exact) -> str:
    if value is None:
        return ""
    if float(exact) == 0.0:  # the exact derivative is below the smallest float64
        return "exact (0)" if value == 0.0 else f"{value:.1e} vs 0"
    error = relative_error(value, exact)
    return "0" if error == 0 else f"{error:.1e}"


COLUMNS = ("method", "prepare", "1st value", "scalar", "N points", "derivative", "rel. error", "size")


def table_rows(results: list[tuple[Method, dict]], exact) -> list[tuple]:
    rows: list[tuple] = []
    for method, result in results:
        if "error" in result:
            rows.append((method.label, result["error"]))
            continue
        points = format_seconds(result.get("points"))
        if result.get("points_estimated"):
            points = "~" + points
        rows.append(
            (
                method.label,
                format_seconds(result["prepare"]),
                format_seconds(result["first"]),
                format_seconds(result["scalar"]),
                points,
                f"{result['value']:.15g}",
                format_error(result["value"], exact),
                result.get("size", ""),
            )
        )
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
        return "  ".join(
            str(c).ljust(w) if i in left else str(c).rjust(w) for i, (c, w) in enumerate(zip(row, widths))
        ).rstrip()

    return "\n".join([line(columns), "  ".join("-" * w for w in widths)] + [line(row) for row in rows])


def selected_methods(peers: bool) -> list[Method]:
    return [m for m in METHODS if m.module is None or (peers and available(m))]


def bench(
    depth: int, points: int, peers: bool, repeats: int, timeout: float, budget: float, out=None
) -> list[tuple[Method, dict]]:
    import numpy as np

    out = out or sys.stdout
    _value, exact = reference(depth)
    print(f"d/dx of cos(tan(sin(...))) nested {depth} deep at x = {X0} (seed 001), N = {points:,} points", file=out)
    print(
        f"mpmath reference ({REFERENCE_DIGITS} digits, value and derivative carried step by step): {_mp_string(exact)}",
        file=out,
    )
    if depth == SEED_DEPTH:
        print(f"seed 001's SymPy value: {SEED_DERIVATIVE!r}", file=out)
    print(
        f"Python {sys.version.split()[0]}, NumPy {np.__version__}; medians of up to {repeats} runs; "
        f"each row in its own process, limited to {timeout:g} s",
        file=out,
    )
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
    notes = [
        "prepare: build or trace + differentiate + compile; 1st value: prepare + first evaluation.",
        "N points: one call over N points (its one-time specialization untimed; ~ = extrapolated).",
    ]
    if float(exact) == 0.0:
        notes.append(
            f"the exact derivative {_mp_string(exact)} is below the smallest float64, so the "
            "correctly rounded answer is 0."
        )
    by_key = {m.key: r for m, r in results}
    ours, subs = by_key.get("chainrule", {}), by_key.get("sympy-subs", {})
    if "first" in ours and "first" in subs:
        notes.append(f"1st value: chainrule is {subs['first'] / ours['first']:.0f}x faster than SymPy diff+subs.")
    llvm, jax = by_key.get("chainrule-llvm", {}), by_key.get("jax", {})
    if "points" in llvm:
        peers = (("chainrule (numpy)", ours), ("JAX (jit of vmap of grad)", jax))
        versus = [
            f"{peer['points'] / llvm['points']:.1f}x faster than {name}" for name, peer in peers if "points" in peer
        ]
        notes.append(
            f"N points: chainrule (llvm) is {' and '.join(versus) or 'alone'}; compiling its N-point "
            f"kernel took {format_seconds(llvm['points_prepare'])} (trace, passes, LLVM, empty cache), "
            f"LLVM alone {format_seconds(llvm['points_llvm'])} ({format_seconds(llvm['points_llvm_cpu'])} "
            "of CPU time)."
        )
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
    parser.add_argument(
        "--sweep", action="store_true", help=f"prepare time at depths {', '.join(map(str, SWEEP_DEPTHS))}"
    )
    parser.add_argument("--repeats", type=int, default=3, help="runs per measurement; the median is shown")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds allowed to each row")
    parser.add_argument(
        "--budget",
        type=float,
        default=10.0,
        help="seconds of repeats per row before the median is taken from fewer runs",
    )


def run(args) -> int:
    if args.depth < 1 or args.points < 1:
        print("chainrule: --depth and --points must be positive", file=sys.stderr)
        return 2
    if args.sweep:
        sweep(SWEEP_DEPTHS, args.peers, args.repeats, args.timeout, args.budget)
    else:
        bench(args.depth, args.points, args.peers, args.repeats, args.timeout, args.budget)
    return 0
