"""The NumPy backend: a graph becomes one Python function of straight-line NumPy calls.

The source is meant to be read: values keep the user's variable names
(``Z1``, ``A1``), cotangents are ``dZ1``, one statement a line, and each
backward line says which forward op it differentiates. It is registered with
``linecache``, so tracebacks and pdb show the generated lines.
"""

from __future__ import annotations

import hashlib
import keyword
import linecache
import re
from dataclasses import dataclass
from typing import Callable

import numpy as np

from chainrule.ir import OPS, Graph
from chainrule.ir.npfuncs import NAMESPACE

_COMMENT_COLUMN = 48
# Ops whose result may be a view of (or be) another array: a returned value must be copied,
# so callers never receive an alias of their input or a read-only broadcast.
_MAY_ALIAS = {"input", "const", "broadcast_to", "transpose", "reshape", "getitem", "stop_gradient"}


@dataclass
class NumpyKernel:
    """A compiled graph: ``fn(*flat_inputs) -> tuple of outputs`` and its source text."""

    fn: Callable
    source: str
    filename: str


def compile_graph(graph: Graph, function_name: str | None = None) -> NumpyKernel:
    source, constants = generate_source(graph, function_name)
    digest = hashlib.sha1(source.encode()).hexdigest()[:10]
    filename = f"<chainrule {function_name or graph.name} {digest}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace = dict(NAMESPACE)
    namespace.update(constants)
    exec(compile(source, filename, "exec"), namespace)
    return NumpyKernel(namespace[_identifier(function_name or graph.name)], source, filename)


def generate_source(graph: Graph, function_name: str | None = None) -> tuple[str, dict]:
    """Python source of ``graph`` and the constant arrays it refers to by name."""
    names = _Names()
    value_names: dict[int, str] = {}
    constants: dict[str, np.ndarray] = {}
    inline: dict[int, str] = {}
    for input_id in graph.inputs:
        value_names[input_id] = names.fresh(graph[input_id].name or f"in{input_id}")
    lines = [f"def {_identifier(function_name or graph.name)}({', '.join(value_names[i] for i in graph.inputs)}):"]
    used = _use_counts(graph)
    for node_id in range(len(graph)):
        node = graph[node_id]
        if node.op == "input" or not used[node_id]:
            continue
        if node.op == "const":
            literal = _scalar_literal(graph, node_id)
            if literal is not None:
                inline[node_id] = literal
                continue
            value_names[node_id] = names.fresh(node.name or f"const{node_id}")
            constants[value_names[node_id]] = node.params["value"].array
            continue
        operands = [inline.get(a) or value_names[a] for a in node.args]
        operands = [_parenthesize(text, graph[a].op) for text, a in zip(operands, node.args)]
        expression = OPS[node.op].render(operands, node.params)
        value_names[node_id] = names.fresh(node.name or f"{node.op}{node_id}")
        statement = f"    {value_names[node_id]} = {expression}"
        comment = _comment(graph, node)
        lines.append(f"{statement.ljust(_COMMENT_COLUMN)}  # {comment}" if comment else statement)
    returned = []
    for out in graph.outputs:
        text = inline.get(out) or value_names[out]
        if graph[out].op in _MAY_ALIAS:
            text = f"np.array({text}, dtype=np.{graph.type(out).dtype})"
        returned.append(text)
    lines.append(f"    return ({', '.join(returned)}{',' if len(returned) == 1 else ''})")
    return "\n".join(lines) + "\n", constants


def _use_counts(graph: Graph) -> list[int]:
    live = set(graph.live_nodes())
    used = [0] * len(graph)
    for node_id in live:
        used[node_id] = 1
    return used


def _scalar_literal(graph: Graph, node_id: int) -> str | None:
    """A Python literal for a scalar float constant, when NumPy's weak scalars keep the dtype exact."""
    node = graph[node_id]
    value = node.params["value"].array
    if value.ndim != 0 or value.dtype.kind != "f":
        return None
    users = graph.users(node_id)
    for user in users:
        user_node = graph[user]
        others = [a for a in user_node.args if a != node_id]
        condition = user_node.op == "where" and user_node.args[0] == node_id
        if not OPS[user_node.op].is_elementwise or condition or not others \
                or any(graph.type(a).dtype != value.dtype.name for a in others):
            return None
    if node_id in graph.outputs:
        return None
    return repr(float(value))


def _parenthesize(text: str, op: str) -> str:
    if text.startswith("-") or (op == "const" and "e" in text):
        return f"({text})"
    return text


def _comment(graph: Graph, node) -> str:
    if node.origin is not None:
        forward = graph[node.origin]
        where = f" at {forward.loc}" if forward.loc else ""
        subject = f" {forward.name}" if forward.name else ""
        return f"d {forward.op}{subject}{where}"
    return str(node.loc) if node.loc else ""


class _Names:
    """Unique Python identifiers from name hints: ``p.W1`` -> ``p_W1``, a second ``A`` -> ``A_2``."""

    def __init__(self):
        self.taken = set(NAMESPACE) | {"np"}
        self.counts: dict[str, int] = {}

    def fresh(self, hint: str) -> str:
        base = _identifier(hint)
        name, count = base, self.counts.get(base, 1)
        while name in self.taken:
            count += 1
            name = f"{base}_{count}"
        self.counts[base] = count
        self.taken.add(name)
        return name


def _identifier(hint: str) -> str:
    name = re.sub(r"\W+", "_", hint).strip("_") or "v"
    if name[0].isdigit() or keyword.iskeyword(name):
        name = f"v_{name}"
    return name
