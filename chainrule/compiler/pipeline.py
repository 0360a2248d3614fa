"""The ordered, named stages a function goes through, each made by ``Graph -> Graph`` passes.

    traced -> grad -> simplified -> checkpointed -> fused -> scheduled

- ``grad``: reverse mode (only for gradients). The forward graph is simplified
  first, so the derivative is taken of the stable forms (``log(sigmoid(z))``
  becomes ``-softplus(-z)`` before it is differentiated, not after), and the
  backward nodes are simplified as reverse mode builds them (the same rule
  as the simplify pass, installed with ``Graph.rewriting``): walking the
  joint graph again would find nothing to change, at the cost of a rebuild.
  Jacobian-vector products, VJPs of any output and Hessian-vector products
  (``chainrule.transforms.higher_order``) bring their own passes: ``grad`` and ``jvp``
  (forward mode, after ``grad`` when it is forward over reverse).
- ``simplified``: user-defined rules' nodes (``cr.custom_vjp``) become their primal ops (the
  rules were used by ``grad``/``jvp``, which are done), then identities, stability rewrites, constant folding and CSE
  to a fixed point (unless reverse mode's graph is the input: it already is
  there), then small backward regions simplified by SymPy (symbolic.py), then the bodies of
  control nodes (loops, branches, their derivatives) simplified, fused and scheduled
  (body_passes.py).
- ``checkpointed``: which forward values the backward pass keeps and which it
  recomputes (checkpoint.py). Under the default policy ``"all"`` this stage is
  the simplified graph itself.
- ``fused``: elementwise regions become fused nodes.
- ``scheduled``: an execution order that frees memory early, with a memory plan.

Every stage's graph is kept so users can print the IR after any of them, and
every pass is timed. ``optimize=False`` runs only differentiation and dead-code
elimination (for comparisons). Set ``CHAINRULE_VERIFY=1`` (the test suite does)
to verify the graph after every pass.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from chainrule.compiler.autodiff import reverse
from chainrule.compiler.body_passes import optimize_bodies
from chainrule.compiler.checkpoint import checkpoint
from chainrule.compiler.dce import dce
from chainrule.compiler.fuse import fuse
from chainrule.compiler.loop_checkpoint import checkpoint_loops
from chainrule.compiler.rewrite import rebuild
from chainrule.compiler.schedule import schedule
from chainrule.compiler.shared_sort import share_sorts
from chainrule.compiler.simplify import simplify, simplify_rule
from chainrule.compiler.symbolic import symbolic_regions
from chainrule.compiler.values_only import values_only
from chainrule.ir import Graph
from chainrule.ir.custom import inline_custom

STAGES = ("traced", "grad", "simplified", "checkpointed", "fused", "scheduled")


@dataclass
class PassRecord:
    """One pass as it ran: its name, the stage it belongs to, time, node counts before and after,
    and the graph it made (``chainrule dump --diff`` shows what each pass changed)."""

    name: str
    stage: str
    seconds: float
    nodes_before: int
    nodes_after: int
    graph: Graph | None = field(repr=False, default=None)


@dataclass
class Compilation:
    """The graph after each stage, and the passes that made them."""

    graphs: dict[str, Graph] = field(default_factory=dict)
    passes: list[PassRecord] = field(default_factory=list)

    @property
    def final(self) -> Graph:
        return self.graphs[STAGES[-1]]

    @property
    def differentiable(self) -> Graph:
        """The last graph made only of primitives (before fusion): what grad of grad inlines."""
        return self.graphs.get("jvp", self.graphs.get("grad", self.graphs["traced"]))

    @property
    def seconds(self) -> dict[str, float]:
        """Seconds per stage (the sum of its passes)."""
        totals: dict[str, float] = {}
        for record in self.passes:
            totals[record.stage] = totals.get(record.stage, 0.0) + record.seconds
        return totals


Pass = tuple[str, str, Callable[[Graph], Graph]]  # (stage, pass name, pass)

# Passes whose result the simplify rule must leave unchanged (checked under CHAINRULE_VERIFY=1).
_AT_SIMPLIFY_FIXED_POINT = {"simplify forward", "dce", "simplify"}


def _passes(
    wrt: Sequence[int] | None, optimize: bool, transforms: Sequence[Pass] = (), policy: str = "all"
) -> list[Pass]:
    """(stage, pass name, pass) in order."""
    passes: list[Pass] = []
    if wrt is not None and policy != "all":
        passes.append(("grad", "checkpoint loops", lambda g: checkpoint_loops(g, policy)))
    if wrt is not None and optimize:
        passes += [
            ("grad", "simplify forward", simplify),
            ("grad", "reverse", lambda g: reverse(g, wrt, rewriter=simplify_rule)),
            ("grad", "dce", dce),
        ]
    elif wrt is not None:
        passes.append(("grad", "reverse", lambda g: reverse(g, wrt)))
    passes += transforms
    # differentiation is done: the custom nodes left become their primal ops, simplified as built
    passes.append(
        ("simplified", "inline custom rules", lambda g: inline_custom(g, simplify_rule if optimize else None))
    )
    if optimize:
        if wrt is None or transforms:
            passes.append(("simplified", "simplify", simplify))
        passes.append(("simplified", "symbolic", symbolic_regions))
        # every derivative loop exists now: the bodies of control nodes get the passes too
        passes.append(("simplified", "optimize bodies", optimize_bodies))
    else:
        passes.append(("simplified", "dce", dce))
    if wrt is None:
        passes.append(("checkpointed", "keep all", lambda g: g))
    else:

        def estimate(graph: Graph) -> int:  # what the later stages make of a placement: its peak
            plan = finish(graph, optimize).memory_plan
            assert plan is not None, "the schedule pass plans memory"
            return plan.peak_bytes

        passes.append(("checkpointed", "checkpoint", lambda g: checkpoint(g, policy, estimate)))
    return passes + _late_passes(optimize)


def _late_passes(optimize: bool) -> list[Pass]:
    """The stages after checkpointing: fusion (when optimizing) and the schedule."""
    late: list[Pass] = (
        [("fused", "values only", values_only), ("fused", "shared sort", share_sorts), ("fused", "fuse", fuse)]
        if optimize
        else []
    )
    late.append(("scheduled", "schedule", lambda g: schedule(g, reorder=optimize)))
    return late


def _contents(graph: Graph) -> tuple:
    """What ``Graph.verify`` checks: the graph's nodes and its ends. Equal contents verify alike (a
    node handed on unchanged compares equal by identity, without looking at its fields)."""
    return tuple(graph.nodes), tuple(graph.inputs), tuple(graph.outputs), tuple(graph.output_names)


def finish(graph: Graph, optimize: bool = True) -> Graph:
    """``graph`` (a checkpointed-stage graph) through the remaining stages, as ``run`` takes it: for
    estimating a placement's peak, or compiling a variant of the checkpointed graph."""
    for _, _, run_pass in _late_passes(optimize):
        graph = run_pass(graph)
    return graph


