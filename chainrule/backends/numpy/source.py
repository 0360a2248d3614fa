"""``generate_source``: a graph as the text of one Python function of NumPy calls."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from chainrule.backends.numpy.expressions import lowering, operand_text
from chainrule.backends.numpy.fused import fused_lines
from chainrule.backends.numpy.text import (
    Names,
    identifier,
    line_comment,
    outputs_to_copy,
    parenthesize,
    scalar_literal,
    special_form,
    with_comment,
    with_early_dels,
)
from chainrule.ir import OPS, Graph, Node
from chainrule.ir.fused import donated_buffers
from chainrule.ir.types import EARLY_FREE_MIN_BYTES

# How much of an expression a value read once may be inlined into before it gets its own line.
MAX_INLINE_DEPTH = 4
MAX_INLINE_LENGTH = 60
_NOTHING: frozenset = frozenset()


def generate_source(
    graph: Graph, function_name: str | None = None, returned: Sequence[int | None] | None = None
) -> tuple[str, dict]:
    """Python source of ``graph`` and the constant arrays it refers to by name. ``returned``: what
    the function returns instead of the graph's outputs, where None returns None (an output the
    caller never reads, such as grad's value: nothing only it needs is computed)."""
    return _SourceWriter(graph, returned).write(function_name)


