"""``chainrule dump`` and ``chainrule dot``: a user's function as the compiler sees it.

``dump`` prints the IR after one stage, after every stage (``--stage all``,
each under a header with its node count and the time of the passes that made
it), or what every pass changed (``--diff``, see ``chainrule.ir.diff``), and
the generated code (``--source``). ``dot`` writes the graph of one stage for
Graphviz. Both compile ``FILE.py:FUNC`` on the example inputs the
``gradcheck`` command uses: ``example_args()`` in the file, or ``--shape``.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
from pathlib import Path

import numpy as np

from chainrule.cli.inputs import example_inputs, load_function
from chainrule.compiler import pipeline
from chainrule.errors import ChainruleError
from chainrule.frontends.pytree import tree_map
from chainrule.ir.diff import canonical_text, op_count_delta, text_diff
from chainrule.transforms.higher_order import Linearized

_RENDERED = (".png", ".svg", ".pdf")  # formats Graphviz's dot program makes from the DOT text


def add_arguments(commands) -> None:
    """The ``dump`` and ``dot`` subcommands, on ``commands`` (the main parser's subparsers)."""
    dump = commands.add_parser(
        "dump", help="print the IR of FILE.py:FUNC after a compiler stage, or what each pass changed"
    )
    _add_compile_options(dump)
    dump.add_argument(
        "--stage",
        default=None,
        metavar="NAME|all",
        help=f"one of {', '.join(pipeline.STAGES)} (default: {pipeline.STAGES[-1]}), or all; "
        "with --diff, only the passes of that stage",
    )
    dump.add_argument(
        "--diff",
        action="store_true",
        help="print each pass's changes: nodes before -> after, time, op counts and a diff of the "
        "IR text in which nodes are named by what they compute, not by their ids",
    )
    dump.add_argument(
        "--backend",
        default="numpy",
        choices=("numpy", "llvm"),
        help="the backend to compile for; llvm also prints its LLVM IR",
    )
    dump.add_argument("--source", action="store_true", help="also print the generated code")
    dump.add_argument(
        "--format",
        default="text",
        choices=("text", "graphml"),
        help="text (the IR, printed) or graphml (the graph of one stage as GraphML, for networkx, "
        "yEd or Gephi; needs -o)",
    )
    dump.add_argument("-o", "--output", default=None, metavar="FILE", help="with --format graphml: the file to write")
    dot = commands.add_parser("dot", help="write the graph of FILE.py:FUNC after a stage as Graphviz DOT, PNG or SVG")
    _add_compile_options(dot)
    dot.add_argument(
        "--stage",
        default=pipeline.STAGES[-1],
        metavar="NAME",
        help=f"one of {', '.join(pipeline.STAGES)} (default: %(default)s)",
    )
    dot.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="FILE",
        help="graph.dot (or .gv) for the DOT text; graph.png or graph.svg to run Graphviz's dot",
    )


def _add_compile_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", help="FILE.py:FUNC; inputs come from example_args() in FILE.py or from --shape")
    transform = parser.add_mutually_exclusive_group()
    transform.add_argument(
        "--grad",
        action="store_true",
        help="compile cr.value_and_grad(FUNC) (forward and backward) instead of cr.jit(FUNC)",
    )
    transform.add_argument(
        "--jvp",
        action="store_true",
        help="compile FUNC's Jacobian-vector product (forward mode: stage jvp), tangents of ones",
    )
    transform.add_argument(
        "--hvp",
        action="store_true",
        help="compile FUNC's Hessian-vector product (forward over reverse: stages grad, jvp), v of ones",
    )
    parser.add_argument(
        "--argnums",
        default=None,
        help="with --grad, --jvp or --hvp: comma-separated argument positions to differentiate (default: 0)",
    )
    parser.add_argument(
        "--shape",
        action="append",
        default=[],
        metavar="NAME=DIMS",
        help="a random float64 input, e.g. --shape x=400x2 (one per argument, in order)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    parser.add_argument(
        "--checkpoint",
        default="all",
        metavar="POLICY",
        help="with --grad: all, sqrt, optimal or a budget in bytes; recomputed nodes are marked (default: all)",
    )


# ---- compiling the user's function ---------------------------------------------------------


def _compile(args, backend: str = "numpy"):
    """``args.target`` compiled as the options ask, and its specialization to the example inputs."""
    import chainrule as cr

    function, module = load_function(args.target)
    inputs = example_inputs(function, module, args.shape, args.seed)
    if args.grad:
        compiled = cr.value_and_grad(
            function, _argnums(args.argnums), backend=backend, checkpoint=_checkpoint_policy(args.checkpoint)
        )
    elif args.jvp or args.hvp:
        argnums = _argnums(args.argnums)
        compiled = Linearized(function, "jvp" if args.jvp else "hvp", argnums)
        ones = [tree_map(np.ones_like, inputs[a]) for a in ((argnums,) if isinstance(argnums, int) else argnums)]
        inputs = tuple(inputs) + (ones[0] if isinstance(argnums, int) else tuple(ones),)
    else:
        if args.argnums is not None:
            raise ChainruleError("--argnums picks what --grad (or --jvp, --hvp) differentiates; add --grad")
        compiled = cr.jit(function, backend=backend)
    entry, _ = compiled._specialize(inputs)
    return compiled, entry, inputs


def _checkpoint_policy(text: str):
    return int(text) if text.isdigit() else text


