"""A graph's generated source made a Python function: ``compile_graph`` and ``define``."""

from __future__ import annotations

import hashlib
import linecache
import threading
import weakref
from collections.abc import Callable, Sequence
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


def compile_graph(
    graph: Graph, function_name: str | None = None, returned: Sequence[int | None] | None = None
) -> NumpyKernel:
    """``graph`` as a Python function of NumPy calls returning its outputs, or ``returned`` (see
    ``generate_source``)."""
    source, constants = generate_source(graph, function_name, returned)
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
    fn = namespace[identifier(function_name)]
    # The source stays in linecache while a function compiled from it lives, no longer: a program
    # that compiles and drops thousands of functions must not keep every source it ever ran.
    with _LINECACHE_LOCK:
        _LINECACHE_USERS[filename] = _LINECACHE_USERS.get(filename, 0) + 1
    weakref.finalize(fn, _forget_source, filename)
    return fn, filename


_LINECACHE_USERS: dict[str, int] = {}  # linecache file name -> live functions compiled from it
_LINECACHE_LOCK = threading.Lock()


def _forget_source(filename: str) -> None:
    with _LINECACHE_LOCK:
        users = _LINECACHE_USERS.pop(filename, 1) - 1
        if users:
            _LINECACHE_USERS[filename] = users
        else:
            linecache.cache.pop(filename, None)
