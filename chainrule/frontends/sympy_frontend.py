"""SymPy as a frontend and as a view: ``from_sympy`` and ``to_sympy``.

``from_sympy(expr, symbols)`` turns an expression into a plain Python function
of NumPy arrays. The expression is translated once into a straight-line
program of op-table primitives; a call runs that program, each step through
the tracer when an operand is traced (so ``cr.grad``, ``cr.jit`` and
``cr.trace`` accept the function like any NumPy code) and through the op's own
NumPy lowering otherwise. Which SymPy function is which primitive comes from
the op table itself: an op whose SymPy definition is ``F(a0, a1, ...)`` is what
``F`` becomes (sin, exp, Abs, Max, <, ...); the rest (Add, Mul, Pow,
Piecewise, ...) is spelled out below.

``to_sympy(fn_or_graph, *args)`` is the way back: the expression of each
output of a scalar or elementwise graph (``chainrule.ir.sympy_export``), for a
function it traces, a graph, or a compiled function (for ``cr.grad``, the
gradient's expression).

Neither recurses over the expression's depth: the translation walks the
expression with an explicit stack, and a program is a list of steps.
"""

from __future__ import annotations

import inspect
import keyword
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
import sympy as sp
from sympy.functions.elementary.piecewise import ExprCondPair

from chainrule.errors import ArgumentError, UnsupportedError
from chainrule.frontends.trace import describe_args, trace_graph
from chainrule.frontends.tracer import Tracer, operation
from chainrule.ir import OPS, Graph
from chainrule.ir.sympy_export import graph_to_sympy, ops_of_sympy_heads

try:  # SymPy's C-style functions, which are primitives here
    from sympy.codegen.cfunctions import expm1 as _sympy_expm1
    from sympy.codegen.cfunctions import log1p as _sympy_log1p
except ImportError:  # pragma: no cover - every supported SymPy has them
    _sympy_expm1 = _sympy_log1p = None


class Step(NamedTuple):
    """One step of a program: ``op`` applied to earlier steps (``operands`` are step indices).

    ``op`` is an op-table name, or ``"arg"`` (``value`` is the argument position)
    or ``"const"`` (``value`` is a Python number).
    """

    op: str
    operands: tuple = ()
    value: object = None


class Program:
    """A straight-line program of primitives computing ``outputs`` from ``arity`` arguments."""

    def __init__(self, steps: list[Step], outputs: list[int], arity: int):
        self.steps, self.outputs = _without_dead_steps(steps, outputs)
        self.arity = arity

    def __len__(self) -> int:
        return len(self.steps)

    def __call__(self, *args):
        values: list = []
        append = values.append
        for op, operands, value in self.steps:
            if op == "arg":
                append(args[value])
            elif op == "const":
                append(value)
            else:
                append(_apply(op, [values[k] for k in operands]))
        return [values[k] for k in self.outputs]


def _apply(op_name: str, operands: list):
    if any(isinstance(o, Tracer) for o in operands):
        return operation(op_name, *operands)
    with np.errstate(all="ignore"):  # eager NumPy semantics: inf and nan are values, not errors
        return OPS[op_name].eager(*operands)


def _without_dead_steps(steps: list[Step], outputs: list[int]):
    """Drop the steps no output needs (the translation makes a few alternatives), renumbered."""
    live = bytearray(len(steps))
    for k in outputs:
        live[k] = 1
    for index in range(len(steps) - 1, -1, -1):
        if live[index]:
            for k in steps[index].operands:
                live[k] = 1
    renumber, kept = {}, []
    for index, step in enumerate(steps):
        if live[index]:
            renumber[index] = len(kept)
            kept.append(Step(step.op, tuple(renumber[k] for k in step.operands), step.value))
    return kept, [renumber[k] for k in outputs]


# ---- SymPy -> program ----------------------------------------------------------------------

# SymPy functions without a primitive of their own: sec(x) = 1/cos(x), ...; and the n-ary Max, Min,
# And, Or, folded pairwise into the binary primitive.
_RECIPROCALS = {sp.sec: "cos", sp.csc: "sin", sp.cot: "tan", sp.sech: "cosh", sp.csch: "sinh", sp.coth: "tanh"}
_FOLDED = {sp.Max: "maximum", sp.Min: "minimum", sp.And: "logical_and", sp.Or: "logical_or"}


