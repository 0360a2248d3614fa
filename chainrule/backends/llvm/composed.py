"""An elementwise op lowered from its SymPy definition (``Op.sympy``), when it has neither an
emitter nor a libm function: the definition's expression, walked iteratively, becomes steps that
call the scalar lowerings of the ops it is made of.

SymPy heads are mapped back to ops through the table's own definitions: an op whose definition is
one head applied to its operands (and numbers) stands for that head (``sin`` for ``sp.sin``,
``maximum`` for ``sp.Max``, ``sqrt`` for ``Pow(x, 1/2)``, ``neg`` for ``Mul(-1, x)``), and the ops
defined as ``a - b`` and ``a / b`` spell SymPy's sums of negated terms and products of reciprocals.
Other n-ary sums and products fold over the two-operand op of their head; a head no op stands for
is called by its own name when libm has it (``sp.erfc`` -> ``erfc``); a subexpression without
symbols (``log(2)``) is a literal. An expression with anything else (``Piecewise``, a relation of
booleans...) has no composition, and the op runs through NumPy.

A composition is a tuple of steps in evaluation order: ``(OPERAND, k)``, ``(LITERAL, value)``,
``(OP, name, step indices)``, ``(LIBM, function, step indices)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sympy as sp

from chainrule.backends.llvm.mathlib import FUNCTIONS
from chainrule.ir import OPS, Op

OPERAND, LITERAL, OP, LIBM = "operand", "literal", "op", "libm"
# (OPERAND, k) | (LITERAL, value) | (OP, name, step indices) | (LIBM, function, step indices)
Step = tuple[Any, ...]
_WILD = "*"

# op -> (the Op it was built for, its composition): rebuilt when the table's entry changes
_COMPOSITIONS: dict[str, tuple[Op, tuple[Step, ...] | None]] = {}


def composition(op: Op, is_native: Callable[[str], bool]) -> tuple[Step, ...] | None:
    """The steps computing ``op`` from its SymPy definition with ops ``is_native`` lowers, or None."""
    known = _COMPOSITIONS.get(op.name)
    if known is not None and known[0] is op:
        return known[1]
    steps = None
    if op.sympy is not None and op.arity is not None:
        symbols = sp.symbols(f"x0:{op.arity}")
        try:
            steps = _compose(op.sympy(*symbols), symbols, _heads(is_native, len(OPS)))
        except _NotComposable:
            steps = None
    _COMPOSITIONS[op.name] = (op, steps)
    return steps


class _NotComposable(Exception):
    pass


def _compose(expression: sp.Expr, symbols: tuple[sp.Symbol, ...], heads: _Heads) -> tuple[Step, ...]:
    """Post-order steps of ``expression``, walked with an explicit stack; a repeated subexpression
    is computed once."""
    steps: list[Step] = []
    index_of: dict[sp.Expr, int] = {}
    pending = [(expression, False)]
    while pending:
        node, expanded = pending.pop()
        if node in index_of:
            continue
        if node in symbols:
            index_of[node] = len(steps)
            steps.append((OPERAND, symbols.index(node)))
            continue
        if not node.free_symbols:  # a number, pi, log(2)
            try:
                value = complex(sp.N(node))
            except TypeError:  # nan, zoo: no number
                raise _NotComposable(node) from None
            if value.imag:
                raise _NotComposable(node)
            index_of[node] = len(steps)
            steps.append((LITERAL, value.real))
            continue
        kind, name, operands = heads.call(node)
        if not expanded:
            pending.append((node, True))
            pending.extend((operand, False) for operand in reversed(operands))
            continue
        folded = [index_of[operand] for operand in operands]
        while len(folded) > 2 and kind == OP:  # a sum or product of several terms, two at a time
            steps.append((OP, name, tuple(folded[:2])))
            folded[:2] = [len(steps) - 1]
        index_of[node] = len(steps)
        steps.append((kind, name, tuple(folded)))
    return tuple(steps)


class _Heads:
    """SymPy heads mapped back to ops (see the module docstring)."""

    def __init__(self, is_native: Callable[[str], bool]):
        self.patterns: dict[tuple, tuple[str, tuple]] = {}  # (head, argument pattern) -> (op, operand order)
        self.subtract = self.divide = None
        for name, op in OPS.items():
            if not (op.is_elementwise and op.sympy is not None and op.arity and is_native(name)):
                continue
            symbols = sp.symbols(f"x0:{op.arity}")
            definition = op.sympy(*symbols)
            if op.arity == 2 and self.subtract is None and definition == symbols[0] - symbols[1]:
                self.subtract = name
            if op.arity == 2 and self.divide is None and definition == symbols[0] / symbols[1]:
                self.divide = name
            pattern = _pattern(definition, symbols)
            if pattern is not None and pattern[0] not in self.patterns:
                self.patterns[pattern[0]] = (name, pattern[1])

    def call(self, node: sp.Expr) -> tuple[str, str, list[sp.Expr]]:
        """(OP or LIBM, op or function name, operand expressions) computing ``node``."""
        if (
            isinstance(node, sp.Add)
            and self.subtract is not None
            and len(node.args) == 2
            and any(_negated(a) is not None for a in node.args)
        ):
            positive, negative = sorted(node.args, key=lambda a: _negated(a) is not None)
            if _negated(positive) is None:
                return OP, self.subtract, [positive, _negated(negative)]
        if isinstance(node, (sp.Mul, sp.Pow)) and self.divide is not None:
            numerator, denominator = sp.fraction(node)
            if denominator != 1:
                return OP, self.divide, [numerator, denominator]
        key = (node.func, tuple(("n", a) if a.is_Number else _WILD for a in node.args))
        if key in self.patterns:
            name, order = self.patterns[key]
            wild = [a for a in node.args if not a.is_Number]
            return OP, name, [wild[position] for position in order]
        binary = self.patterns.get((node.func, (_WILD, _WILD)))
        if binary is not None and len(node.args) >= 2:
            return OP, binary[0], list(node.args)
        function = getattr(node.func, "__name__", "")
        if function in FUNCTIONS and FUNCTIONS[function].arity == len(node.args):
            return LIBM, function, list(node.args)
        raise _NotComposable(node)


def _negated(term: sp.Expr) -> sp.Expr | None:
    """``t`` for a term ``-t`` (``Mul(-1, t)``), else None."""
    if isinstance(term, sp.Mul) and term.args[0] == -1:
        return sp.Mul(*term.args[1:])
    return None


def _pattern(
    definition: sp.Expr, symbols: tuple[sp.Symbol, ...]
) -> tuple[tuple[Any, tuple[object, ...]], tuple[int, ...]] | None:
    """((head, argument pattern), operand order) when ``definition`` is one head applied to the
    op's symbols, each once, and numbers; else None."""
    if not definition.args:
        return None
    pattern: list[object] = []
    order: list[int] = []
    for argument in definition.args:
        if argument.is_Number:
            pattern.append(("n", argument))
        elif argument in symbols and symbols.index(argument) not in order:
            pattern.append(_WILD)
            order.append(symbols.index(argument))
        else:
            return None
    if len(order) != len(symbols):
        return None
    # order[i] is the symbol at the i-th wildcard: the operand of position j is the wildcard holding symbol j
    return (definition.func, tuple(pattern)), tuple(order.index(j) for j in range(len(symbols)))


_HEADS: dict[tuple, _Heads] = {}


def _heads(is_native: Callable[[str], bool], op_count: int) -> _Heads:
    """The head table, built once per (lowering, table size)."""
    key = (is_native, op_count)
    if key not in _HEADS:
        _HEADS.clear()
        _HEADS[key] = _Heads(is_native)
    return _HEADS[key]
