"""The NumPy backend: a graph becomes one Python function of straight-line NumPy calls.

The source is meant to be read: values keep the user's variable names
(``Z1``, ``A1``), cotangents are ``dZ1``, one statement a line, and each
backward line says which forward op it differentiates. It is registered with
``linecache``, so tracebacks and pdb show the generated lines.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import keyword
import linecache
import re
from dataclasses import dataclass
from typing import Callable

import numpy as np

from chainrule.ir import OPS, Graph
from chainrule.ir.fused import plan_buffers
from chainrule.ir.npfuncs import NAMESPACE
from chainrule.ir.types import EARLY_FREE_MIN_BYTES

_COMMENT_COLUMN = 48
# Ops whose result may be a view of their first operand (or that operand itself).
_VIEWS = {"broadcast_to", "transpose", "reshape", "getitem", "stop_gradient"}
# np.where(condition, x, 0) runs far slower than a multiply once arrays outgrow the cache
# (~10x at 65536 float64s, NumPy 2.x); from this size on it is written as a bit mask.
_WHERE_MASK_MIN_SIZE = 16384
_INT_OF_SAME_SIZE = {"float64": np.int64, "float32": np.int32, "float16": np.int16}
# How much of an expression a value read once may be inlined into before it gets its own line.
_MAX_INLINE_DEPTH = 4
_MAX_INLINE_LENGTH = 60
# Fused regions this big (elements) run step by step in place (out=): allocating a fresh array per
# step costs page faults from about 20,000 float64s on (6-10x slower here). Smaller ones are
# written as nested expressions, which read better and run as fast.
_OUT_MIN_SIZE = 1024


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

# How a fused step writes its result over an existing buffer: the ufunc and its out= argument.
# Each computes exactly what the op's own lowering computes.
_UFUNCS = {
    "neg": "np.negative", "abs": "np.absolute", "sign": "np.sign", "exp": "np.exp", "expm1": "np.expm1",
    "log": "np.log", "log1p": "np.log1p", "sqrt": "np.sqrt", "sin": "np.sin", "cos": "np.cos", "tan": "np.tan",
    "sinh": "np.sinh", "cosh": "np.cosh", "tanh": "np.tanh", "arcsin": "np.arcsin", "arccos": "np.arccos",
    "arctan": "np.arctan", "arcsinh": "np.arcsinh", "arccosh": "np.arccosh", "arctanh": "np.arctanh",
    "erf": "special.erf", "sigmoid": "special.expit", "add": "np.add", "sub": "np.subtract",
    "mul": "np.multiply", "div": "np.divide", "pow": "np.power", "maximum": "np.maximum",
    "minimum": "np.minimum", "lt": "np.less", "le": "np.less_equal", "gt": "np.greater",
    "ge": "np.greater_equal", "eq": "np.equal", "ne": "np.not_equal", "logical_and": "np.logical_and",
    "logical_or": "np.logical_or", "logical_not": "np.logical_not", "clip": "np.clip",
}
_IN_PLACE_TEMPLATES = {"softplus": "np.logaddexp(0, {0}, out={out})", "relu": "np.maximum({0}, 0, out={out})"}


@dataclass
class NumpyKernel:
    """A compiled graph: ``fn(*flat_inputs) -> tuple of outputs`` and its source text."""

    fn: Callable
    source: str
    filename: str


def compile_graph(graph: Graph, function_name: str | None = None) -> NumpyKernel:
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
    namespace.update(_HELPERS)
    namespace.update(names)
    exec(compile(source, filename, "exec"), namespace)
    return namespace[_identifier(function_name)], filename


def generate_source(graph: Graph, function_name: str | None = None) -> tuple[str, dict]:
    """Python source of ``graph`` and the constant arrays it refers to by name."""
    # The loop below runs once per node, on graphs of 100,000 nodes and more, so what depends only on
    # an op (_lowering, _needs_parentheses) or on a source line (the comments) is worked out once;
    # the usual node (an op's template, filled in) takes the first branch.
    nodes = graph.nodes
    names = _Names()
    value_names: dict[int, str] = {}
    constants: dict[str, np.ndarray] = {}
    # node -> the text it is written as where it is read (an expression, a literal, x.T); its op, or
    # None when the text reads the same as any operand (a call such as np.sin(a * b), or a literal
    # already parenthesized if it must be: (-1.0)); and how deep that expression nests inlined
    # ones (0: not an expression of its own)
    inline: dict[int, tuple[str, str | None, int]] = {}
    freeable: dict[int, frozenset] = {}  # node -> the local arrays its text refers to (a .T refers to its operand's)
    for input_id in graph.inputs:
        value_names[input_id] = names.fresh(nodes[input_id].name or f"in{input_id}")
    header = f"def {_identifier(function_name or graph.name)}({', '.join(value_names[i] for i in graph.inputs)}):"
    statements: list[tuple[str, frozenset]] = []  # each line and the local arrays it reads
    use_counts = _use_counts(graph)
    outputs = set(graph.outputs)
    # Each line's comment, remembered per origin (a derivative's names its forward node alone), else
    # per loc; and the texts of derivatives per what they name (see _comment).
    comments: dict[object, str] = {}
    described: dict[tuple, str] = {}
    # the live nodes (those read: see _use_counts), in id order: operands before users
    for node_id in itertools.compress(range(len(nodes)), use_counts):
        node = nodes[node_id]
        op = node.op
        operands = []
        nesting = 1  # how deep this node's expression nests the inlined ones it reads
        for a in node.args:
            if a in inline:
                text, inner_op, inner_depth = inline[a]
                if inner_op is not None:  # an expression read once: node.args.index(a) is where it stands
                    text = _operand_text(text, inner_op, op, node.args.index(a))
                operands.append(text)
                if inner_depth >= nesting:
                    nesting = inner_depth + 1
            else:
                operands.append(value_names[a])
        reads = _NOTHING
        if freeable:  # (empty while every value is too small to be freed early)
            for a in node.args:
                if a in freeable:
                    reads = reads | freeable[a]
        printf, elementwise, renders_as_call = _lowering(op)
        if printf is not None and not node.attrs:  # most nodes: the op's template, filled in
            expression = printf % tuple(operands)
        elif op == "input":
            continue
        elif op == "const":
            literal = _scalar_literal(graph, node_id)
            if literal is not None:
                inline[node_id] = (_parenthesize(literal, op), None, 0)
                continue
            value_names[node_id] = names.fresh(node.name or f"const{node_id}")
            constants[value_names[node_id]] = node.params["value"].array
            continue
        elif op == "stop_gradient" and node_id not in outputs:
            # the identity once differentiated: no line of its own
            inline[node_id] = (_parenthesize(operands[0], op), None, 0)
            freeable[node_id] = reads
            continue
        elif op == "transpose" and node_id not in outputs and node.type.ndim == 2:
            # written where it is used, as in dW = dZ @ A.T
            inline[node_id] = (_parenthesize(f"{operands[0]}.T", op), None, 0)
            freeable[node_id] = reads
            continue
        elif op == "where":
            expression = _special_form(graph, node, operands) or OPS[op].render(operands, dict(node.attrs))
        elif op == "fused":
            expression = None  # a statement per step (_fused_lines); not elementwise, so never inlined
        else:
            expression = OPS[op].render(operands, dict(node.attrs))
        if elementwise and use_counts[node_id] == 1 and not node.name and not reads \
                and node_id not in outputs and not node.recomputed \
                and node.type.nbytes < EARLY_FREE_MIN_BYTES \
                and nesting <= _MAX_INLINE_DEPTH and len(expression) <= _MAX_INLINE_LENGTH:
            # a small unnamed value read once is written where it is read (``-(g * np.sin(t))``):
            # fewer lines to read, and to compile (a statement costs Python's compiler ~7 µs)
            inline[node_id] = (expression, None if renders_as_call else op, nesting)
            continue
        op_name = node.params["body"].root[0] if op == "fused" else op
        value_name = names.fresh(node.name or f"{op_name}{node_id}")
        value_names[node_id] = value_name
        if node.type.nbytes >= EARLY_FREE_MIN_BYTES:  # the memory plan's rule too
            freeable[node_id] = frozenset((value_name,))
        if op == "fused":
            for line, comment in _fused_lines(graph, node, operands, value_name, names):
                statements.append((_with_comment(line, comment), _NOTHING))
            statements[-1] = (statements[-1][0], reads)
        else:
            comment_key = node.loc if node.origin is None else node.origin
            comment = comments.get(comment_key)
            if comment is None:
                comment = comments[comment_key] = _comment(graph, node.loc, node.origin, described)
            if node.recomputed:
                comment = f"recomputed{', ' if comment else ''}{comment}"
            statements.append((_with_comment(f"{value_name} = {expression}", comment), reads))
    returned, returned_arrays = [], set()
    for out, copy in zip(graph.outputs, _outputs_to_copy(graph)):
        text = value_names[out]  # (an output is never inlined)
        returned.append(f"np.array({text}, dtype=np.{graph.type(out).dtype})" if copy else text)
        returned_arrays |= freeable.get(out, frozenset())
    if freeable:
        lines = [header] + _with_early_dels(statements, returned_arrays)
    else:  # no array is big enough to be freed early: no statement reads one
        lines = [header] + [line for line, _ in statements]
    lines.append(f"    return ({', '.join(returned)}{',' if len(returned) == 1 else ''})")
    return "\n".join(lines) + "\n", constants


def _with_comment(line: str, comment: str) -> str:
    """A statement of the function's body, indented, with its comment (if any) at the comment column."""
    if not comment:
        return f"    {line}"
    return f"    {line}".ljust(_COMMENT_COLUMN) + f"  # {comment}"