class _Translator:
    """Builds a Program from expressions; one ``visit`` per distinct SymPy node (by identity)."""

    def __init__(self, symbols: Sequence):
        self.function_ops = ops_of_sympy_heads()
        self.steps: list[Step] = []
        self.value: dict[int, int] = {}  # id(node) -> its step
        self.keep_alive: list = []  # nodes whose id() is a key above
        # id(node) -> step of its positive part / of what it is the reciprocal of, where the
        # parent can use that directly: a - b rather than a + (-1)*b, a / b rather than a * b**-1
        self.negated: dict[int, int] = {}
        self.reciprocal: dict[int, int] = {}
        self.constants: dict = {}
        for position, symbol in enumerate(symbols):
            self.value[id(symbol)] = self._emit("arg", (), position)
            self.keep_alive.append(symbol)
        self.symbol_names = {s: i for i, s in enumerate(symbols)}
        self.symbols = list(symbols)

    def _emit(self, op: str, operands: tuple = (), value=None) -> int:
        self.steps.append(Step(op, tuple(operands), value))
        return len(self.steps) - 1

    def const(self, number) -> int:
        key = (type(number), number)
        if key not in self.constants:
            self.constants[key] = self._emit("const", (), number)
        return self.constants[key]

    def translate(self, expression) -> int:
        """The step computing ``expression``: every node visited after its arguments (explicit stack)."""
        stack = [(expression, False)]
        while stack:
            node, expanded = stack.pop()
            if id(node) in self.value:
                continue
            if expanded or not node.args:
                self.value[id(node)] = self.visit(node)
                self.keep_alive.append(node)
                continue
            stack.append((node, True))
            stack.extend((a, False) for a in reversed(node.args) if id(a) not in self.value)
        return self.value[id(expression)]

    # Each visit sees its arguments' steps in self.value.
    def arg(self, node) -> int:
        return self.value[id(node)]

    def visit(self, node) -> int:
        if node.is_Symbol:
            # an equal symbol that is another object (SymPy's cache evicted the user's and built it anew)
            position = self.symbol_names.get(node)
            if position is not None:
                return self.value[id(self.symbols[position])]
            raise UnsupportedError(f"from_sympy: the expression has the free symbol {node}, which is not one "
                                   f"of the symbols given ({', '.join(map(str, self.symbol_names))})")
        if node is sp.true or node is sp.false:
            return self.const(bool(node))
        if node.is_Number or isinstance(node, sp.NumberSymbol):
            try:
                return self.const(float(node))  # oo and nan are floats too
            except TypeError:  # zoo, the complex infinity
                raise UnsupportedError(f"from_sympy: {node} is not a real number") from None
        if node is sp.I:
            raise UnsupportedError("from_sympy: the expression has the imaginary unit; chainrule computes "
                                   "with real numbers")
        func = node.func
        if func is sp.Add:
            return self.add(node)
        if func is sp.Mul:
            return self.mul(node)
        if func is sp.Pow:
            return self.pow(node)
        if func is sp.Piecewise:
            return self.piecewise(node)
        if func is ExprCondPair:
            return -1  # read by its Piecewise through the pair's own arguments
        op_name = self.function_ops.get(func)
        if op_name is not None and len(node.args) == OPS[op_name].arity:
            return self._emit(op_name, tuple(self.arg(a) for a in node.args))
        if func in _FOLDED:
            result = self.arg(node.args[0])
            for a in node.args[1:]:
                result = self._emit(_FOLDED[func], (result, self.arg(a)))
            return result
        if func in _RECIPROCALS:
            inner = self._emit(_RECIPROCALS[func], (self.arg(node.args[0]),))
            return self._emit("div", (self.const(1.0), inner))
        if func is sp.Heaviside:
            return self.heaviside(node)
        if _sympy_expm1 is not None and func in (_sympy_expm1, _sympy_log1p):
            return self._emit("expm1" if func is _sympy_expm1 else "log1p", (self.arg(node.args[0]),))
        raise UnsupportedError(f"from_sympy: {func.__name__} has no chainrule primitive; write it with the "
                               "elementary functions (sin, exp, log, Abs, Max, Piecewise, ...)")

    def add(self, node) -> int:
        terms = node.args
        result = self.arg(terms[0])
        for term in terms[1:]:
            positive = self.negated.get(id(term))
            result = self._emit("sub", (result, positive)) if positive is not None \
                else self._emit("add", (result, self.arg(term)))
        return result

    def mul(self, node) -> int:
        coefficient, *factors = node.args if node.args[0].is_Number else (sp.Integer(1),) + node.args
        numerator = [self.arg(f) for f in factors if id(f) not in self.reciprocal]
        denominator = [self.reciprocal[id(f)] for f in factors if id(f) in self.reciprocal]
        if coefficient.is_Rational:  # 2*x/3 as (2*x)/3, so the graph holds no rounded 2/3
            p, q = abs(coefficient.p), coefficient.q
            if p != 1:
                numerator.insert(0, self.const(float(p)))
            if q != 1:
                denominator.insert(0, self.const(float(q)))
        elif abs(coefficient) != 1:
            numerator.insert(0, self.const(float(abs(coefficient))))
        product = self._product(numerator)
        if denominator:
            product = self._emit("div", (product if product is not None else self.const(1.0),
                                         self._product(denominator)))
        if product is None:
            product = self.const(1.0)
        if coefficient.is_negative:
            self.negated[id(node)] = product
            return self._emit("neg", (product,))
        return product

    def _product(self, factors: list) -> int | None:
        if not factors:
            return None
        result = factors[0]
        for factor in factors[1:]:
            result = self._emit("mul", (result, factor))
        return result

    def pow(self, node) -> int:
        base, exponent = node.args
        b = self.arg(base)
        if exponent.is_Number and exponent.is_negative:
            positive = self._power(b, -exponent)
            self.reciprocal[id(node)] = positive
            return self._emit("div", (self.const(1.0), positive))
        return self._power(b, exponent)

    def _power(self, base: int, exponent) -> int:
        if exponent == 1:
            return base
        if exponent == sp.Rational(1, 2):
            return self._emit("sqrt", (base,))
        e = self.arg(exponent) if id(exponent) in self.value else self.const(float(exponent))
        return self._emit("pow", (base, e))

    def piecewise(self, node) -> int:
        pairs = [(self.arg(pair.args[0]), pair.args[1]) for pair in node.args]
        expression, condition = pairs[-1]
        result = expression if condition is sp.true else \
            self._emit("where", (self.arg(condition), expression, self.const(float("nan"))))
        for expression, condition in reversed(pairs[:-1]):
            result = self._emit("where", (self.arg(condition), expression, result))
        return result

    def heaviside(self, node) -> int:
        x = self.arg(node.args[0])
        at_zero = self.arg(node.args[1]) if len(node.args) > 1 else self.const(0.5)  # SymPy's H(0) = 1/2
        zero = self.const(0.0)
        inner = self._emit("where", (self._emit("eq", (x, zero)), at_zero, zero))
        return self._emit("where", (self._emit("gt", (x, zero)), self.const(1.0), inner))


