"""Compile time of a gradient: trace, optimize and generate code, on the seed network and on long chains.

    python3 benchmarks/compile_time.py           # about two minutes; prints one table
    python3 benchmarks/compile_time.py --quick   # without the 100,000-node chain: about 15 s
    python3 benchmarks/compile_time.py --scaling [--against ../base]   # RK4 and nested, by backend

The issue's targets: the gradient of seed 002's [2, 16, 8, 1] network compiles in
under 50 ms, and a chain of 10,000 traced nodes in under 2 s, with the time per
node flat from 1,000 to 100,000 nodes (every pass is linear in the graph's size).

The chain is ``for _ in range(n - 2): x = np.sin(x)`` then ``np.sum(x)``: n traced
nodes (the input and the sum included). Each row is the median of a few fresh
compilations. "trace", the pipeline's stages and "codegen" are timed by calling
the internal functions (``trace_graph``, ``pipeline.run``, ``compile_graph``) on
the same inputs, in turn; "py compile" is the part of codegen spent in Python's
own ``compile`` of the generated source; "first call" is a separate fresh
``cr.grad(f)(x)``, end to end (argument handling and one run of the kernel
included), "cpu" the process time of that call (which other processes on a busy
machine do not inflate), and "per node" divides the first call by the traced
nodes. "linear?" is the time per node relative to the 1,000-node chain: 1.0 is
linear growth.

``--scaling`` (compile_scaling.py) times the first call of fresh gradients, each in a fresh
process, on both backends: examples/pendulum_rk4.py's RK4 step unrolled by a Python loop over
10, 100 and 1,000 steps, and seed 001's cos(tan(sin(...))) nested 1,000 and 10,000 deep;
``--against DIR`` runs the same cases on the chainrule checkout in DIR, in the same run.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from statistics import median

import numpy as np

try:
    import chainrule as cr
except ImportError:  # run from a checkout: python3 benchmarks/compile_time.py
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import chainrule as cr
from chainrule.backends.numpy import compile_graph
from chainrule.compiler import pipeline
from chainrule.frontends.trace import describe_args, trace_graph

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mlp import seed_loss, seed_parameters, spiral_data

CHAIN_SIZES = (1_000, 10_000, 100_000)
SEED_TARGET_SECONDS = 0.050
CHAIN_10K_TARGET_SECONDS = 2.0


def sin_chain(nodes: int):
    """A function whose traced graph has ``nodes`` nodes: an input, ``nodes - 2`` sines and a sum."""

    def chain(x):
        for _ in range(nodes - 2):
            x = np.sin(x)
        return np.sum(x)

    chain.__name__ = f"chain{nodes}"
    return chain


def compile_once(fn, args: tuple, argnums: int = 0) -> dict:
    """One fresh compilation, stage by stage, then a fresh ``cr.grad`` first call end to end."""
    differentiated = (argnums,)
    spec, leaves = describe_args(fn, args, differentiated)
    start = time.perf_counter()
    traced, _ = trace_graph(fn, spec, leaves)
    traced_seconds = time.perf_counter() - start
    # the input positions to differentiate, worked out as Compiled._compile does
    traced_positions = [i for i, leaf_spec in enumerate(spec.leaves) if leaf_spec.traced]
    wrt = [
        traced_positions.index(i)
        for i, owner in enumerate(spec.arg_of_leaf)
        if owner in differentiated and spec.leaves[i].traced
    ]
    start = time.perf_counter()
    compilation = pipeline.run(traced, wrt)
    optimize_seconds = time.perf_counter() - start
    start = time.perf_counter()
    kernel = compile_graph(compilation.final, f"{traced.name}_grad")
    codegen_seconds = time.perf_counter() - start
    start = time.perf_counter()
    compile(kernel.source, kernel.filename, "exec")
    python_compile_seconds = time.perf_counter() - start
    traced_nodes, final_nodes = len(traced), len(compilation.final)
    stages = dict(compilation.seconds)
    del traced, compilation, kernel  # so the end-to-end call below does not share the heap with them

    gradient = cr.grad(fn, argnums)
    start, start_cpu = time.perf_counter(), time.process_time()
    gradient(*args)
    first_call_seconds = time.perf_counter() - start
    first_call_cpu_seconds = time.process_time() - start_cpu
    return {
        "traced nodes": traced_nodes,
        "final nodes": final_nodes,
        "trace": traced_seconds,
        "stages": stages,
        "optimize": optimize_seconds,
        "codegen": codegen_seconds,
        "py compile": python_compile_seconds,
        "first call": first_call_seconds,
        "first call cpu": first_call_cpu_seconds,
    }


def measure(label: str, fn, args: tuple, runs: int) -> dict:
    """The median of each number over ``runs`` fresh compilations."""
    samples = [compile_once(fn, args) for _ in range(runs)]
    stage_names = list(dict.fromkeys(name for sample in samples for name in sample["stages"]))
    row = {
        "case": label,
        "runs": runs,
        "stages": {name: median(s["stages"].get(name, 0.0) for s in samples) for name in stage_names},
    }
    for key in (
        "traced nodes",
        "final nodes",
        "trace",
        "optimize",
        "codegen",
        "py compile",
        "first call",
        "first call cpu",
    ):
        row[key] = median(s[key] for s in samples)
    row["per node"] = row["first call"] / row["traced nodes"]
    return row


def _format_seconds(seconds: float) -> str:
    if seconds < 1.0:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.2f} s"


def print_table(rows: list[dict]) -> None:
    stage_names = list(dict.fromkeys(name for row in rows for name in row["stages"]))
    reference = next((row for row in rows if row["case"] == f"chain {CHAIN_SIZES[0]:,}"), None)
    columns = (
        [("case", 18, "<"), ("runs", 4, ">"), ("traced", 7, ">"), ("final", 7, ">"), ("trace", 9, ">")]
        + [(name, max(len(name), 9), ">") for name in stage_names]
        + [
            ("optimize", 9, ">"),
            ("codegen", 9, ">"),
            ("py compile", 10, ">"),
            ("first call", 10, ">"),
            ("cpu", 9, ">"),
            ("per node", 9, ">"),
            ("linear?", 7, ">"),
        ]
    )
    header = " ".join(f"{name:{align}{width}}" for name, width, align in columns)
    print(header)
    print("-" * len(header))
    for row in rows:
        linear = "-"
        if reference is not None and row["case"].startswith("chain"):
            linear = f"{row['per node'] / reference['per node']:.2f}"
        cells = (
            [
                row["case"],
                str(row["runs"]),
                f"{row['traced nodes']:,.0f}",
                f"{row['final nodes']:,.0f}",
                _format_seconds(row["trace"]),
            ]
            + [_format_seconds(row["stages"][name]) if name in row["stages"] else "-" for name in stage_names]
            + [
                _format_seconds(row["optimize"]),
                _format_seconds(row["codegen"]),
                _format_seconds(row["py compile"]),
                _format_seconds(row["first call"]),
                _format_seconds(row["first call cpu"]),
                f"{row['per node'] * 1e6:.0f} us",
                linear,
            ]
        )
        print(" ".join(f"{cell:{align}{width}}" for cell, (_, width, align) in zip(cells, columns)))


def print_verdict(rows: list[dict]) -> None:
    by_case = {row["case"]: row for row in rows}
    seed = by_case.get("seed [2,16,8,1]")
    if seed is not None:
        ok = seed["first call"] < SEED_TARGET_SECONDS
        print(
            f"seed [2,16,8,1] gradient, first call: {_format_seconds(seed['first call'])} "
            f"(target < {SEED_TARGET_SECONDS * 1e3:.0f} ms: {'met' if ok else 'MISSED'})"
        )
    chain = by_case.get("chain 10,000")
    if chain is not None:
        ok = chain["first call"] < CHAIN_10K_TARGET_SECONDS
        print(
            f"10,000-node chain, first call: {_format_seconds(chain['first call'])} "
            f"(target < {CHAIN_10K_TARGET_SECONDS:.0f} s: {'met' if ok else 'MISSED'})"
        )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="skip the 100,000-node chain")
    parser.add_argument("--scaling", action="store_true", help="RK4 and nested compiles per backend instead")
    parser.add_argument("--stages", action="store_true", help="the nested LLVM compile's CPU time by stage instead")
    parser.add_argument("--against", default=None, help="with --scaling or --stages: a baseline checkout to time too")
    parser.add_argument(
        "--runs",
        type=int,
        default=None,
        help="fresh compilations per row (default: 7 for the seed network, 9, 3 and 3 for the chains)",
    )
    options = parser.parse_args(argv)
    if options.scaling:
        from compile_scaling import run_scaling

        run_scaling(options.runs or 3, options.against)
        return
    if options.stages:
        from compile_scaling import run_stages

        run_stages(options.runs or 3, options.against)
        return
    X, Y = spiral_data()
    seed_args = (seed_parameters(), X, Y)
    chain_input = (np.linspace(-1.0, 1.0, 4),)
    compile_once(seed_loss, seed_args)  # warm-up: first-use costs (imports, op-table caches) are not compile time
    compile_once(sin_chain(100), chain_input)

    cases = [("seed [2,16,8,1]", seed_loss, seed_args, 7)]
    # more runs of the 1,000-node chain: it is cheap, and the "linear?" column divides by it
    for size, runs in zip(CHAIN_SIZES, (9, 3, 3)):
        if size > 10_000 and options.quick:
            continue
        cases.append((f"chain {size:,}", sin_chain(size), chain_input, runs))
    rows = []
    for label, fn, args, runs in cases:
        rows.append(measure(label, fn, args, options.runs or runs))
        print(f"  measured {label}", file=sys.stderr)
    print(
        f"NumPy {np.__version__}, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs; "
        "medians of fresh compilations of the gradient"
    )
    print()
    print_table(rows)
    print()
    print_verdict(rows)
    print("traced/final = nodes traced / after the last stage. Stage columns are the pipeline's own timings;")
    print("optimize is all of pipeline.run. codegen = compile_graph (py compile is its Python compile() part).")
    print("first call = a fresh cr.grad(f)(x) end to end (cpu: its process time, which other processes on a")
    print("busy machine do not inflate); per node = first call / traced nodes;")
    print("linear? = per node / per node of the 1,000-node chain.")


if __name__ == "__main__":
    main()