def _use_counts(graph: Graph) -> list[int]:
    """How often each value is read by the live nodes (``x * x`` reads x twice) and the outputs:
    nonzero exactly for the live nodes but unread inputs. One sweep from the last node to the
    first finds them all (a user's id is greater than its operands')."""
    nodes = graph.nodes
    counts = [0] * len(nodes)
    for out in graph.outputs:
        counts[out] += 1
    for node_id in range(len(nodes) - 1, -1, -1):
        if counts[node_id]:
            for a in nodes[node_id].args:
                counts[a] += 1
    return counts


def _operand_text(text: str, op: str, user_op: str, position: int) -> str:
    """An inlined expression of ``op`` (not a call) as operand ``position`` of ``user_op``,
    parenthesized where Python's precedence needs it: ``a * b * c``, but ``(1.0 + y) * g``."""
    parenthesized = _needs_parentheses(op, user_op, position)
    if parenthesized is None:  # only the text can tell
        parenthesized = not _is_call(text) and not _binds_tighter(op, user_op, position)
    return f"({text})" if parenthesized else text


@functools.lru_cache(maxsize=None)
def _needs_parentheses(op: str, user_op: str, position: int) -> bool | None:
    """Does ``_operand_text`` parenthesize every expression of ``op`` there? None when that depends
    on the text. Decided once per combination: a graph has many expressions, few combinations."""
    renders_as_call = _renders_as_call(op)
    if _inside_call_parentheses(user_op, position) or renders_as_call:
        return False
    if renders_as_call is None:
        return None  # a lowering in code: a call needs no parentheses, anything else may
    return not _binds_tighter(op, user_op, position)


