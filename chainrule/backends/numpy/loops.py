"""Loop bodies and branches (``chainrule.ir.control``) run as generated NumPy functions.

A ``loop`` node's lowering calls ``run_loop``, which calls its body once per step; the body is
compiled here, once, like any graph.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chainrule.backends.numpy.kernel import compile_graph
from chainrule.ir import Graph
from chainrule.ir.control import set_step_compiler


def compile_step(graph: Graph) -> Callable[..., tuple[Any, ...]]:
    """``graph`` (a loop body or a branch) as a function of arrays returning a tuple."""
    step: Callable[..., tuple[Any, ...]] = compile_graph(graph, graph.name).fn
    return step


set_step_compiler(compile_step)
