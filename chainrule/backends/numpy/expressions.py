"""How an op's NumPy text reads inside another's: templates in printf style, and parentheses.

Each answer depends only on ops (and an operand position), so it is worked out once per
combination: generate_source asks for every node of graphs of 100,000 nodes.
"""

from __future__ import annotations

import functools
import re

from chainrule.ir import OPS

# Ops generate_source writes otherwise than by their template, at least sometimes: ``lowering``
# gives them no printf template, so they take generate_source's own branches.
WRITTEN_THEIR_OWN_WAY = {"stop_gradient", "transpose", "where"}
# Python's precedence of the operators the arithmetic templates are written with.
_PRECEDENCE = {"add": 1, "sub": 1, "mul": 2, "div": 2, "neg": 3}


@functools.cache
def lowering(op: str) -> tuple[str | None, bool, bool | None]:
    """What generate_source asks of each node's op, asked once per op: its template in printf style
    (``np.sin(%s)``) when it names each operand once, in order, and nothing else (else None),
    whether it is elementwise, and ``renders_as_call``. ``template % operands`` is what ``Op.render``
    computes for such an op without attributes, and Python fills it in faster than ``str.format``."""
    definition = OPS[op]
    template, printf = definition.numpy, None
    if (
        op not in WRITTEN_THEIR_OWN_WAY
        and isinstance(template, str)
        and definition.arity is not None
        and "%" not in template
        and "{{" not in template
        and "}}" not in template
        and re.findall(r"\{[^{}]*\}", template) == ["{" + str(i) + "}" for i in range(definition.arity)]
    ):
        printf = re.sub(r"\{\d+\}", "%s", template)
    return printf, definition.is_elementwise, renders_as_call(op)


def operand_text(text: str, op: str, user_op: str, position: int) -> str:
    """An inlined expression of ``op`` (not a call) as operand ``position`` of ``user_op``,
    parenthesized where Python's precedence needs it: ``a * b * c``, but ``(1.0 + y) * g``."""
    parenthesized = _needs_parentheses(op, user_op, position)
    if parenthesized is None:  # only the text can tell
        parenthesized = not is_call(text) and not _binds_tighter(op, user_op, position)
    return f"({text})" if parenthesized else text


@functools.cache
def _needs_parentheses(op: str, user_op: str, position: int) -> bool | None:
    """Does ``operand_text`` parenthesize every expression of ``op`` there? None when that depends
    on the text. Decided once per combination: a graph has many expressions, few combinations."""
    call = renders_as_call(op)
    if _inside_call_parentheses(user_op, position) or call:
        return False
    if call is None:
        return None  # a lowering in code: a call needs no parentheses, anything else may
    return not _binds_tighter(op, user_op, position)


def _binds_tighter(op: str, user_op: str, position: int) -> bool:
    """Does the expression of ``op`` bind tightly enough to be operand ``position`` of ``user_op``
    without parentheses (``a * b * c``, ``-a * b``)?"""
    inner, outer = _PRECEDENCE.get(op), _PRECEDENCE.get(user_op)
    return (
        inner is not None
        and outer is not None
        and user_op != "neg"
        and (inner > outer or (inner == outer and position == 0))
    )


@functools.cache
def renders_as_call(op: str) -> bool | None:
    """Is every rendering of ``op`` one call (``np.sin({0})``)? None when its lowering is code, not
    a template: then only the text can tell."""
    template = OPS[op].numpy
    if not isinstance(template, str):
        return None
    return is_call(re.sub(r"\{[^{}]*\}", "x", template))


@functools.cache
def _inside_call_parentheses(op: str, position: int) -> bool:
    """Does ``op``'s template put operand ``position`` alone between a call's ``(`` or ``,`` and
    ``)`` or ``,`` (so any expression can stand there as it is)?"""
    template = OPS[op].numpy
    if not isinstance(template, str):
        return False
    placeholder = "{" + str(position) + "}"
    at = template.find(placeholder)
    if at < 0 or template.count(placeholder) != 1:
        return False
    before, after = template[:at].rstrip(), template[at + len(placeholder) :].lstrip()
    return before.endswith(("(", ",")) and after.startswith((")", ","))


def is_call(text: str) -> bool:
    """Is ``text`` one name or one call (``np.exp(x)``, ``x.sum(...)``), which never needs parentheses
    as an operand?"""
    name = re.match(r"[\w.]+", text)
    if name is None:
        return False
    arguments = text[name.end() :]
    depth = 0
    for position, char in enumerate(arguments):
        depth += (char == "(") - (char == ")")
        if depth == 0:  # the first parenthesis closes here: a call only if that is the end
            return char == ")" and position == len(arguments) - 1
    return not arguments
