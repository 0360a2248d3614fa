"""The ``chainrule`` command: ``chainrule demo``, ``chainrule gradcheck FILE.py:FUNC``,
``chainrule dump FILE.py:FUNC`` and ``chainrule dot FILE.py:FUNC -o graph.dot`` (see dump.py)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import numpy as np

from chainrule.cli import bench_nested, coverage, demo, dump
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
        "--argnums",
        type=_positions,
        default=None,
        help="comma-separated argument positions to check (default: every float argument)",
    )
    check.add_argument("--seed", type=_non_negative, default=0, help="seed of the random inputs")
    dump.add_arguments(commands)
    coverage.add_arguments(commands)
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
        if args.command == "coverage":
            return coverage.run(args)
        if args.command == "dump":
            return dump.run_dump(args)
        if args.command == "dot":
            return dump.run_dot(args)
        return _gradcheck(args)
    except ChainruleError as error:
        print(f"chainrule: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # an output file that cannot be written
        print(f"chainrule: {error.strerror}: {error.filename}", file=sys.stderr)
        return 2


def _gradcheck(args) -> int:
    import chainrule as cr
    from chainrule.frontends.pytree import flatten

    function, module = load_function(args.target)
    inputs = example_inputs(function, module, args.shape, args.seed)
    if args.argnums is not None:
        argnums = args.argnums
    else:
        argnums = [
            i
            for i, a in enumerate(inputs)
            if any(isinstance(leaf, float) or np.asarray(leaf).dtype.kind == "f" for leaf in flatten(a)[0])
        ]
    worst = 0.0
    checked = 0
    print(f"{'argument':<12}{'relative difference':>22}  verdict")
    for argnum in argnums:
        if 0 <= argnum < len(inputs) and _float_elements(inputs[argnum]) == 0:
            print(f"{argnum:<12}{'':>22}  nothing to check: no float elements")
            continue
        difference = cr.check_grad(function, *inputs, argnums=argnum)
        worst = max(worst, difference)
        checked += 1
        print(f"{argnum:<12}{difference:>22.3e}  {_verdict(difference)}")
    if not checked:
        print("chainrule: nothing was checked (no argument has float elements)", file=sys.stderr)
        return 1
    return 0 if worst < _SUSPICIOUS else 1


def _float_elements(argument: Any) -> int:
    from chainrule.frontends.pytree import flatten

    leaves = flatten(argument)[0]
    return sum(1 if isinstance(leaf, float) else int(np.size(leaf)) for leaf in leaves if _is_float(leaf))


def _is_float(leaf: Any) -> bool:
    return isinstance(leaf, float) or np.asarray(leaf).dtype.kind == "f"


def _positions(text: str) -> list[int]:
    """``--argnums 0,2``."""
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated argument positions like 0,2, got {text!r}"
        ) from None


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}")
    return value


def _verdict(difference: float) -> str:
    if difference < _PASS:
        return "PASSED"
    return "SUSPICIOUS" if difference < _SUSPICIOUS else "FAILED"
