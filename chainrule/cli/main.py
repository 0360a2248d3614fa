"""The ``chainrule`` command: ``chainrule demo``, ``chainrule gradcheck FILE.py:FUNC``,
``chainrule dump FILE.py:FUNC`` and ``chainrule dot FILE.py:FUNC -o graph.dot`` (see dump.py)."""

from __future__ import annotations

import argparse
import sys

import numpy as np

from chainrule.cli import bench_nested, demo, dump
from chainrule.cli.inputs import example_inputs, load_function
from chainrule.errors import ChainruleError

# Seed 002's gradient-check verdicts.
_PASS, _SUSPICIOUS = 1e-7, 1e-5


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="chainrule", description="A symbolic-plus-numeric differentiation compiler.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("demo", help="differentiate seed 002's worked example and show the generated code")
    check = commands.add_parser(
        "gradcheck", help="compare chainrule's gradient of FILE.py:FUNC with finite differences"
    )
    check.add_argument("target", help="FILE.py:FUNC; inputs come from example_args() in FILE.py or from --shape")
    check.add_argument(
        "--shape",
        action="append",
        default=[],
        metavar="NAME=DIMS",
        help="a random float64 input, e.g. --shape x=400x2 (one per argument, in order)",
    )
    check.add_argument(
        "--argnums", default=None, help="comma-separated argument positions to check (default: every float argument)"
    )
    check.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    dump.add_arguments(commands)
    benchmarks = commands.add_parser("bench", help="benchmarks that print comparison tables").add_subparsers(
        dest="benchmark", required=True
    )
    bench_nested.add_arguments(
        benchmarks.add_parser(
            "nested", help="seed 001: d/dx of cos(tan(sin(...))) nested --depth deep, against SymPy and peers"
        )
    )
    args = parser.parse_args(argv)
    try:
        if args.command == "demo":
            demo.run()
            return 0
        if args.command == "bench":
            return bench_nested.run(args)
        if args.command == "dump":
            return dump.run_dump(args)
        if args.command == "dot":
            return dump.run_dot(args)
        return _gradcheck(args)
    except ChainruleError as error:
        print(f"chainrule: {error}", file=sys.stderr)
        return 2


def _gradcheck(args) -> int:
    import chainrule as cr
    from chainrule.frontends.pytree import flatten

    function, module = load_function(args.target)
    inputs = example_inputs(module, args.shape, args.seed)
    if args.argnums is not None:
        argnums = [int(a) for a in args.argnums.split(",")]
    else:
        argnums = [
            i
            for i, a in enumerate(inputs)
            if any(isinstance(leaf, float) or np.asarray(leaf).dtype.kind == "f" for leaf in flatten(a)[0])
        ]
    worst = 0.0
    print(f"{'argument':<12}{'relative difference':>22}  verdict")
    for argnum in argnums:
        difference = cr.check_grad(function, *inputs, argnums=argnum)
        worst = max(worst, difference)
        print(f"{argnum:<12}{difference:>22.3e}  {_verdict(difference)}")
    return 0 if worst < _SUSPICIOUS else 1


def _verdict(difference: float) -> str:
    if difference < _PASS:
        return "PASSED"
    return "SUSPICIOUS" if difference < _SUSPICIOUS else "FAILED"
