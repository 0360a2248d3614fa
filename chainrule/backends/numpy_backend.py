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
# Ops whose result may be a view of their first operand (or that operand itself).
_VIEWS = {"broadcast_to", "transpose", "reshape", "getitem", "stop_gradient"}
# np.where(condition, x, 0) runs far slower than a multiply once arrays outgrow the cache
# (~10x at 65536 float64s, NumPy 2.x); from this size on it is written as a bit mask.
_WHERE_MASK_MIN_SIZE = 16384
_INT_OF_SAME_SIZE = {"float64": np.int64, "float32": np.int32, "float16": np.int16}
# Locals at least this big are deleted after their last use. Smaller arrays come from the
# allocator's free lists whatever happens, so deleting them early saves nothing but lines.
_DEL_MIN_BYTES = 65536


def where_else_zero(condition, x):
    """``np.where(condition, x, 0)`` bit for bit (+0.0, NaN payloads kept), without where's branches.

    Each element of ``x`` is ANDed with all-ones bits where ``condition`` holds and
    with zero bits where it does not.
    """
    bits = condition.view(np.uint8).astype(_INT_OF_SAME_SIZE[x.dtype.name])
    np.negative(bits, out=bits)
    np.bitwise_and(bits, x.view(bits.dtype), out=bits)
    return bits.view(x.dtype)


# Helpers the generated code may call, besides the op table's own (chainrule.ir.npfuncs).
_HELPERS = {"where_else_zero": where_else_zero}


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
    namespace.update(_HELPERS)
    namespace.update(constants)
    exec(compile(source, filename, "exec"), namespace)
    return NumpyKernel(namespace[_identifier(function_name or graph.name)], source, filename)


def generate_source(graph: Graph, function_name: str | None = None) -> tuple[str, dict]:
    """Python source of ``graph`` and the constant arrays it refers to by name."""
    names = _Names()
    value_names: dict[int, str] = {}
    constants: dict[str, np.ndarray] = {}
    inline: dict[int, str] = {}
    freeable: dict[int, frozenset] = {}  # node -> the local arrays its text refers to (a .T refers to its operand's)
    for input_id in graph.inputs:
        value_names[input_id] = names.fresh(graph[input_id].name or f"in{input_id}")
    header = f"def {_identifier(function_name or graph.name)}({', '.join(value_names[i] for i in graph.inputs)}):"
    statements: list[tuple[str, frozenset]] = []  # each line and the local arrays it reads
    live = set(graph.live_nodes())
    outputs = set(graph.outputs)
    for node_id in range(len(graph)):
        node = graph[node_id]
        if node.op == "input" or node_id not in live:
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
        reads = frozenset().union(*(freeable.get(a, frozenset()) for a in node.args))
        if node.op == "transpose" and node.type.ndim == 2 and node_id not in outputs:
            inline[node_id] = f"{operands[0]}.T"  # written where it is used, as in dW = dZ @ A.T
            freeable[node_id] = reads
            continue
        expression = _special_form(graph, node, operands) or OPS[node.op].render(operands, node.params)
        value_names[node_id] = names.fresh(node.name or f"{node.op}{node_id}")
        if node.type.nbytes >= _DEL_MIN_BYTES:
            freeable[node_id] = frozenset((value_names[node_id],))
        statement = f"    {value_names[node_id]} = {expression}"
        comment = _comment(graph, node)
        statements.append((f"{statement.ljust(_COMMENT_COLUMN)}  # {comment}" if comment else statement, reads))
    returned, returned_arrays = [], set()
    for out, copy in zip(graph.outputs, _outputs_to_copy(graph)):
        text = inline.get(out) or value_names[out]
        returned.append(f"np.array({text}, dtype=np.{graph.type(out).dtype})" if copy else text)
        returned_arrays |= freeable.get(out, frozenset())
    lines = [header] + _with_early_dels(statements, returned_arrays)
    lines.append(f"    return ({', '.join(returned)}{',' if len(returned) == 1 else ''})")
    return "\n".join(lines) + "\n", constants


