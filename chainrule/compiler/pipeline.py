"""The ordered, named stages a function goes through, each a ``Graph -> Graph`` pass.

Every stage's graph is kept so users can print the IR after any of them.
Set ``CHAINRULE_VERIFY=1`` (the test suite does) to verify the graph after every pass.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Optional, Sequence

from chainrule.compiler.autodiff import reverse
from chainrule.compiler.dce import dce
from chainrule.ir import Graph

STAGES = ("traced", "grad", "scheduled")


@dataclass
class Compilation:
    """The graph after each stage, and how long each pass took."""

    graphs: dict[str, Graph] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def final(self) -> Graph:
        return self.graphs[STAGES[-1]]


def run(traced: Graph, wrt: Optional[Sequence[int]] = None) -> Compilation:
    """Differentiate (when ``wrt`` gives input positions) and optimize ``traced``."""
    verify = os.environ.get("CHAINRULE_VERIFY") == "1"
    result = Compilation()
    result.graphs["traced"] = traced
    current = traced
    passes = []
    if wrt is not None:
        passes.append(("grad", lambda g: reverse(g, wrt)))
    passes.append(("scheduled", dce))
    for stage, run_pass in passes:
        start = time.perf_counter()
        current = run_pass(current)
        result.seconds[stage] = time.perf_counter() - start
        if verify:
            current.verify()
        result.graphs[stage] = current
    return result
