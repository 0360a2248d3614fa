"""What every writer of NumPy source shares: names, comments, literals, early ``del``s, output copies.

``generate_source`` (``source.py``) and the ``check_nans`` kernel (``backends/nan_check.py``)
render the same graphs two ways; both name values, comment lines and write constants as here.
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Iterator, Sequence
from collections.abc import Set as AbstractSet

import numpy as np

from chainrule.backends.numpy.runtime import HELPERS, INT_OF_SAME_SIZE
from chainrule.errors import Loc
from chainrule.ir import OPS, Graph, Node, TensorType
from chainrule.ir.npfuncs import NAMESPACE

COMMENT_COLUMN = 48
# np.where(condition, x, 0) runs far slower than a multiply once arrays outgrow the cache
# (~10x at 65536 float64s, NumPy 2.x); from this size on it is written as a bit mask.
WHERE_MASK_MIN_SIZE = 16384
# What a derivative line says it differentiates: the forward op, its value's name and its loc.
Origin = tuple[str, str | None, Loc | None]


def with_comment(line: str, comment: str) -> str:
    """A statement of the function's body, indented, with its comment (if any) at the comment column."""
    if not comment:
        return f"    {line}"
    return f"    {line}".ljust(COMMENT_COLUMN) + f"  # {comment}"


def line_comment(graph: Graph, loc: Loc | None, origin: int | None, described: dict[Origin, str] | None = None) -> str:
    """A line's comment (describe_line). ``described``, if given, remembers a derivative's per forward
    op, name and loc, all it names: the derivatives of one source line's forward nodes read alike."""
    if origin is None:
        return describe_line(loc, None)
    forward = graph.nodes[origin]
    op = forward.params["body"].root[0] if forward.op == "fused" else forward.op
    if described is None:
        return describe_line(loc, (op, forward.name, forward.loc))
    key = (op, forward.name, forward.loc)
    text = described.get(key)
    if text is None:
        text = described[key] = describe_line(loc, key)
    return text


def describe_line(loc: Loc | None, origin: Origin | None) -> str:
    """``d relu A1 at model.py:5`` for a backward line (origin = the forward op, name, loc), else the loc."""
    if origin is not None:
        op, name, forward_loc = origin
        return f"d {op}{f' {name}' if name else ''}{f' at {forward_loc}' if forward_loc else ''}"
    return str(loc) if loc else ""


class Names:
    """Unique Python identifiers from name hints: ``p.W1`` -> ``p_W1``, a second ``A`` -> ``A_2``."""

    def __init__(self) -> None:
        self.taken = set(NAMESPACE) | set(HELPERS) | {"np"}
        self.counts: dict[str, int] = {}

    def fresh(self, hint: str) -> str:
        base = identifier(hint)
        if base not in self.taken:  # the usual case: the hint's first use
            self.taken.add(base)
            return base
        name, count = base, self.counts.get(base, 1)
        while name in self.taken:
            count += 1
            name = f"{base}_{count}"
        self.counts[base] = count
        self.taken.add(name)
        return name


def identifier(hint: str) -> str:
    """A Python identifier for a name hint (``p.W1`` -> ``p_W1``), not private-looking, not a keyword."""
    if hint.isidentifier() and hint[0] != "_" and hint[-1] != "_" and not keyword.iskeyword(hint):
        return hint  # the usual case, and what the rules below leave as it is
    name = re.sub(r"\W+", "_", hint).strip("_") or "v"
    if name[0].isdigit() or keyword.iskeyword(name):
        name = f"v_{name}"
    return name


def parenthesize(text: str, op: str) -> str:
    """A literal or operand text as it may stand as an operand: ``(-1.0)``, ``(1e-08)``."""
    if text.startswith("-") or (op == "const" and "e" in text):
        return f"({text})"
    return text


def scalar_literal(graph: Graph, node_id: int) -> str | None:
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
    dtype = value.dtype.name
    checked = set()  # a constant such as 1.0 has thousands of uses, of a few kinds: each kind is checked once
    for use in _elementwise_uses(graph, node_id):
        if use in checked:
            continue
        checked.add(use)
        op, mine, types, shape, literals = use
        if op is None or not OPS[op].is_elementwise or (op == "where" and mine[0]):
            return None
        condition = types[:1] if op == "where" else ()
        values = types[1:] if op == "where" else types
        # an operand written as a literal too fixes no dtype: np.where(m, 1.0, 0.0) is float64
        fixes_dtype = [not literal or dtype == "float64" for literal in literals[len(condition) :]]
        others = [t for t, is_mine, fixes in zip(values, mine[len(condition) :], fixes_dtype) if not is_mine and fixes]
        if not others or any(t.dtype != dtype for t in others):
            return None
        if np.broadcast_shapes(*(t.shape for t in (*condition, *others))) != shape:
            return None
    return _float_literal(float(value.reshape(())))