def _parameter_names(symbols: Sequence) -> list[str]:
    names = []
    for position, symbol in enumerate(symbols):
        name = str(symbol)
        if not name.isidentifier() or keyword.iskeyword(name) or name in names:
            name = f"x{position}"
        names.append(name)
    return names


def from_sympy(expr, symbols, name: str = "sympy_fn") -> Callable:
    """A NumPy function of ``symbols`` that computes ``expr`` (a tuple of them for a sequence).

    >>> import sympy as sp, numpy as np, chainrule as cr
    >>> x = sp.Symbol("x")
    >>> f = cr.from_sympy(sp.sin(x) * x, [x])
    >>> float(cr.grad(f)(np.float64(0.0)))
    0.0

    Its parameters are named after the symbols, so traced graphs and generated
    code use those names; ``f.expr`` and ``f.symbols`` keep what it was made from,
    and ``cr.to_sympy(f)`` gives the expression back.
    """
    symbols = [symbols] if isinstance(symbols, sp.Basic) else list(symbols)
    for symbol in symbols:
        if not isinstance(symbol, sp.Symbol):
            raise ArgumentError(f"from_sympy needs SymPy symbols to name the arguments, got {symbol!r}")
    several = isinstance(expr, (list, tuple))
    expressions = [sp.sympify(e) for e in (expr if several else [expr])]
    translator = _Translator(symbols)
    outputs = [translator.translate(e) for e in expressions]
    program = Program(translator.steps, outputs, len(symbols))
    parameter_names = _parameter_names(symbols)

    def evaluate(*args):
        if len(args) != len(symbols):
            raise ArgumentError(f"{name} takes {len(symbols)} arguments ({', '.join(parameter_names)}), "
                                f"got {len(args)}")
        # Python numbers as NumPy scalars, so 1/x at x = 0 is inf as in NumPy, not a ZeroDivisionError
        results = program(*(np.float64(a) if type(a) in (int, float) else a for a in args))
        return tuple(results) if several else results[0]

    evaluate.__name__ = evaluate.__qualname__ = name
    evaluate.__signature__ = inspect.Signature(
        [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in parameter_names])
    evaluate.__doc__ = f"{name}({', '.join(parameter_names)}), made by chainrule.from_sympy."
    evaluate.expr = expr
    evaluate.symbols = tuple(symbols)
    evaluate.program = program
    return evaluate