def _binds_tighter(op: str, user_op: str, position: int) -> bool:
    """Does the expression of ``op`` bind tightly enough to be operand ``position`` of ``user_op``
    without parentheses (``a * b * c``, ``-a * b``)?"""
    inner, outer = _PRECEDENCE.get(op), _PRECEDENCE.get(user_op)
    return inner is not None and outer is not None and user_op != "neg" \
        and (inner > outer or (inner == outer and position == 0))


_NOTHING = frozenset()


# Ops generate_source writes otherwise than by their template, at least sometimes: _lowering gives
# them no printf template, so they take generate_source's own branches.
_WRITTEN_THEIR_OWN_WAY = {"stop_gradient", "transpose", "where"}


@functools.lru_cache(maxsize=None)
def _lowering(op: str) -> tuple[str | None, bool, bool | None]:
    """What generate_source asks of each node's op, asked once per op: its template in printf style
    (``np.sin(%s)``) when it names each operand once, in order, and nothing else (else None),
    whether it is elementwise, and _renders_as_call. ``template % operands`` is what ``Op.render``
    computes for such an op without attributes, and Python fills it in faster than ``str.format``."""
    definition = OPS[op]
    template, printf = definition.numpy, None
    if op not in _WRITTEN_THEIR_OWN_WAY and isinstance(template, str) and definition.arity is not None \
            and "%" not in template and "{{" not in template and "}}" not in template \
            and re.findall(r"\{[^{}]*\}", template) == ["{%d}" % i for i in range(definition.arity)]:
        printf = re.sub(r"\{\d+\}", "%s", template)
    return printf, definition.is_elementwise, _renders_as_call(op)


