"""Seed 001's experiment, reproduced and extended: d/dx of cos(tan(sin(...))) nested deep.

The seed differentiates f(x) = cos(tan(sin(cos(tan(sin(... x)))))) (30 nests,
sin innermost) at x = 4.2 with SymPy, gets 0.00255077238173787, and notes that
the symbolic route is exact but slow. This script

1. repeats that: SymPy's diff + subs, chainrule's compiled gradient, and a
   50-digit mpmath reference that carries value and derivative step by step;
2. goes deeper: SymPy's expression grows with every level until it dies of
   RecursionError, while chainrule's graph grows by a constant number of nodes
   per level and its prepare time grows linearly;
3. shows the symbolic half: chainrule's gradient graph as a SymPy expression
   (``cr.to_sympy``) is SymPy's own derivative.

    python examples/nested.py                 # the table, depths up to 3000
    python examples/nested.py --plot out.png  # and a log-log plot of prepare time (needs matplotlib)

``chainrule bench nested --peers`` is the full benchmark (lambdify, CSE, SymEngine, CasADi, JAX, PyTorch).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import sympy

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

import chainrule as cr
from chainrule.cli.nested_function import X0, nested, reference, relative_error

SEED_DEPTH, SEED_VALUE = 30, 0.00255077238173787


def sympy_derivative(depth: int):
    """The seed's SymPy route: (seconds for diff + subs, value, count_ops of the derivative) or an error."""
    x = sympy.Symbol("x", real=True, positive=True)
    f = x
    try:
        for _ in range(depth):
            f = sympy.cos(sympy.tan(sympy.sin(f)))
        start = time.perf_counter()
        derivative = sympy.diff(f, x)
        value = float(derivative.subs(x, X0))
        seconds = time.perf_counter() - start
    except RecursionError:
        return None
    return seconds, value, sympy.count_ops(derivative)


def chainrule_derivative(depth: int):
    """chainrule's route: (seconds to trace, differentiate, compile and evaluate once, value, node count)."""
    f = nested(depth, np.sin, np.tan, np.cos)
    x0 = np.float64(X0)
    start = time.perf_counter()
    derivative = cr.grad(f)
    value = float(derivative(x0))
    seconds = time.perf_counter() - start
    return seconds, value, len(derivative.graph(x0))


def error_text(value: float, exact) -> str:
    if float(exact) == 0.0:
        return "exact (0)" if value == 0.0 else f"{value:.1e} vs 0"
    return f"{relative_error(value, exact):.1e}"


def sweep(depths):
    """One row per (depth, method): seconds, value, relative error, expression size."""
    rows, sympy_alive = [], True
    for depth in depths:
        _, exact = reference(depth)
        if sympy_alive:
            found = sympy_derivative(depth)
            if found is None:
                sympy_alive = False
                rows.append((depth, "SymPy diff+subs", "RecursionError", "", "", ""))
            else:
                seconds, value, ops = found
                rows.append(
                    (
                        depth,
                        "SymPy diff+subs",
                        f"{seconds:.3f} s",
                        f"{value:.15g}",
                        error_text(value, exact),
                        f"{ops} ops",
                    )
                )
        seconds, value, nodes = chainrule_derivative(depth)
        rows.append(
            (depth, "chainrule", f"{seconds:.3f} s", f"{value:.15g}", error_text(value, exact), f"{nodes} nodes")
        )
    return rows


def print_table(rows, out=None):
    out = out or sys.stdout
    header = ("depth", "method", "diff + 1st value", "derivative at 4.2", "rel. error", "size")
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)), file=out)
    print("  ".join("-" * w for w in widths), file=out)
    for row in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip(), file=out)


def symbolic_check(out=None):
    """chainrule's gradient graph, read back as SymPy, is SymPy's derivative (depth 2, small enough to print)."""
    out = out or sys.stdout
    x = sympy.Symbol("x", real=True)
    f = nested(2, np.sin, np.tan, np.cos)
    ours = cr.to_sympy(cr.grad(f), X0, symbols=[x])
    theirs = sympy.diff(nested(2, sympy.sin, sympy.tan, sympy.cos)(x), x)
    print(f"chainrule's gradient of the depth-2 nest, as SymPy:\n  {ours}", file=out)
    print(f"simplify(that - sympy.diff) = {sympy.simplify(ours - theirs)}", file=out)


def plot(rows, path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("--plot needs matplotlib (pip install 'chainrule[plot]')", file=sys.stderr)
        return
    figure, axes = plt.subplots(figsize=(6, 4))
    for method in ("SymPy diff+subs", "chainrule"):
        points = [(d, float(t.split()[0])) for d, m, t, *_ in rows if m == method and t.endswith(" s")]
        if points:
            axes.loglog(*zip(*points), "o-", label=method)
    axes.set_xlabel("nesting depth")
    axes.set_ylabel("seconds to the first derivative value")
    axes.set_title("d/dx cos(tan(sin(...))) at x = 4.2")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path)
    print(f"plot written to {path}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--max-depth", type=int, default=3000, help="deepest nest of the sweep")
    parser.add_argument("--plot", metavar="FILE", help="write a log-log plot of time against depth")
    args = parser.parse_args(argv)

    print(f"Seed 001: d/dx of cos(tan(sin(...))) nested {SEED_DEPTH} deep at x = {X0}")
    print(f"  the seed's SymPy value:      {SEED_VALUE!r}")
    _, exact = reference(SEED_DEPTH)
    print(f"  50-digit mpmath reference:   {float(exact)!r}")
    depths = [d for d in (10, 20, 30, 40, 50, 100, 300, 1000, 3000, 10000) if d <= args.max_depth]
    rows = sweep(sorted(set(depths) | {SEED_DEPTH}))
    print()
    print_table(rows)
    print()
    symbolic_check()
    if args.plot:
        plot(rows, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