# ---- graph, traced function or compiled function -> SymPy ----------------------------------

def to_sympy(fn_or_graph, *args, symbols: Sequence | dict | None = None):
    """The SymPy expression of a scalar or elementwise computation (a tuple for several outputs).

    - a ``Graph``: its outputs;
    - a function and example arguments: the function traced on them (Python
      floats are traced too: they are the variables here). A function made by
      ``from_sympy`` needs no arguments: scalars stand in for its symbols;
    - a compiled function (``cr.grad(f)``, ``cr.value_and_grad(f)``, ``cr.jit(f)``)
      and its arguments: for ``grad``, the gradient's expression(s), taken from
      the graph right after differentiation; otherwise every output.

    ``symbols`` names the inputs (a sequence in input order, or a dict from
    input name to symbol); by default they are real symbols named after the
    arguments, or the symbols a ``from_sympy`` function was made from.

    >>> import numpy as np, chainrule as cr
    >>> cr.to_sympy(cr.grad(lambda x: np.sin(x) * x), 1.0)
    x*cos(x) + sin(x)
    """
    if symbols is None:
        symbols = _symbols_of(fn_or_graph)
    if isinstance(fn_or_graph, Graph):
        graph, outputs = fn_or_graph, None
    else:
        if not args:
            args = _scalar_arguments(fn_or_graph)
        args = tuple(np.float64(a) if type(a) is float else a for a in args)
        transform = getattr(fn_or_graph, "transform", None)
        if transform is not None and hasattr(fn_or_graph, "graph"):
            graph, outputs = _compiled_graph(fn_or_graph, transform, args)
        elif callable(fn_or_graph):
            spec, leaves = describe_args(fn_or_graph, args, ())
            graph, outputs = trace_graph(fn_or_graph, spec, leaves)[0], None
        else:
            raise ArgumentError(f"to_sympy needs a Graph or a function, got {type(fn_or_graph).__name__}")
    expressions = graph_to_sympy(graph, outputs, symbols)
    return expressions[0] if len(expressions) == 1 else tuple(expressions)


def _compiled_graph(compiled, transform: str, args: tuple):
    if transform in ("grad", "value_and_grad"):
        # the joint graph as autodiff made it: primitives only (later stages fuse them)
        graph = compiled.graph(*args, stage="grad")
        if transform == "grad":
            forward_outputs = len(compiled.graph(*args, stage="traced").outputs)
            return graph, graph.outputs[forward_outputs:]
        return graph, None
    return compiled.graph(*args, stage="traced"), None


def _wrapped_chain(fn):
    seen = set()
    while fn is not None and id(fn) not in seen:
        seen.add(id(fn))
        yield fn
        fn = getattr(fn, "fn", None) or getattr(fn, "__wrapped__", None)


def _symbols_of(fn) -> dict | None:
    """The symbols a from_sympy function (possibly under grad or jit) was made from, by parameter name."""
    for candidate in _wrapped_chain(fn):
        symbols = getattr(candidate, "symbols", None)
        if isinstance(symbols, tuple) and all(isinstance(s, sp.Symbol) for s in symbols):
            return dict(zip(_parameter_names(symbols), symbols))
    return None


def _scalar_arguments(fn) -> tuple:
    for candidate in _wrapped_chain(fn):
        symbols = getattr(candidate, "symbols", None)
        if isinstance(symbols, tuple):
            return tuple(np.float64(1.0) for _ in symbols)
    raise ArgumentError("to_sympy needs example arguments to trace this function: to_sympy(fn, 1.0, 2.0)")