_PRECEDENCE = {"add": 1, "sub": 1, "mul": 2, "div": 2, "neg": 3}


@functools.lru_cache(maxsize=None)
def _renders_as_call(op: str) -> bool | None:
    """Is every rendering of ``op`` one call (``np.sin({0})``)? None when its lowering is code, not
    a template: then only the text can tell."""
    template = OPS[op].numpy
    if not isinstance(template, str):
        return None
    return _is_call(re.sub(r"\{[^{}]*\}", "x", template))


@functools.lru_cache(maxsize=None)
def _inside_call_parentheses(op: str, position: int) -> bool:
    """Does ``op``'s template put operand ``position`` alone between a call's ``(`` or ``,`` and
    ``)`` or ``,`` (so any expression can stand there as it is)?"""
    template = OPS[op].numpy
    if not isinstance(template, str):
        return False
    placeholder = "{%d}" % position
    at = template.find(placeholder)
    if at < 0 or template.count(placeholder) != 1:
        return False
    before, after = template[:at].rstrip(), template[at + len(placeholder):].lstrip()
    return before.endswith(("(", ",")) and after.startswith((")", ","))


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
    lines, start = [], 0
    for index in sorted(dying):  # the statements up to this one, then its del
        lines += [line for line, _ in statements[start:index + 1]]
        lines.append(f"    del {', '.join(sorted(dying[index]))}")
        start = index + 1
    lines += [line for line, _ in statements[start:]]
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
    if node.op == "where":
        condition, x, other = node.args
        return _where_else_zero(node.type, graph.type(condition), graph.type(x), graph.const_value(other), operands)
    return None


def _where_else_zero(out_type, condition_type, x_type, zero, operands: list[str]) -> str | None:
    """where(condition, x, 0), what relu', abs' and max' produce, as where_else_zero when big enough
    for the mask to pay: bit for bit the same result."""
    if out_type.size >= _WHERE_MASK_MIN_SIZE and out_type.dtype in _INT_OF_SAME_SIZE \
            and zero is not None and zero.size == 1 and not zero.any() and not np.signbit(zero).any() \
            and condition_type.shape == out_type.shape and condition_type.dtype == "bool" and x_type == out_type:
        return f"where_else_zero({operands[0]}, {operands[1]})"
    return None