class _SourceWriter:
    """The state of one ``generate_source``: names given, texts to inline, lines written."""

    def __init__(self, graph: Graph, returned: Sequence[int | None] | None = None):
        self.graph = graph
        self.returned = list(graph.outputs) if returned is None else list(returned)
        returned_values = [out for out in self.returned if out is not None]
        self.names = Names()
        self.value_names: dict[int, str] = {}
        self.constants: dict[str, np.ndarray] = {}
        # node -> the text it is written as where it is read (an expression, a literal, x.T); its op, or
        # None when the text reads the same as any operand (a call such as np.sin(a * b), or a literal
        # already parenthesized if it must be: (-1.0)); and how deep that expression nests inlined
        # ones (0: not an expression of its own)
        self.inline: dict[int, tuple[str, str | None, int]] = {}
        self.freeable: dict[int, frozenset] = {}  # node -> the local arrays its text refers to (a .T: its operand's)
        self.statements: list[tuple[str, frozenset]] = []  # each line and the local arrays it reads
        self.use_counts = use_counts(graph, returned_values)
        self.graph_reads: list[int] | None = None  # use_counts of all the graph's outputs, when asked
        self.outputs = set(returned_values)
        # Each line's comment, remembered per origin (a derivative's names its forward node alone), else
        # per loc; and the texts of derivatives per what they name (see text.line_comment).
        self.comments: dict[object, str] = {}
        self.described: dict[tuple, str] = {}

    def write(self, function_name: str | None) -> tuple[str, dict]:
        # The loop runs once per node, on graphs of 100,000 nodes and more: what depends only on an op
        # (lowering) is worked out once, the writer's state is read from locals, and the usual node
        # (an op's template, filled in) takes the first branch.
        graph, nodes, inline, freeable = self.graph, self.graph.nodes, self.inline, self.freeable
        value_names, counts, outputs = self.value_names, self.use_counts, self.outputs
        for input_id in graph.inputs:
            value_names[input_id] = self.names.fresh(nodes[input_id].name or f"in{input_id}")
        # the live nodes (those read: see use_counts), in id order: operands before users
        for node_id in itertools.compress(range(len(nodes)), counts):
            node = nodes[node_id]
            op = node.op
            operands = []
            nesting = 1  # how deep this node's expression nests the inlined ones it reads
            for a in node.args:
                if a in inline:
                    text, inner_op, inner_depth = inline[a]
                    if inner_op is not None:  # an expression read once: node.args.index(a) is where it stands
                        text = operand_text(text, inner_op, op, node.args.index(a))
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
            printf, elementwise, renders_as_call = lowering(op)
            if printf is not None and not node.attrs:  # most nodes: the op's template, filled in
                expression = printf % tuple(operands)
            else:
                written = self._expression(node_id, node, operands, reads)
                if written is None:  # a source, or a value written where it is read
                    continue
                expression = written
            if (
                elementwise
                and counts[node_id] == 1
                and not node.name
                and not reads
                and node_id not in outputs
                and not node.recomputed
                and node.type.nbytes < EARLY_FREE_MIN_BYTES
                and nesting <= MAX_INLINE_DEPTH
                and len(expression) <= MAX_INLINE_LENGTH
            ):
                # a small unnamed value read once is written where it is read (``-(g * np.sin(t))``):
                # fewer lines to read, and to compile (a statement costs Python's compiler ~7 µs)
                inline[node_id] = (expression, None if renders_as_call else op, nesting)
                continue
            self._statement(node_id, node, expression, operands, reads)
        return self._function_text(function_name), self.constants

    def _expression(self, node_id: int, node: Node, operands: list[str], reads: frozenset) -> str | None:
        """The text of a node that is not a template filled in; None when it needs no line of its own
        (an input, a constant, an identity or a transpose written where it is read). A fused node's
        text is "": its lines are its steps'."""
        op = node.op
        if op == "fused":
            return ""  # a statement per step (fused_lines); not elementwise, so never inlined
        if op == "input":
            return None
        if op == "const":
            literal = scalar_literal(self.graph, node_id)
            if literal is not None:
                self.inline[node_id] = (parenthesize(literal, op), None, 0)
                return None
            name = self.value_names[node_id] = self.names.fresh(node.name or f"const{node_id}")
            self.constants[name] = node.params["value"].array
            return None
        if node_id not in self.outputs and (op == "stop_gradient" or (op == "transpose" and node.type.ndim == 2)):
            # the identity once differentiated: no line of its own; a matrix transpose is written where
            # it is used, as in dW = dZ @ A.T
            text = operands[0] if op == "stop_gradient" else f"{operands[0]}.T"
            self.inline[node_id] = (parenthesize(text, op), None, 0)
            self.freeable[node_id] = reads
            return None
        if op == "where":
            return special_form(self.graph, node, operands) or OPS[op].render(operands, dict(node.attrs))
        return OPS[op].render(operands, dict(node.attrs))

    def _statement(self, node_id: int, node: Node, expression: str, operands: list[str], reads: frozenset) -> None:
        """The line (or, for a fused node, lines) computing a value of its own name."""
        op = node.op
        op_name = node.params["body"].root[0] if op == "fused" else op
        value_name = self.names.fresh(node.name or f"{op_name}{node_id}")
        self.value_names[node_id] = value_name
        if node.type.nbytes >= EARLY_FREE_MIN_BYTES:  # the memory plan's rule too
            self.freeable[node_id] = frozenset((value_name,))
        statements = self.statements
        if op == "fused":
            # reads counted as the memory plan counts them, for all the graph's outputs: a value grad's
            # kernel reads once, its other reader computing only the value it returns as None, is not
            # written over (the plan, which knows only the graph, would count its array twice)
            if self.graph_reads is None:
                self.graph_reads = use_counts(self.graph)
            donated = donated_buffers(self.graph, node, self.graph_reads, set(self.graph.outputs))
            for line, step_comment in fused_lines(self.graph, node, operands, value_name, self.names, donated):
                statements.append((with_comment(line, step_comment), _NOTHING))
            statements[-1] = (statements[-1][0], reads)
            return
        comment_key = node.loc if node.origin is None else node.origin
        text = self.comments.get(comment_key)
        if text is None:
            text = self.comments[comment_key] = line_comment(self.graph, node.loc, node.origin, self.described)
        if node.recomputed:
            text = f"recomputed{', ' if text else ''}{text}"
        statements.append((with_comment(f"{value_name} = {expression}", text), reads))

    def _function_text(self, function_name: str | None) -> str:
        graph, value_names, freeable = self.graph, self.value_names, self.freeable
        header = f"def {identifier(function_name or graph.name)}({', '.join(value_names[i] for i in graph.inputs)}):"
        returned: list[str] = []
        returned_arrays: set[str] = set()
        values = [out for out in self.returned if out is not None]
        copies = iter(outputs_to_copy(graph, values))
        for out in self.returned:
            if out is None:
                returned.append("None")
                continue
            text = value_names[out]  # (an output is never inlined)
            returned.append(f"np.array({text}, dtype=np.{graph.type(out).dtype})" if next(copies) else text)
            returned_arrays |= freeable.get(out, frozenset())
        if freeable:
            lines = [header] + with_early_dels(self.statements, returned_arrays)
        else:  # no array is big enough to be freed early: no statement reads one
            lines = [header] + [line for line, _ in self.statements]
        lines.append(f"    return ({', '.join(returned)}{',' if len(returned) == 1 else ''})")
        return "\n".join(lines) + "\n"


def use_counts(graph: Graph, outputs: Sequence[int] | None = None) -> list[int]:
    """How often each value is read by the live nodes (``x * x`` reads x twice) and the outputs
    (``graph``'s, or ``outputs``): nonzero exactly for the live nodes but unread inputs. One sweep
    from the last node to the first finds them all (a user's id is greater than its operands')."""
    nodes = graph.nodes
    counts = [0] * len(nodes)
    for out in graph.outputs if outputs is None else outputs:
        counts[out] += 1
    for node_id in range(len(nodes) - 1, -1, -1):
        if counts[node_id]:
            for a in nodes[node_id].args:
                counts[a] += 1
    return counts
