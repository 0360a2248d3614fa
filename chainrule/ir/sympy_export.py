"""Graph -> SymPy: the expression of each output of a scalar or elementwise graph.

Every elementwise op carries its definition as a SymPy expression (the op
table's ``sympy`` entry), so a node becomes ``op.sympy(*operand expressions)``
and a graph becomes one expression per output, sharing subexpressions the way
the graph shares nodes. Shape ops that do not change an element's value
(reshape, broadcast_to, transpose, a reduction over size-1 axes) are the
identity here; anything that mixes elements (matmul, a real reduction,
indexing) has no elementwise expression and raises ``UnsupportedError``.

Depth. The walk is a loop over node ids (a topological order), never recursion,
so a graph 10,000 functions deep converts. SymPy itself recurses while it
*evaluates* a new expression: ``cos(arg)`` asks assumptions of ``arg``, which ask
their arguments, down the whole chain, and raises RecursionError near 300 nested
functions at Python's default limit; and it walks the expression *tree*, in
which a subexpression the graph shares counts once per use, so evaluating a
gradient graph of a few hundred nodes can take hours. So nodes deeper than
``EVALUATED_DEPTH`` or with a larger tree than ``EVALUATED_TREE_SIZE`` are
built unevaluated (``sympy.evaluate(False)``: the structure of the graph,
``-1*sin(u)`` rather than ``-sin(u)``), and each new expression's hash and
commutativity are worked out at once, bottom-up, so that asking for them later
never recurses either. What SymPy does with a large result (printing,
``simplify``) walks the tree and recurses: that is the expression swell
chainrule's graphs avoid.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from fractions import Fraction

import numpy as np
import sympy as sp

from chainrule.errors import UnsupportedError
from chainrule.ir.ops import OPS

# Expressions up to this depth and tree size are built with SymPy's evaluation (canonical forms,
# so a small graph's expression compares equal to the one a user writes); larger ones structurally.
# The tree size counts a shared subexpression once per use, as SymPy's evaluation walks it: a
# gradient graph of a few hundred nodes can stand for a tree of billions, and evaluating sums and
# products of such trees takes time exponential in the graph's size.
EVALUATED_DEPTH = 60
EVALUATED_TREE_SIZE = 500

# Ops that leave every element's value as it is: the identity in the elementwise view.
_VALUE_PRESERVING = {"reshape", "broadcast_to", "transpose", "stop_gradient"}
_REDUCTIONS = {"sum", "max", "min"}
# A float constant whose exact binary value is a fraction with at most this denominator becomes a
# SymPy Rational (0.5 -> 1/2, so simplify sees exact arithmetic); others stay 53-bit Floats.
_MAX_EXACT_DENOMINATOR = 1024


def input_symbol(name: str | None, position: int) -> sp.Symbol:
    """The default symbol of an input: its name, real (chainrule's values are real floats)."""
    return sp.Symbol(name or f"x{position}", real=True)


def number(value) -> sp.Basic:
    """A NumPy or Python scalar as an exact SymPy number where it is exactly one.

    >>> number(2.0), number(0.5), number(True)
    (2, 1/2, True)
    """
    if isinstance(value, (bool, np.bool_)):
        return sp.true if value else sp.false
    if isinstance(value, (int, np.integer)):
        return sp.Integer(int(value))
    value = float(value)
    if np.isnan(value):
        return sp.nan
    if np.isinf(value):
        return sp.oo if value > 0 else -sp.oo
    exact = Fraction(value)
    if exact.denominator <= _MAX_EXACT_DENOMINATOR:
        return sp.Rational(exact.numerator, exact.denominator)
    return sp.Float(value)  # the double's exact value, at 53 bits


def graph_to_sympy(graph, outputs: Sequence[int] | None = None,
                   symbols: Sequence | dict | None = None) -> list:
    """The SymPy expression of each of ``outputs`` (default: the graph's outputs).

    ``symbols`` names the inputs: a sequence (one per graph input, in order) or
    a dict from input name to symbol; by default each input is a real Symbol
    named after it.
    """
    outputs = list(graph.outputs if outputs is None else outputs)
    symbol_of = _input_symbols(graph, symbols)
    needed = _needed(graph, outputs)
    expressions: dict[int, sp.Basic] = {}
    depth: dict[int, int] = {}
    tree_size: dict[int, int] = {}  # capped: only "small enough to evaluate" matters
    for node_id in range(len(graph)):
        if not needed[node_id]:
            continue
        node = graph[node_id]
        arg_depth = max((depth[a] for a in node.args), default=0)
        tree_size[node_id] = min(1 + sum(tree_size[a] for a in node.args), EVALUATED_TREE_SIZE + 1)
        if node.op == "input":
            expression, depth[node_id] = symbol_of[node_id], 0
        elif node.op in ("const", "zeros"):
            expression, depth[node_id] = _constant(graph, node_id), 0
        elif node.op in _VALUE_PRESERVING or (node.op in _REDUCTIONS
                                               and graph.type(node.args[0]).size == node.type.size):
            expression, depth[node_id] = expressions[node.args[0]], arg_depth
        elif node.op == "cast":
            expression, depth[node_id] = _cast(graph, node, expressions[node.args[0]]), arg_depth + 1
        elif OPS[node.op].is_elementwise and OPS[node.op].sympy is not None:
            depth[node_id] = arg_depth + 1
            operands = [expressions[a] for a in node.args]
            if depth[node_id] <= EVALUATED_DEPTH and tree_size[node_id] <= EVALUATED_TREE_SIZE:
                expression = OPS[node.op].sympy(*operands)
            else:
                with sp.evaluate(False):
                    expression = OPS[node.op].sympy(*operands)
        else:
            raise UnsupportedError(
                f"to_sympy handles scalar and elementwise graphs; %{node_id} is a {node.op} of type "
                f"{node.type}, which mixes elements", node.loc)
        # Hash and commutativity are cached now, while the operands' are, so that neither is ever
        # worked out later by a walk down the whole expression (SymPy asks the latter of every
        # operand of a product or sum it builds, evaluated or not).
        hash(expression)
        _ = expression.is_commutative
        expressions[node_id] = expression
    return [expressions[o] for o in outputs]


def _input_symbols(graph, symbols) -> dict:
    names = [graph[i].name for i in graph.inputs]
    if symbols is None:
        chosen = [input_symbol(name, position) for position, name in enumerate(names)]
    elif isinstance(symbols, dict):
        chosen = [symbols[name] if name in symbols else input_symbol(name, position)
                  for position, name in enumerate(names)]
    else:
        chosen = list(symbols)
        if len(chosen) != len(names):
            raise UnsupportedError(f"{len(chosen)} symbols for a graph of {len(names)} inputs "
                                   f"({', '.join(str(n) for n in names)})")
    return {i: sp.sympify(s) for i, s in zip(graph.inputs, chosen)}


def _needed(graph, outputs: list) -> bytearray:
    """The nodes ``outputs`` depend on (a stack walk: the graph may be deep)."""
    needed = bytearray(len(graph))
    stack = list(outputs)
    while stack:
        node_id = stack.pop()
        if not needed[node_id]:
            needed[node_id] = 1
            stack.extend(graph[node_id].args)
    return needed


def _constant(graph, node_id: int) -> sp.Basic:
    values = np.asarray(graph.const_value(node_id))
    if values.size == 0:
        raise UnsupportedError(f"to_sympy: %{node_id} is an empty constant")
    first = values.reshape(-1)[0]
    if not np.all((values == first) | (np.isnan(values) & np.isnan(first))):
        raise UnsupportedError(f"to_sympy handles scalar and elementwise graphs; %{node_id} is a constant "
                               f"array of shape {list(values.shape)} with different elements")
    return number(first.item())


def _cast(graph, node, operand: sp.Basic) -> sp.Basic:
    source, target = graph.type(node.args[0]), node.type
    if source.dtype == "bool" and target.dtype != "bool":
        return sp.Piecewise((1, operand), (0, True))
    if target.dtype == "bool":
        return sp.Ne(operand, 0)
    if np.dtype(target.dtype).kind == "f":
        return operand  # between float widths, or int to float: the same real number
    raise UnsupportedError(f"to_sympy: a cast from {source.dtype} to {target.dtype} has no expression here",
                           node.loc)


@functools.cache
def ops_of_sympy_heads() -> dict:
    """SymPy function classes that are one primitive, mapped to its op: the heads the op table's own
    definitions apply to their operands (``sp.sin`` -> ``"sin"``). Import, export and the symbolic-region
    pass all read the op table through this, so a new op is known to each of them."""
    found = {}
    for name, op in OPS.items():
        if not op.is_elementwise or op.sympy is None or not op.arity or name in ("cast", "stop_gradient"):
            continue
        symbols = sp.symbols(f"a0:{op.arity}", real=True)
        try:
            definition = op.sympy(*symbols)
        except (TypeError, ValueError):
            continue
        if isinstance(definition, sp.Basic) and definition.args == tuple(symbols) \
                and definition.func not in (sp.Add, sp.Mul, sp.Pow):
            found.setdefault(definition.func, name)
    return found
