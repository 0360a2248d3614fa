"""A graph's generated source made a Python function: ``compile_graph`` and ``define``."""

from __future__ import annotations

import hashlib
import linecache
from collections.abc import Callable
from dataclasses import dataclass

from chainrule.backends.numpy.runtime import HELPERS
from chainrule.backends.numpy.source import generate_source
from chainrule.backends.numpy.text import identifier
from chainrule.ir import Graph
from chainrule.ir.npfuncs import NAMESPACE


@dataclass
class NumpyKernel:
    """A compiled graph: ``fn(*flat_inputs) -> tuple of outputs`` and its source text."""

    fn: Callable
    source: str
    filename: str


def compile_graph(graph: Graph, function_name: str | None = None) -> NumpyKernel:
    """``graph`` as a Python function of NumPy calls (see ``generate_source``)."""
    source, constants = generate_source(graph, function_name)
    fn, filename = define(source, function_name or graph.name, constants)
    return NumpyKernel(fn, source, filename)


def define(source: str, function_name: str, names: dict, label: str = "chainrule") -> tuple[Callable, str]:
    """Run generated ``source`` with NumPy, the backend's helpers and ``names`` in scope; the function
    it defines, and the file name it is registered under with ``linecache`` (so tracebacks and pdb
    show the generated lines)."""
    digest = hashlib.sha1(source.encode()).hexdigest()[:10]
    filename = f"<{label} {function_name} {digest}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace = dict(NAMESPACE)
    namespace.update(HELPERS)
    namespace.update(names)
    exec(compile(source, filename, "exec"), namespace)
    return namespace[identifier(function_name)], filename