def _elementwise_uses(
    graph: Graph, node_id: int
) -> Iterator[tuple[str | None, tuple[bool, ...], tuple[TensorType, ...], tuple[int, ...], tuple[bool, ...]]]:
    """Each use of a value: (op, which operands are the value, operand types, result shape, which
    operands may be written as literals), as tuples (so equal uses compare equal). A use inside a fused node is the step that reads it; op
    is None for a use by no op at all."""
    nodes = graph.nodes
    for user in graph.users_index()[node_id]:
        user_node = nodes[user]
        if user_node.op != "fused":
            yield (
                user_node.op,
                tuple([a == node_id for a in user_node.args]),
                tuple([nodes[a].type for a in user_node.args]),
                user_node.type.shape,
                tuple([_may_be_literal(nodes[a]) for a in user_node.args]),
            )
            continue
        steps = user_node.params["body"].steps
        positions = {-p - 1 for p, a in enumerate(user_node.args) if a == node_id}
        for op, operands, _, step_type in steps:
            if positions.intersection(operands):
                yield (
                    op,
                    tuple([k in positions for k in operands]),
                    tuple([steps[k][3] if k >= 0 else graph.type(user_node.args[-k - 1]) for k in operands]),
                    step_type.shape,
                    tuple([k < 0 and _may_be_literal(nodes[user_node.args[-k - 1]]) for k in operands]),
                )


def _may_be_literal(node: Node) -> bool:
    return node.op == "const" and node.type.size == 1


def _float_literal(number: float) -> str:
    if np.isnan(number):
        return "np.nan"
    if np.isinf(number):
        return "np.inf" if number > 0 else "-np.inf"
    return repr(number)


def special_form(graph: Graph, node: Node, operands: list[str]) -> str | None:
    """A faster spelling than the op table's for a few patterns, computing the same bits; else None."""
    if node.op == "where":
        condition, x, other = node.args
        return where_else_zero_text(node.type, graph.type(condition), graph.type(x), graph.const_value(other), operands)
    return None


def where_else_zero_text(
    out_type: TensorType, condition_type: TensorType, x_type: TensorType, zero: np.ndarray | None, operands: list[str]
) -> str | None:
    """where(condition, x, 0), what relu', abs' and max' produce, as where_else_zero when big enough
    for the mask to pay: bit for bit the same result."""
    if (
        out_type.size >= WHERE_MASK_MIN_SIZE
        and out_type.dtype in INT_OF_SAME_SIZE
        and zero is not None
        and zero.size == 1
        and not zero.any()
        and not np.signbit(zero).any()
        and condition_type.shape == out_type.shape
        and condition_type.dtype == "bool"
        and x_type == out_type
    ):
        return f"where_else_zero({operands[0]}, {operands[1]})"
    return None


def outputs_to_copy(graph: Graph, outputs: Sequence[int] | None = None) -> list[bool]:
    """Which outputs (``graph``'s, or the ``outputs`` returned instead) must be returned as copies.

    The caller owns what it gets back, so it must never receive (a view of) an
    input or a constant, a read-only broadcast, or an array another output also
    shares. A result computed in the function and viewed by nothing else is
    returned as it is: copying it would only cost time.
    """
    claimed, copies = set(), []
    for out in graph.outputs if outputs is None else outputs:
        root, broadcast = out, False
        while OPS[graph[root].op].view:  # a view of its operand, or the operand itself
            broadcast = broadcast or graph[root].op == "broadcast_to"
            root = graph[root].args[0]
        copies.append(broadcast or root in claimed or graph[root].op in ("input", "const"))
        claimed.add(root)
    return copies


def with_early_dels(statements: Sequence[tuple[str, AbstractSet[str]]], returned: AbstractSet[str]) -> list[str]:
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
    lines, start = [], 0
    for index in sorted(dying):  # the statements up to this one, then its del
        lines += [line for line, _ in statements[start : index + 1]]
        lines.append(f"    del {', '.join(sorted(dying[index]))}")
        start = index + 1
    lines += [line for line, _ in statements[start:]]
    return lines