def _with_early_dels(statements: list[tuple[str, frozenset]], returned: set) -> list[str]:
    """The statements, each followed by a ``del`` of the arrays it was the last to read.

    A local keeps its array alive until the function returns; deleting it after its
    last use lets NumPy's allocator hand that memory to the next array instead of
    asking the OS for fresh pages (which costs more than the arithmetic on them).
    """
    last_read: dict[str, int] = {}
    for index, (_, reads) in enumerate(statements):
        for name in reads:
            last_read[name] = index
    dying: dict[int, list[str]] = {}
    for name, index in last_read.items():
        if name not in returned:
            dying.setdefault(index, []).append(name)
    lines = []
    for index, (line, _) in enumerate(statements):
        lines.append(line)
        if index in dying:
            lines.append(f"    del {', '.join(sorted(dying[index]))}")
    return lines


def _outputs_to_copy(graph: Graph) -> list[bool]:
    """Which outputs must be returned as copies.

    The caller owns what it gets back, so it must never receive (a view of) an
    input or a constant, a read-only broadcast, or an array another output also
    shares. A result computed in the function and viewed by nothing else is
    returned as it is: copying it would only cost time.
    """
    claimed, copies = set(), []
    for out in graph.outputs:
        root, broadcast = out, False
        while graph[root].op in _VIEWS:
            broadcast = broadcast or graph[root].op == "broadcast_to"
            root = graph[root].args[0]
        copies.append(broadcast or root in claimed or graph[root].op in ("input", "const"))
        claimed.add(root)
    return copies


def _special_form(graph: Graph, node, operands: list[str]) -> str | None:
    """A faster spelling than the op table's for a few patterns, computing the same bits; else None."""
    if node.op == "where" and node.type.size >= _WHERE_MASK_MIN_SIZE and node.type.dtype in _INT_OF_SAME_SIZE:
        # where(condition, x, 0): what relu', abs' and max' produce; bit for bit the same result
        condition, x, other = node.args
        zero = graph.const_value(other)
        if zero is not None and zero.size == 1 and not zero.any() and not np.signbit(zero).any() \
                and graph.type(condition).shape == node.type.shape and graph.type(condition).dtype == "bool" \
                and graph.type(x) == node.type:
            return f"where_else_zero({operands[0]}, {operands[1]})"
    return None


def _scalar_literal(graph: Graph, node_id: int) -> str | None:
    """A Python literal for a one-element float constant, when writing it as a number changes nothing.

    NumPy's weak scalars keep the other operands' dtype, so the literal is exact
    when every user is elementwise, its other value operands have the constant's
    dtype (a where's condition does not count: it is not promoted with the
    values), and they alone already give the user's shape (a constant of shape
    (1, 1) may be written as a number only where it does not add dimensions).
    """
    node = graph[node_id]
    value = node.params["value"].array
    if value.size != 1 or value.dtype.kind != "f" or node_id in graph.outputs:
        return None
    for user in graph.users(node_id):
        user_node = graph[user]
        if not OPS[user_node.op].is_elementwise:
            return None
        if user_node.op == "where":
            if user_node.args[0] == node_id:
                return None
            condition, values = user_node.args[:1], user_node.args[1:]
        else:
            condition, values = (), user_node.args
        others = [a for a in values if a != node_id]
        if not others or any(graph.type(a).dtype != value.dtype.name for a in others):
            return None
        shapes = [graph.type(a).shape for a in (*condition, *others)]
        if np.broadcast_shapes(*shapes) != user_node.type.shape:
            return None
    return _float_literal(float(value.reshape(())))


def _float_literal(number: float) -> str:
    if np.isnan(number):
        return "np.nan"
    if np.isinf(number):
        return "np.inf" if number > 0 else "-np.inf"
    return repr(number)


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
        self.taken = set(NAMESPACE) | set(_HELPERS) | {"np"}
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