def _fused_lines(graph: Graph, node, operands: list[str], value_name: str, names: "_Names") -> list[str]:
    """A fused node as one statement per step, each writing into a buffer that ``plan_buffers``
    picked (``out=``), so the region allocates its result and few temporaries, not one per step."""
    body = node.params["body"]
    steps = body.steps
    if steps[0][3].size < _OUT_MIN_SIZE:
        return _fused_expression_lines(graph, node, operands, value_name, names)
    plan = plan_buffers(body)
    result_buffer = plan.buffer[-1]
    buffer_names = [value_name if b == result_buffer else names.fresh(f"{value_name}_t")
                    for b in range(len(plan.types))]
    lines = []
    for index, (op, step_operands, attrs, step_type) in enumerate(steps):
        texts = [buffer_names[plan.buffer[k]] if k >= 0 else operands[-k - 1] for k in step_operands]
        attrs = dict(attrs)
        comment = _step_comment(graph, node, index)
        if plan.buffer[index] < 0:  # the final reduction
            lines.append((f"{value_name} = {OPS[op].render(texts, attrs)}", comment))
            continue
        target = buffer_names[plan.buffer[index]]
        if plan.writes_over[index] and op in _UFUNCS:
            lines.append((f"{_UFUNCS[op]}({', '.join(texts)}, out={target})", comment))
        elif plan.writes_over[index] and op in _IN_PLACE_TEMPLATES:
            lines.append((_IN_PLACE_TEMPLATES[op].format(*texts, out=target), comment))
        else:
            special = _where_else_zero_form(graph, node, op, step_operands, step_type, texts)
            lines.append((f"{target} = {special or OPS[op].render(texts, attrs)}", comment))
    temporaries = [name for name in buffer_names if name != value_name]
    if temporaries:
        lines.append((f"del {', '.join(temporaries)}", ""))
    return lines


def _step_comment(graph: Graph, node, index: int) -> str:
    meta = node.params["body"].meta
    if index >= len(meta):
        return _comment(graph, node.loc, node.origin)
    _, loc, origin = meta[index]
    return _describe_line(loc, origin)


def _fused_expression_lines(graph: Graph, node, operands: list[str], value_name: str,
                            names: "_Names") -> list[tuple[str, str]]:
    """A small fused node as nested expressions; a step used twice gets a statement of its own."""
    body = node.params["body"]
    counts = body.use_counts()
    texts, lines = [], []
    for index, (op, step_operands, attrs, _) in enumerate(body.steps):
        arguments = [texts[k] if k >= 0 else operands[-k - 1] for k in step_operands]
        arguments = [f"({text})" if k >= 0 and counts[k] == 1 and not _is_call(text) else text
                     for text, k in zip(arguments, step_operands)]
        text = OPS[op].render(arguments, dict(attrs))
        is_last = index == len(body.steps) - 1
        if not is_last and (counts[index] > 1 or body.name(index)):
            # a step used twice, or one the user named (dA), gets a statement of its own
            name = names.fresh(body.name(index) or f"{value_name}_t")
            lines.append((f"{name} = {text}", _step_comment(graph, node, index)))
            text = name
        texts.append(text)
    lines.append((f"{value_name} = {texts[-1]}", _step_comment(graph, node, len(body.steps) - 1)))
    return lines


def _is_call(text: str) -> bool:
    """Is ``text`` one name or one call (``np.exp(x)``, ``x.sum(...)``), which never needs parentheses
    as an operand?"""
    name = re.match(r"[\w.]+", text)
    if name is None:
        return False
    arguments = text[name.end():]
    depth = 0
    for position, char in enumerate(arguments):
        depth += (char == "(") - (char == ")")
        if depth == 0:  # the first parenthesis closes here: a call only if that is the end
            return char == ")" and position == len(arguments) - 1
    return not arguments