def run(
    traced: Graph,
    wrt: Sequence[int] | None = None,
    optimize: bool = True,
    transforms: Sequence[Pass] = (),
    checkpoint_policy="all",
    around_pass: Callable[[str], contextlib.AbstractContextManager] | None = None,
) -> Compilation:
    """Differentiate (when ``wrt`` gives input positions) and optimize ``traced``; ``transforms``
    are differentiating passes of the caller's (forward mode, VJPs) to run before the optimizing
    ones. The backward pass keeps or recomputes forward values as ``checkpoint_policy`` says
    (checkpoint.py). ``around_pass(name)``, when given, is a context each pass runs in (the
    linear-time test counts each pass's work in it)."""
    verify = os.environ.get("CHAINRULE_VERIFY") == "1"
    verified: tuple | None = None  # the last graph verified, as _contents gives it
    result = Compilation()
    result.graphs["traced"] = current = traced
    for stage, name, run_pass in _passes(wrt, optimize, transforms, checkpoint_policy):
        start = time.perf_counter()
        before = len(current)
        with around_pass(name) if around_pass is not None else contextlib.nullcontext():
            current = run_pass(current)
        result.passes.append(PassRecord(name, stage, time.perf_counter() - start, before, len(current), current))
        if verify:
            # most passes hand their graph on as it was (8 of 11 in a gradient): checking it again
            # was 6 of the 10 s verify took on a 100,000-node chain (tests/test_deep_graphs.py)
            contents = _contents(current)
            if contents != verified:
                current.verify()
                verified = contents
            if optimize and name in _AT_SIMPLIFY_FIXED_POINT:
                _, fired = rebuild(current, simplify_rule)
                assert not fired, f"after {name}, simplify still rewrites {fired} nodes: not a fixed point"
        result.graphs[stage] = current
    return result
