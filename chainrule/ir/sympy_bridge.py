"""The one bridge between graphs and SymPy, both ways.

Graph -> SymPy (``graph_to_sympy``): every elementwise op carries its definition
as a SymPy expression builder (the op table's ``sympy`` entry), so a node
becomes ``op.sympy(*operand expressions)`` and a graph one expression per
output, sharing subexpressions the way the graph shares nodes. Shape ops that
do not change an element's value (reshape, broadcast_to, transpose, a reduction
over size-1 axes) are the identity here; anything that mixes elements (matmul, a
real reduction, indexing) has no elementwise expression and raises
``UnsupportedError``. ``cr.to_sympy`` uses it; the symbolic-region pass writes
its regions with the same ``op_expression``.

SymPy -> graph (``build``): each SymPy node becomes ``Graph.add`` calls (so the
result is hash-consed and canonical). Which SymPy function is which op comes
from the op table itself (``ops_of_sympy_heads``): an op whose definition is
``F(a0, a1, ...)`` is what ``F`` becomes (sin, exp, erfc, Abs, Max, <, ...). The rest
are the rules in ``_build_one`` and its helpers: sums as add/sub, products as
mul/div, powers, Piecewise, the n-ary Max/Min/And/Or folded pairwise, functions
without a primitive (sec(x) = 1/cos(x), Heaviside). ``cr.from_sympy`` and
the symbolic-region pass use it.

Opaque functions: sigmoid and softplus are defined by exp forms, which SymPy
would simplify into overflowing ``exp(z)/(1 + exp(z))``. ``op_expression(...,
opaque=True)`` writes them as undefined functions instead, and ``reflected``
applies their reflection identities; ``build`` turns them back into the ops.

Depth. No walk here recurses: the graph is walked in id order (a topological
order), an expression with an explicit stack keyed by object identity (hashing
a deep expression would recurse). SymPy itself recurses while it *evaluates*
a new expression: ``cos(arg)`` asks assumptions of ``arg``, which ask their
arguments, down the whole chain, and raises RecursionError near 300 nested
functions at Python's default limit; and it walks the expression *tree*, in
which a subexpression the graph shares counts once per use. So nodes deeper
than ``EVALUATED_DEPTH`` or with a larger tree than ``EVALUATED_TREE_SIZE`` are
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
from typing import NamedTuple

import numpy as np
import sympy as sp
from sympy.codegen.cfunctions import expm1 as sympy_expm1
from sympy.codegen.cfunctions import log1p as sympy_log1p
from sympy.functions.elementary.piecewise import ExprCondPair

from chainrule.errors import UnsupportedError
from chainrule.ir.graph import Graph
from chainrule.ir.node import Node
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

# Ops kept as undefined functions where SymPy should not see their exp forms (see the module doc).
OPAQUE_FUNCTIONS = {"sigmoid": sp.Function("sigmoid"), "softplus": sp.Function("softplus")}


def input_symbol(name: str | None, position: int) -> sp.Symbol:
    """The default symbol of an input: its name, real (chainrule's values are real floats)."""
    return sp.Symbol(name or f"x{position}", real=True)


def number(value: float | np.number | np.bool_) -> sp.Basic:
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


def op_expression(op_name: str, operands: Sequence[sp.Basic], opaque: bool = False) -> sp.Basic:
    """``op_name`` applied to SymPy ``operands``: its definition, or with ``opaque`` its undefined
    function where it has one (sigmoid, softplus)."""
    if opaque and op_name in OPAQUE_FUNCTIONS:
        return OPAQUE_FUNCTIONS[op_name](*operands)
    definition = OPS[op_name].sympy
    if definition is None:
        raise UnsupportedError(f"{op_name} has no SymPy definition")
    return definition(*operands)


def reflected(expression: sp.Basic) -> sp.Basic:
    """``expression`` with opaque calls on a negated argument rewritten by the reflection identities
    ``sigmoid(-x) = 1 - sigmoid(x)`` and ``softplus(-x) = softplus(x) - x``."""
    sigmoid, softplus = OPAQUE_FUNCTIONS["sigmoid"], OPAQUE_FUNCTIONS["softplus"]

    def reflect(call: sp.Basic) -> sp.Basic:
        argument = -call.args[0]
        return 1 - sigmoid(argument) if call.func is sigmoid else softplus(argument) - argument

    return expression.replace(lambda e: e.func in (sigmoid, softplus) and e.args[0].could_extract_minus_sign(), reflect)


@functools.cache
def ops_of_sympy_heads() -> dict[type, str]:
    """SymPy function classes that are one primitive, mapped to its op: the heads the op table's own
    definitions apply to their operands (``sp.sin`` -> ``"sin"``, ``sp.Max`` -> ``"maximum"``,
    ``StrictLessThan`` -> ``"lt"``). Import, export and the symbolic-region pass all read the op table
    through this, so a new op is known to each of them."""
    found: dict[type, str] = {}
    for name, op in OPS.items():
        if not op.is_elementwise or op.sympy is None or not op.arity or name in ("cast", "stop_gradient"):
            continue
        symbols = sp.symbols(f"a0:{op.arity}", real=True)
        try:
            definition = op.sympy(*symbols)
        except (TypeError, ValueError):
            continue
        if (
            isinstance(definition, sp.Basic)
            and definition.args == tuple(symbols)
            and definition.func not in (sp.Add, sp.Mul, sp.Pow)
        ):
            found.setdefault(definition.func, name)
    return found


def op_of_head(function: type) -> str | None:
    """The op a SymPy function class is (``sp.sin`` -> ``"sin"``; the opaque sigmoid and softplus
    too), or None."""
    for name, opaque in OPAQUE_FUNCTIONS.items():
        if function is opaque:
            return name
    return ops_of_sympy_heads().get(function)


# ---- graph -> SymPy ---------------------------------------------------------------------------


def graph_to_sympy(
    graph: Graph, outputs: Sequence[int] | None = None, symbols: Sequence[sp.Basic] | dict | None = None
) -> list[sp.Basic]:
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
        elif node.op in _VALUE_PRESERVING or (
            node.op in _REDUCTIONS and graph.type(node.args[0]).size == node.type.size
        ):
            expression, depth[node_id] = expressions[node.args[0]], arg_depth
        elif node.op == "cast":
            expression, depth[node_id] = _cast(graph, node, expressions[node.args[0]]), arg_depth + 1
        elif OPS[node.op].is_elementwise and OPS[node.op].sympy is not None:
            depth[node_id] = arg_depth + 1
            operands = [expressions[a] for a in node.args]
            if depth[node_id] <= EVALUATED_DEPTH and tree_size[node_id] <= EVALUATED_TREE_SIZE:
                expression = op_expression(node.op, operands)
            else:
                with sp.evaluate(False):
                    expression = op_expression(node.op, operands)
        else:
            raise UnsupportedError(
                f"to_sympy handles scalar and elementwise graphs; %{node_id} is a {node.op} of type "
                f"{node.type}, which mixes elements",
                node.loc,
            )
        # Hash and commutativity are cached now, while the operands' are, so that neither is ever
        # worked out later by a walk down the whole expression (SymPy asks the latter of every
        # operand of a product or sum it builds, evaluated or not).
        hash(expression)
        _ = expression.is_commutative
        expressions[node_id] = expression
    return [expressions[o] for o in outputs]


def _input_symbols(graph: Graph, symbols: Sequence[sp.Basic] | dict | None) -> dict[int, sp.Basic]:
    names = [graph[i].name for i in graph.inputs]
    if symbols is None:
        chosen = [input_symbol(name, position) for position, name in enumerate(names)]
    elif isinstance(symbols, dict):
        chosen = [
            symbols[name] if name in symbols else input_symbol(name, position) for position, name in enumerate(names)
        ]
    else:
        chosen = list(symbols)
        if len(chosen) != len(names):
            raise UnsupportedError(
                f"{len(chosen)} symbols for a graph of {len(names)} inputs ({', '.join(str(n) for n in names)})"
            )
    return {i: sp.sympify(s) for i, s in zip(graph.inputs, chosen)}


def _needed(graph: Graph, outputs: list[int]) -> bytearray:
    """The nodes ``outputs`` depend on (a stack walk: the graph may be deep)."""
    needed = bytearray(len(graph))
    stack = list(outputs)
    while stack:
        node_id = stack.pop()
        if not needed[node_id]:
            needed[node_id] = 1
            stack.extend(graph[node_id].args)
    return needed


def _constant(graph: Graph, node_id: int) -> sp.Basic:
    values = np.asarray(graph.const_value(node_id))
    if values.size == 0:
        raise UnsupportedError(f"to_sympy: %{node_id} is an empty constant")
    first = values.reshape(-1)[0]
    if not np.all((values == first) | (np.isnan(values) & np.isnan(first))):
        raise UnsupportedError(
            f"to_sympy handles scalar and elementwise graphs; %{node_id} is a constant "
            f"array of shape {list(values.shape)} with different elements"
        )
    return number(first.item())


def _cast(graph: Graph, node: Node, operand: sp.Basic) -> sp.Basic:
    source, target = graph.type(node.args[0]), node.type
    if source.dtype == "bool" and target.dtype != "bool":
        return sp.Piecewise((1, operand), (0, True))
    if target.dtype == "bool":
        return sp.Ne(operand, 0)
    if np.dtype(target.dtype).kind == "f":
        return operand  # between float widths, or int to float: the same real number
    raise UnsupportedError(f"to_sympy: a cast from {source.dtype} to {target.dtype} has no expression here", node.loc)


# ---- SymPy -> graph ---------------------------------------------------------------------------

# SymPy functions without a primitive of their own: sec(x) = 1/cos(x), ...; and the n-ary Max, Min,
# And, Or, folded pairwise into the binary primitive.
_RECIPROCALS = {sp.sec: "cos", sp.csc: "sin", sp.cot: "tan", sp.sech: "cosh", sp.csch: "sinh", sp.coth: "tanh"}
_FOLDED = {sp.Max: "maximum", sp.Min: "minimum", sp.And: "logical_and", sp.Or: "logical_or"}
_C_FUNCTIONS = {sympy_expm1: "expm1", sympy_log1p: "log1p"}  # SymPy's C-style functions, primitives here


class _BuildState(NamedTuple):
    """How ``build`` builds: constants' dtype, the rational rule, and the reciprocals seen so far."""

    dtype: str
    exact_rationals: bool
    reciprocal: dict[int, int]  # id(x**-e) -> the node of x**e, which a product divides by


def build(
    graph: Graph,
    expressions: Sequence[sp.Basic],
    inputs: dict[sp.Basic, int],
    dtype: str = "float64",
    exact_rationals: bool = True,
) -> list[int]:
    """Add ``expressions`` to ``graph``; return the node of each. ``inputs`` maps each symbol to its
    node; numbers become constants of ``dtype``.

    ``exact_rationals``: a coefficient p/q that no float holds exactly (2/3) multiplies by p and
    divides by q, so the graph computes the expression as written, without a rounded 2/3 (for
    ``from_sympy``); else it is one rounded constant, a multiplication cheaper than a division
    (the symbolic-region pass's choice: 1/m of a mean).

    Every subexpression is built after its arguments (an explicit stack, keyed by identity, the
    arguments pushed in order so the last is built first), and each becomes ``Graph.add`` calls.
    """
    built: dict[int, int] = {}  # id(SymPy node) -> its graph node
    state = _BuildState(dtype, exact_rationals, reciprocal={})
    keep_alive: list = []  # the SymPy nodes whose id() is a key above
    for expression in expressions:
        stack = [(expression, False)]
        while stack:
            node, ready = stack.pop()
            if id(node) in built:
                continue
            if not ready:
                stack.append((node, True))
                stack.extend((a, False) for a in node.args if id(a) not in built)
                continue
            # a Piecewise reads its (expression, condition) pairs' parts
            parts = [pair.args for pair in node.args] if node.func is sp.Piecewise else [node.args]
            operands = [built[id(a)] for arguments in parts for a in arguments]
            built[id(node)] = _build_one(graph, node, operands, inputs, state)
            keep_alive.append(node)
    return [built[id(e)] for e in expressions]


def _build_one(
    graph: Graph, node: sp.Basic, operands: list[int], inputs: dict[sp.Basic, int], state: _BuildState
) -> int:
    """The node of one SymPy node, whose arguments' nodes are ``operands``."""
    dtype = state.dtype
    if node.is_Symbol:
        if node not in inputs:
            raise UnsupportedError(
                f"the expression has the free symbol {node}, which is not one of the "
                f"symbols given ({', '.join(map(str, inputs))})"
            )
        return inputs[node]
    if node is sp.true or node is sp.false:
        return _const(graph, bool(node), None)
    if node.is_Number or isinstance(node, sp.NumberSymbol) or node is sp.zoo:
        return _const(graph, _float(node), dtype)
    if node is sp.I:
        raise UnsupportedError("the expression has the imaginary unit; chainrule computes with real numbers")
    func = node.func
    if func is sp.Add:
        return _signed_sum(graph, node, operands)
    if func is sp.Mul:
        return _product(graph, node, operands, state)
    if func is sp.Pow:
        return _power(graph, node, operands, state)
    if func is sp.Piecewise:
        return _piecewise(graph, node, operands, dtype)
    if func is ExprCondPair:
        return -1  # read by its Piecewise through the pair's own arguments
    return _function(graph, node, operands, dtype)


def _const(graph: Graph, value: bool | float, dtype: str | None) -> int:
    """The scalar constant ``value`` of ``dtype`` (None: its own, for a bool)."""
    return graph.const(np.asarray(value, dtype))


def _float(node: sp.Basic) -> float:
    """A SymPy number as a float, or UnsupportedError for one that is not real."""
    try:
        return float(node)  # oo and nan are floats too
    except TypeError:  # zoo, the complex infinity
        raise UnsupportedError(f"{node} is not a real number") from None


def _function(graph: Graph, node: sp.Basic, operands: list[int], dtype: str) -> int:
    """A function application: the op the function is, or one of the rules above for the rest."""
    func = node.func
    op_name = op_of_head(func)
    if op_name is not None and len(operands) == OPS[op_name].arity:
        return graph.add(op_name, tuple(operands))
    if func in _FOLDED:
        result = operands[0]
        for operand in operands[1:]:
            result = graph.add(_FOLDED[func], (result, operand))
        return result
    if func in _RECIPROCALS:
        return graph.add("div", (_const(graph, 1.0, dtype), graph.add(_RECIPROCALS[func], (operands[0],))))
    if func in _C_FUNCTIONS:
        return graph.add(_C_FUNCTIONS[func], (operands[0],))
    if func is sp.Heaviside:  # H(x) = 1 for x > 0, H(0) at 0 (SymPy's default 1/2), 0 below
        zero = _const(graph, 0.0, dtype)
        at_zero = operands[1] if len(operands) > 1 else _const(graph, 0.5, dtype)
        inner = graph.add("where", (graph.add("eq", (operands[0], zero)), at_zero, zero))
        return graph.add("where", (graph.add("gt", (operands[0], zero)), _const(graph, 1.0, dtype), inner))
    raise UnsupportedError(
        f"{func.__name__} has no chainrule primitive; write it with the elementary "
        "functions (sin, exp, log, Abs, Max, Piecewise, ...)"
    )


def _is_negative_term(term: sp.Basic) -> bool:
    """Whether a term of a sum carries a minus sign: SymPy's ``could_extract_minus_sign`` for the
    numbers and products it looks at, without its ``term == -term`` test (which walks the term)."""
    if term.is_Number:
        return bool(term.is_extended_negative)
    return term.is_Mul and term.args[0].is_Number and bool(term.args[0].is_extended_negative)


def _signed_sum(graph: Graph, node: sp.Basic, operands: list[int]) -> int:
    """a + b - c as add/sub: the terms without a sign are added in order, then those with one subtracted."""
    positive: list[int] = []
    negative: list[int] = []
    for term, built in zip(node.args, operands, strict=True):
        (negative if _is_negative_term(term) else positive).append(built)
    if positive:
        total, subtracted = positive[0], negative
    else:  # -a - b: the first negated, the rest subtracted
        total, subtracted = graph.add("neg", (_negated(graph, negative[0]),)), negative[1:]
    for extra in positive[1:]:
        total = graph.add("add", (total, extra))
    for built in subtracted:
        total = graph.add("sub", (total, _negated(graph, built)))
    return total


def _negated(graph: Graph, built: int) -> int:
    """The node for minus a term with a minus sign, read off the term's node: ``-y`` is built as
    ``mul(-1, y)``, giving ``y``; ``mul(-2, x)`` gives ``mul(2, x)``; a longer product ``neg`` of it
    (the symbolic-region pass's results, pinned by tests/golden, are built this way)."""
    node = graph[built]
    if node.op == "neg":
        return node.args[0]
    if node.op == "mul":
        for position, factor in enumerate(node.args):
            value = graph.const_value(factor)
            if value is not None and value.size == 1:
                other = node.args[1 - position]
                if float(value.reshape(())) == -1.0:
                    return other
                return graph.add("mul", (graph.const(-value), other))
    constant = graph.const_value(built)
    if constant is not None:
        return graph.const(-constant)
    return graph.add("neg", (built,))


def _product(graph: Graph, node: sp.Basic, operands: list[int], state: _BuildState) -> int:
    """c * x * y / z: a factor with a negative exponent divides; see ``build`` for c = p/q."""
    numerator, denominator = [], []
    dtype, reciprocal = state.dtype, state.reciprocal
    for factor, built in zip(node.args, operands, strict=True):
        if id(factor) in reciprocal:
            denominator.append(reciprocal[id(factor)])
        elif state.exact_rationals and factor.is_Rational and factor.q & (factor.q - 1):  # q: not a power of 2
            if factor.p != 1:
                numerator.append(_const(graph, float(factor.p), dtype))
            denominator.insert(0, _const(graph, float(factor.q), dtype))
        else:
            numerator.append(built)
    total = numerator[0] if numerator else _const(graph, 1.0, dtype)
    for extra in numerator[1:]:
        total = graph.add("mul", (total, extra))
    for divisor in denominator:
        total = graph.add("div", (total, divisor))
    return total


def _power(graph: Graph, node: sp.Basic, operands: list[int], state: _BuildState) -> int:
    """x**-e as 1 / x**e (a product divides by x**e instead); x**2 as x * x; x**(1/2) as sqrt(x)."""
    base, exponent, dtype, reciprocal = operands[0], node.args[1], state.dtype, state.reciprocal
    if exponent.is_Number and exponent.is_negative:
        positive = _positive_power(graph, base, -exponent, operands[1], dtype)
        reciprocal[id(node)] = positive
        return graph.add("div", (_const(graph, 1.0, dtype), positive))
    return _positive_power(graph, base, exponent, operands[1], dtype)


def _positive_power(graph: Graph, base: int, exponent: sp.Basic, exponent_node: int, dtype: str) -> int:
    """base**exponent for exponent > 0 (or symbolic: ``exponent_node`` is its node)."""
    if exponent == 1:
        return base
    if exponent == 2:
        return graph.add("mul", (base, base))
    if exponent == sp.Rational(1, 2):
        return graph.add("sqrt", (base,))
    if exponent.is_Number:
        exponent_node = _const(graph, _float(exponent), dtype)
    return graph.add("pow", (base, exponent_node))


def _piecewise(graph: Graph, node: sp.Basic, operands: list[int], dtype: str) -> int:
    """Piecewise((e0, c0), (e1, c1), ...) as where(c0, e0, where(c1, e1, ...)); NaN where no condition
    holds. ``operands`` are e0, c0, e1, c1, ..."""
    expressions, conditions = operands[0::2], operands[1::2]
    if node.args[-1].args[1] is sp.true:
        result = expressions[-1]
    else:
        result = graph.add("where", (conditions[-1], expressions[-1], _const(graph, np.nan, dtype)))
    for expression, condition in zip(reversed(expressions[:-1]), reversed(conditions[:-1]), strict=True):
        result = graph.add("where", (condition, expression, result))
    return result
