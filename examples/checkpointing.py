"""Memory against recomputation: a 100-layer MLP's gradient under a sweep of memory budgets.

Training keeps every activation for the backward pass (seed 000, "Memory
Consumption"); recomputing some of them in the backward pass saves memory at the
cost of time (seed 003, 7.5 "Gradient Checkpointing"). Here chainrule decides
the trade as a compiler pass: for each budget it finds the least recomputation
whose estimated peak fits, and this script checks the estimate against the
peak tracemalloc measures when the generated code runs.

    python examples/checkpointing.py                        # the table
    python examples/checkpointing.py --plot checkpointing.png  # and a plot (needs matplotlib)

The MLP is 100 tanh layers of width 64 on a batch of 1024 (float32), so one
activation is 256 KiB while a weight matrix is 16 KiB: the activations, not the
gradients, make the peak.
"""

from __future__ import annotations

import argparse
import sys
import tracemalloc
from pathlib import Path

import numpy as np

try:
    import chainrule as cr
except ImportError:  # run from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import chainrule as cr


def loss(params, x):
    h = x
    for W, b in params:
        h = np.tanh(h @ W + b)
    return np.mean(h**2)


def make_args(layers=100, width=64, batch=1024):
    rng = np.random.default_rng(0)
    params = [
        (
            (rng.standard_normal((width, width)) / np.sqrt(width)).astype(np.float32),
            (0.1 * rng.standard_normal(width)).astype(np.float32),
        )
        for _ in range(layers)
    ]
    return params, rng.standard_normal((batch, width)).astype(np.float32)


def measured_peak(f, args) -> int:
    tracemalloc.start()
    f(*args)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def sweep(args, fractions):
    """One row per policy: keep-all, sqrt, optimal, then budgets at ``fractions`` of keep-all's peak."""
    everything = cr.grad(loss).memory(*args).peak_bytes
    policies = [("all", "all"), ("sqrt", "sqrt"), ("optimal", "optimal")]
    policies += [(f"budget {fraction:.0%}", int(everything * fraction)) for fraction in fractions]
    reference = cr.grad(loss)(*args)
    rows = []
    for label, policy in policies:
        f = cr.grad(loss, checkpoint=policy)
        try:
            gradients = f(*args)
        except cr.ChainruleError as error:  # a budget below what any placement reaches
            rows.append((label, None, None, None, None, None, str(error).split(":")[0]))
            continue
        error = max(float(np.max(np.abs(g - r))) for pair in zip(gradients, reference) for g, r in zip(*pair))
        report = f.memory(*args)
        rows.append(
            (
                label,
                policy if isinstance(policy, int) else None,
                report.peak_bytes,
                measured_peak(f, args),
                report.kept_bytes,
                report.extra_forward_passes,
                f"max |grad - all| = {error:.0e}",
            )
        )
    return rows, args[1].nbytes


def print_table(rows, activation) -> None:
    print(
        f"{'policy':<14} {'budget':>10} {'peak est':>10} {'measured':>10} {'est/meas':>8} {'kept':>10} "
        f"{'extra fwd':>9}  check"
    )
    for label, budget, estimate, measured, kept, extra, note in rows:
        if estimate is None:
            print(f"{label:<14} {budget or '':>10} {'-':>10} {'-':>10} {'-':>8} {'-':>10} {'-':>9}  {note}")
            continue
        act = lambda count: f"{count / activation:9.1f}a"  # in activations
        print(
            f"{label:<14} {act(budget) if budget else '':>10} {act(estimate)} {act(measured)} "
            f"{estimate / measured:8.3f} {act(kept)} {extra:9.2f}  {note}"
        )
    print(f"(sizes in activations of {activation // 1024} KiB; extra fwd = recomputed FLOPs / forward FLOPs)")


def plot(rows, activation, path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # write a file, open no window
    import matplotlib.pyplot as plt

    done = [row for row in rows if row[2] is not None]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot([r[5] for r in done], [r[3] / activation for r in done], "o", label="measured peak (tracemalloc)")
    ax.plot([r[5] for r in done], [r[2] / activation for r in done], "x", label="estimated peak")
    for index, (label, _, _estimate, measured, _, extra, _) in enumerate(done):
        ax.annotate(
            label,
            (extra, measured / activation),
            textcoords="offset points",
            fontsize=8,
            xytext=(5, 4 if index % 2 else -12),
        )  # sqrt and optimal land close: alternate sides
    ax.set_xlabel("recomputation (extra forward passes)")
    ax.set_ylabel("peak memory (activations)")
    ax.set_title("100-layer tanh MLP: memory against recomputation")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"plot written to {path}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="memory-versus-recompute sweep over checkpoint budgets")
    parser.add_argument("--layers", type=int, default=100)
    parser.add_argument("--plot", metavar="FILE.png", help="also plot the sweep (needs matplotlib)")
    options = parser.parse_args(argv)
    args = make_args(options.layers)
    rows, activation = sweep(args, fractions=(0.75, 0.5, 0.3, 0.2, 0.15, 0.12, 0.08))
    print_table(rows, activation)
    if options.plot:
        try:
            plot(rows, activation, options.plot)
        except ImportError:
            print("matplotlib is not installed: pip install chainrule[plot]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
