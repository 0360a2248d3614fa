"""SymPy as a frontend and as a view: ``from_sympy`` and ``to_sympy``.

Both are thin wrappers over ``chainrule.ir.sympy_bridge``, the one translation
between graphs and SymPy (which the symbolic-region pass uses too).

``from_sympy(expr, symbols)`` turns an expression into a plain Python function
of NumPy arrays. The bridge builds the expression once into a graph over scalar
inputs; a call runs that graph's nodes on the arguments, each through the
tracer when an operand is traced (so ``cr.grad``, ``cr.jit`` and ``cr.trace``
accept the function like any NumPy code) and through the op's own NumPy
lowering otherwise.

``to_sympy(fn_or_graph, *args)`` is the way back: the expression of each
output of a scalar or elementwise graph, for a function it traces, a graph, or
a compiled function (for ``cr.grad``, the gradient's expression).

Neither recurses over the expression's depth (see the bridge), and a program
is a list of steps.
"""

from __future__ import annotations

import inspect
import keyword
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import sympy as sp

from chainrule.errors import ArgumentError, UnsupportedError
from chainrule.frontends.trace import describe_args, trace_graph
from chainrule.frontends.tracer import Tracer, operation
from chainrule.ir import OPS, Graph, TensorType
from chainrule.ir.sympy_bridge import build, graph_to_sympy


class Program:
    """A graph of primitives over scalar inputs, run on the arguments of a call: each node through
    the tracer when an operand is traced, and through the op's own NumPy lowering otherwise."""

    def __init__(self, graph: Graph):
        # (op, operand ids, attrs, value) per live node: an input's value is its position; a
        # constant's its Python number (weakly typed, as NumPy takes a scalar in an expression)
        self.steps: list[tuple[int, str, tuple[int, ...], dict, Any]] = []
        for node_id in graph.live_nodes():
            node = graph[node_id]
            value = None
            constant = graph.const_value(node_id)
            if node.op == "input":
                value = node.params["index"]
            elif node.op == "const" and constant is not None:
                value = constant.item()
            self.steps.append((node_id, node.op, node.args, node.params, value))
        self.outputs = list(graph.outputs)

    def __call__(self, *args: Any) -> list[Any]:
        values: dict[int, Any] = {}
        for node_id, op, operands, attrs, value in self.steps:
            if op == "input":
                values[node_id] = args[value]
            elif op == "const":
                values[node_id] = value
            else:
                values[node_id] = _apply(op, [values[k] for k in operands], attrs)
        return [values[k] for k in self.outputs]


def _apply(op_name: str, operands: list, attrs: dict) -> Any:
    if any(isinstance(o, Tracer) for o in operands):
        return operation(op_name, *operands, **attrs)
    with np.errstate(all="ignore"):  # eager NumPy semantics: inf and nan are values, not errors
        return OPS[op_name].eager(*operands, **attrs)


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
    parameter_names = _parameter_names(symbols)
    graph = Graph(name)
    inputs = {
        symbol: graph.add_input(TensorType((), "float64"), parameter)
        for symbol, parameter in zip(symbols, parameter_names, strict=True)
    }
    try:
        graph.set_outputs(build(graph, expressions, inputs))
    except UnsupportedError as error:
        raise UnsupportedError(f"from_sympy: {error}") from None
    program = Program(graph)

    def evaluate(*args):
        if len(args) != len(symbols):
            raise ArgumentError(
                f"{name} takes {len(symbols)} arguments ({', '.join(parameter_names)}), got {len(args)}"
            )
        # Python numbers as NumPy scalars, so 1/x at x = 0 is inf as in NumPy, not a ZeroDivisionError
        results = program(*(np.float64(a) if type(a) in (int, float) else a for a in args))
        return tuple(results) if several else results[0]

    evaluate.__name__ = evaluate.__qualname__ = name
    evaluate.__doc__ = f"{name}({', '.join(parameter_names)}), made by chainrule.from_sympy."
    # attributes of the function object (its __dict__), which a type checker does not know of
    evaluate.__dict__.update(
        __signature__=inspect.Signature(
            [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in parameter_names]
        ),
        expr=expr,
        symbols=tuple(symbols),
        program=program,
    )
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
