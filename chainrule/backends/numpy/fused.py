"""A fused node as NumPy statements: step by step into planned buffers (``out=``), or, when small,
as nested expressions."""

from __future__ import annotations

import functools

from chainrule.backends.numpy.expressions import is_call
from chainrule.backends.numpy.text import (
    Names,
    describe_line,
    line_comment,
    where_else_zero_text,
)
from chainrule.ir import OPS, Graph, Node, TensorType
from chainrule.ir.fused import STEPWISE_MIN_SIZE, plan_buffers

# How deep a fused body's expression may nest before a step gets a line of its own (CPython's
# parser refuses 200 nested parentheses; a reader gives up much sooner).
MAX_EXPRESSION_DEPTH = 12


def fused_lines(
    graph: Graph, node: Node, operands: list[str], value_name: str, names: Names, donated: dict[int, int]
) -> list[tuple[str, str]]:
    """A fused node as one statement per step and its comment, each step writing into a buffer that
    ``plan_buffers`` picked (``out=``), so the region allocates its result and few temporaries, not
    one per step. ``donated``: the buffers that are an operand's array, written over (buffer -> the
    operand's position: ``ir.fused.donated_buffers``, which the memory plan counts the same way)."""
    body = node.params["body"]
    steps = body.steps
    if steps[0][3].size < STEPWISE_MIN_SIZE:  # nested expressions (see ir/fused.py)
        return _fused_expression_lines(graph, node, operands, value_name, names)
    plan = plan_buffers(body)
    result_buffer = plan.buffer[-1]
    buffer_names = [
        value_name if b == result_buffer else names.fresh(f"{value_name}_t") for b in range(len(plan.types))
    ]
    lines: list[tuple[str, str]] = []
    in_place_forms = _in_place_forms(len(OPS))
    for b, position in donated.items():
        if b == result_buffer:  # the result is the operand's array, written over
            lines.append((f"{value_name} = {operands[position]}", ""))
        else:
            buffer_names[b] = operands[position]
    for index, (op, step_operands, attrs, step_type) in enumerate(steps):
        texts = [buffer_names[plan.buffer[k]] if k >= 0 else operands[-k - 1] for k in step_operands]
        attrs = dict(attrs)
        step_comment = _step_comment(graph, node, index)
        if plan.buffer[index] < 0:  # the final reduction
            lines.append((f"{value_name} = {OPS[op].render(texts, attrs)}", step_comment))
            continue
        target = buffer_names[plan.buffer[index]]
        in_place = in_place_forms.get(op) if plan.writes_over[index] or plan.buffer[index] in donated else None
        if in_place is not None:
            if "{" not in in_place:  # a call's head
                lines.append((f"{in_place}{', '.join(texts)}, out={target})", step_comment))
            else:
                lines.append((in_place.format(*texts, out=target), step_comment))
        else:
            special = _where_else_zero_form(graph, node, op, step_operands, step_type, texts)
            lines.append((f"{target} = {special or OPS[op].render(texts, attrs)}", step_comment))
    temporaries = [name for b, name in enumerate(buffer_names) if name != value_name and b not in donated]
    if temporaries:
        lines.append((f"del {', '.join(temporaries)}", ""))
    return lines


@functools.lru_cache(maxsize=1)
def _in_place_forms(op_count: int) -> dict[str, str]:
    """Each op's in-place form (``Op.in_place``) as ``fused_lines`` fills it in, worked out once (again
    when an op is registered): the call's head (``np.multiply(``) when the form is that call on the
    operands in order and ``out=`` (an f-string fills that in fastest), else the template."""
    forms = {}
    for name, op in OPS.items():
        template = op.in_place
        if template is not None:
            head = template.split("{", 1)[0]
            tail = ", ".join("{" + str(i) + "}" for i in range(op.arity or 0)) + ", out={out})"
            forms[name] = head if template == head + tail and "}" not in head else template  # (a template has "{")
    return forms


def _step_comment(graph: Graph, node: Node, index: int) -> str:
    meta = node.params["body"].meta
    if index >= len(meta):
        return line_comment(graph, node.loc, node.origin)
    _, loc, origin = meta[index]
    return describe_line(loc, origin)


def _fused_expression_lines(
    graph: Graph, node: Node, operands: list[str], value_name: str, names: Names
) -> list[tuple[str, str]]:
    """A small fused node as nested expressions; a step used twice gets a statement of its own."""
    body = node.params["body"]
    counts = body.use_counts()
    texts: list[str] = []
    depths: list[int] = []  # how deep each step's text nests the steps written into it (0: a name)
    lines: list[tuple[str, str]] = []
    for index, (op, step_operands, attrs, _) in enumerate(body.steps):
        arguments = [texts[k] if k >= 0 else operands[-k - 1] for k in step_operands]
        arguments = [
            f"({text})" if k >= 0 and counts[k] == 1 and not is_call(text) else text
            for text, k in zip(arguments, step_operands)
        ]
        text = OPS[op].render(arguments, dict(attrs))
        depth = 1 + max((depths[k] for k in step_operands if k >= 0), default=0)
        is_last = index == len(body.steps) - 1
        if not is_last and (counts[index] > 1 or body.name(index) or depth >= MAX_EXPRESSION_DEPTH):
            # a step used twice, one the user named (dA), or one nesting deep enough that CPython's
            # parser would refuse the next (a chain of 200 sums) gets a statement of its own
            name = names.fresh(body.name(index) or f"{value_name}_t")
            lines.append((f"{name} = {text}", _step_comment(graph, node, index)))
            text, depth = name, 0
        texts.append(text)
        depths.append(depth)
    lines.append((f"{value_name} = {texts[-1]}", _step_comment(graph, node, len(body.steps) - 1)))
    return lines


def _where_else_zero_form(
    graph: Graph, node: Node, op: str, step_operands: tuple[int, ...], step_type: TensorType, texts: list[str]
) -> str | None:
    """A fused where step as where_else_zero (see ``text.special_form``)."""
    if op != "where":
        return None
    steps = node.params["body"].steps
    condition, x, _other = [steps[k][3] if k >= 0 else graph.type(node.args[-k - 1]) for k in step_operands]
    zero = graph.const_value(node.args[-step_operands[2] - 1]) if step_operands[2] < 0 else None
    return where_else_zero_text(step_type, condition, x, zero, texts)