def _where_else_zero_form(graph: Graph, node, op: str, step_operands, step_type, texts) -> str | None:
    """A fused where step as where_else_zero (see _special_form)."""
    if op != "where":
        return None
    steps = node.params["body"].steps
    condition, x, other = ([steps[k][3] if k >= 0 else graph.type(node.args[-k - 1]) for k in step_operands])
    zero = graph.const_value(node.args[-step_operands[2] - 1]) if step_operands[2] < 0 else None
    return _where_else_zero(step_type, condition, x, zero, texts)


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
    dtype = value.dtype.name
    checked = set()  # a constant such as 1.0 has thousands of uses, of a few kinds: each kind is checked once
    for use in _elementwise_uses(graph, node_id):
        if use in checked:
            continue
        checked.add(use)
        op, mine, types, shape = use
        if op is None or not OPS[op].is_elementwise or (op == "where" and mine[0]):
            return None
        condition = types[:1] if op == "where" else ()
        values = types[1:] if op == "where" else types
        others = [t for t, is_mine in zip(values, mine[len(condition):]) if not is_mine]
        if not others or any(t.dtype != dtype for t in others):
            return None
        if np.broadcast_shapes(*(t.shape for t in (*condition, *others))) != shape:
            return None
    return _float_literal(float(value.reshape(())))


def _elementwise_uses(graph: Graph, node_id: int):
    """Each use of a value: (op, which operands are the value, operand types, result shape), as
    tuples (so equal uses compare equal). A use inside a fused node is the step that reads it; op
    is None for a use by no op at all."""
    nodes = graph.nodes
    for user in graph.users_index()[node_id]:
        user_node = nodes[user]
        if user_node.op != "fused":
            yield (user_node.op, tuple([a == node_id for a in user_node.args]),
                   tuple([nodes[a].type for a in user_node.args]), user_node.type.shape)
            continue
        steps = user_node.params["body"].steps
        positions = {-p - 1 for p, a in enumerate(user_node.args) if a == node_id}
        for op, operands, _, step_type in steps:
            if positions.intersection(operands):
                yield (op, tuple([k in positions for k in operands]),
                       tuple([steps[k][3] if k >= 0 else graph.type(user_node.args[-k - 1]) for k in operands]),
                       step_type.shape)


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


def _comment(graph: Graph, loc, origin, described: dict | None = None) -> str:
    """A line's comment (_describe_line). ``described``, if given, remembers a derivative's per forward
    op, name and loc, all it names: the derivatives of one source line's forward nodes read alike."""
    if origin is None:
        return _describe_line(loc, None)
    forward = graph.nodes[origin]
    op = forward.params["body"].root[0] if forward.op == "fused" else forward.op
    if described is None:
        return _describe_line(loc, (op, forward.name, forward.loc))
    key = (op, forward.name, forward.loc)
    text = described.get(key)
    if text is None:
        text = described[key] = _describe_line(loc, key)
    return text


def _describe_line(loc, origin) -> str:
    """``d relu A1 at model.py:5`` for a backward line (origin = the forward op, name, loc), else the loc."""
    if origin is not None:
        op, name, forward_loc = origin
        return f"d {op}{f' {name}' if name else ''}{f' at {forward_loc}' if forward_loc else ''}"
    return str(loc) if loc else ""


class _Names:
    """Unique Python identifiers from name hints: ``p.W1`` -> ``p_W1``, a second ``A`` -> ``A_2``."""

    def __init__(self):
        self.taken = set(NAMESPACE) | set(_HELPERS) | {"np"}
        self.counts: dict[str, int] = {}

    def fresh(self, hint: str) -> str:
        base = _identifier(hint)
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


def _identifier(hint: str) -> str:
    if hint.isidentifier() and hint[0] != "_" and hint[-1] != "_" and not keyword.iskeyword(hint):
        return hint  # the usual case, and what the rules below leave as it is
    name = re.sub(r"\W+", "_", hint).strip("_") or "v"
    if name[0].isdigit() or keyword.iskeyword(name):
        name = f"v_{name}"
    return name