def _argnums(text):
    if text is None:
        return 0
    try:
        positions = tuple(int(a) for a in text.split(","))
    except ValueError:
        raise ChainruleError(f"--argnums {text!r}: expected comma-separated integers like 0,1") from None
    return positions[0] if len(positions) == 1 else positions


def _check_stage(compilation: pipeline.Compilation, stage: str) -> None:
    if stage not in pipeline.STAGES and stage != "jvp":
        raise ChainruleError(
            f"unknown stage {stage!r}; the stages are {', '.join(pipeline.STAGES)} (or all, "
            "for dump; jvp with --jvp or --hvp)"
        )
    if stage not in compilation.graphs:
        hint = {"grad": ": add --grad (or --hvp)", "jvp": ": add --jvp or --hvp"}.get(stage, "")
        raise ChainruleError(f"this compilation has no {stage!r} stage{hint}")


# ---- dump ---------------------------------------------------------------------------------


def _milliseconds(seconds: float) -> str:
    return f"{seconds * 1e3:.2f} ms"


def stage_header(compilation: pipeline.Compilation, stage: str) -> str:
    """``=== simplified: 37 nodes, 1.90 ms (simplify 1.40 ms, cse 0.50 ms) ===``."""
    records = [r for r in compilation.passes if r.stage == stage]
    text = f"=== {stage}: {len(compilation.graphs[stage])} nodes"
    if records:
        made_by = ", ".join(f"{r.name} {_milliseconds(r.seconds)}" for r in records)
        text += f", {_milliseconds(sum(r.seconds for r in records))} ({made_by})"
    return text + " ==="


def pass_header(record: pipeline.PassRecord) -> str:
    return (
        f"=== pass {record.name} ({record.stage}): {record.nodes_before} -> {record.nodes_after} nodes, "
        f"{_milliseconds(record.seconds)} ==="
    )


def run_dump(args) -> int:
    compiled, entry, _ = _compile(args, args.backend)
    compilation = entry.compilation
    if args.format == "graphml":
        return _write_graphml(compilation, args)
    if args.stage not in (None, "all"):
        _check_stage(compilation, args.stage)
    if args.diff:
        _print_diffs(compilation, None if args.stage in (None, "all") else args.stage)
    elif args.stage == "all":
        print(
            "\n\n".join(f"{stage_header(compilation, stage)}\n{graph}" for stage, graph in compilation.graphs.items())
        )
    else:
        print(compilation.graphs[args.stage or pipeline.STAGES[-1]])
    if args.source or args.backend == "llvm":
        print(f"\n=== generated code ({compiled.backend}) ===\n{entry.kernel.source}")
    return 0


def _write_graphml(compilation: pipeline.Compilation, args) -> int:
    """The graph of one stage (``--stage``, default the last) written as GraphML to ``--output``."""
    if args.output is None or args.diff or args.stage == "all":
        raise ChainruleError("--format graphml writes one stage's graph: give -o FILE, one --stage, no --diff")
    stage = args.stage or pipeline.STAGES[-1]
    _check_stage(compilation, stage)
    graph = compilation.graphs[stage]
    graph.write_graphml(args.output)
    print(
        f"wrote {args.output}: the {stage} graph, {len(graph)} nodes (read it back with "
        f"chainrule.ir.Graph.read_graphml, or networkx.read_graphml)"
    )
    return 0


def _print_diffs(compilation, stage) -> None:
    """The graph the first shown pass starts from, then each pass's header, op-count delta and diff."""
    after = [record.graph for record in compilation.passes]
    before = [compilation.graphs["traced"]] + after[:-1]
    shown = [i for i, record in enumerate(compilation.passes) if stage is None or record.stage == stage]
    start = before[shown[0]]
    print(f"=== before {compilation.passes[shown[0]].name}: {len(start)} nodes, named by what they compute ===")
    print("\n".join(canonical_text(start)))
    for index in shown:
        print(f"\n{pass_header(compilation.passes[index])}")
        delta = op_count_delta(before[index], after[index])
        lines = text_diff(before[index], after[index])[2:]  # without the ---/+++ file lines
        if not delta and not lines:
            print("no change")
            continue
        print(f"ops: {delta or 'same counts'}")
        print("\n".join(lines))


# ---- dot ----------------------------------------------------------------------------------


def run_dot(args) -> int:
    _, entry, _ = _compile(args)
    compilation = entry.compilation
    _check_stage(compilation, args.stage)
    graph = compilation.graphs[args.stage]
    text = graph.to_dot() + "\n"
    output = Path(args.output)
    suffix = output.suffix.lower()
    if suffix in (".dot", ".gv"):
        output.write_text(text)
    elif suffix in _RENDERED:
        program = shutil.which("dot")
        if program is None:
            raise ChainruleError(
                f"writing {output.name} needs Graphviz's dot program, which is not installed: "
                f"install graphviz (apt install graphviz, brew install graphviz), or write the "
                f"DOT text with -o {output.with_suffix('.dot')}"
            )
        result = subprocess.run(
            [program, f"-T{suffix[1:]}", "-o", str(output)], input=text, text=True, capture_output=True
        )
        if result.returncode != 0:
            raise ChainruleError(f"Graphviz's dot failed on {output.name}: {result.stderr.strip()}")
    else:
        raise ChainruleError(f"-o {output}: expected a file ending in .dot, .gv, {', '.join(_RENDERED)}")
    print(f"wrote {output} ({args.stage}: {len(graph)} nodes)")
    return 0
