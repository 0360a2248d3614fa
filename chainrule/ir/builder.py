"""Values with operators, so graph-building code (derivative rules above all) reads like math.

>>> g = Graph("f"); x = Value(g, g.add_input(TensorType((3,), "float64"), "x"))
>>> y = F.sin(x) * 2.0          # adds sin and mul nodes to g
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Union

import numpy as np

from chainrule.ir.ops import OPS
from chainrule.ir.types import TensorType

if TYPE_CHECKING:
    from chainrule.ir.graph import Graph

_NUMBER_TYPES = (int, float, bool, np.number, np.bool_)

# A Python or NumPy number, lifted to a constant of the weak-scalar dtype where it meets Values.
Number = int | float | bool | np.number | np.bool_
# What an op applies to: a Value of the graph, a number or a constant array.
Operand = Union["Value", Number, np.ndarray]


class Value:
    """A handle on one node of a graph, with NumPy-like operators that add nodes."""

    __slots__ = ("graph", "id")

    def __init__(self, graph: Graph, node_id: int):
        self.graph = graph
        self.id = node_id

    @property
    def type(self) -> TensorType:
        return self.graph.nodes[self.id].type

    @property
    def shape(self) -> tuple[int, ...]:
        return self.graph.nodes[self.id].type.shape

    @property
    def ndim(self) -> int:
        return len(self.graph.nodes[self.id].type.shape)

    @property
    def dtype(self) -> str:
        return self.graph.nodes[self.id].type.dtype

    # Derivative rules are mostly products and sums of Values: those skip apply's lifting of numbers.
    def __add__(self, other: Operand) -> Value:
        return _binary("add", self, other)

    def __radd__(self, other: Operand) -> Value:
        return apply("add", other, self)

    def __sub__(self, other: Operand) -> Value:
        return _binary("sub", self, other)

    def __rsub__(self, other: Operand) -> Value:
        return apply("sub", other, self)

    def __mul__(self, other: Operand) -> Value:
        return _binary("mul", self, other)

    def __rmul__(self, other: Operand) -> Value:
        return apply("mul", other, self)

    def __truediv__(self, other: Operand) -> Value:
        return _binary("div", self, other)

    def __rtruediv__(self, other: Operand) -> Value:
        return apply("div", other, self)

    def __pow__(self, other: Operand) -> Value:
        return _binary("pow", self, other)

    def __rpow__(self, other: Operand) -> Value:
        return apply("pow", other, self)

    def __matmul__(self, other: Operand) -> Value:
        return _binary("matmul", self, other)

    def __neg__(self) -> Value:
        return Value(self.graph, self.graph.add("neg", (self.id,)))

    def __gt__(self, other: Value | Number) -> Value:
        return apply("gt", self, other)

    def __ge__(self, other: Value | Number) -> Value:
        return apply("ge", self, other)

    def __lt__(self, other: Value | Number) -> Value:
        return apply("lt", self, other)

    def __le__(self, other: Value | Number) -> Value:
        return apply("le", self, other)

    @property
    def mT(self) -> Value:
        """The matrix transpose: the last two axes swapped."""
        axes = list(range(self.ndim))
        axes[-2], axes[-1] = axes[-1], axes[-2]
        return F.transpose(self, axes=tuple(axes))

    def __repr__(self) -> str:
        return f"Value(%{self.id}: {self.type})"


def weak_dtype(dtypes: Iterable[str], number: Number = 1.0) -> str:
    """The dtype a Python number takes next to arrays of ``dtypes`` (NumPy 2's weak scalars).

    >>> weak_dtype(["float32"], 0.5)
    'float32'
    """
    if isinstance(number, (bool, np.bool_)):
        return "bool"
    # the value is part of the key: NumPy may look at it (an int too big for int8)
    # classes are hashable; mypy does not see it (python/mypy#11470)
    return _weak_dtype(tuple(dtypes), type(number), number)  # type: ignore[arg-type]


@functools.lru_cache(maxsize=1024)
def _weak_dtype(dtypes: tuple[str, ...], number_type: type, number: Number) -> str:
    arrays = [np.empty(0, d) for d in dtypes]
    return np.result_type(*arrays, number).name if arrays else np.asarray(number).dtype.name


def lift(graph: Graph, operand: Operand, like_dtypes: Iterable[str]) -> int:
    """Node id of ``operand``; a Python number becomes a constant of the weak-scalar dtype."""
    if isinstance(operand, Value):
        return operand.id
    if isinstance(operand, _NUMBER_TYPES) and not isinstance(operand, np.generic):
        return graph.const(operand, dtype=weak_dtype(like_dtypes, operand))
    return graph.const(np.asarray(operand))


def apply(op: str, *operands: Operand, **attrs: object) -> Value:
    """Add ``op(*operands; attrs)`` to the graph of the first Value operand."""
    values = [o for o in operands if isinstance(o, Value)]
    graph = values[0].graph
    if len(values) == len(operands):  # no numbers to lift: the common case, kept short
        return Value(graph, graph.add(op, [v.id for v in values], attrs))
    like = [v.dtype for v in values]
    ids = [lift(graph, o, like) for o in operands]
    return Value(graph, graph.add(op, ids, attrs))


def _binary(op: str, value: Value, other: Operand) -> Value:
    """``op(value, other)``: ``apply``, with a short path for two Values."""
    if type(other) is Value:
        graph = value.graph
        return Value(graph, graph.add(op, (value.id, other.id)))
    return apply(op, value, other)


class _OpNamespace:
    """``F.sin(x)``, ``F.sum(x, axis=(0,), keepdims=False)``: every op in the table as a function."""

    def __getattr__(self, op_name: str) -> Callable[..., Value]:
        if op_name not in OPS:
            raise AttributeError(op_name)
        function = functools.partial(apply, op_name)
        setattr(self, op_name, function)  # found directly from now on: derivative rules call F a lot
        return function


F = _OpNamespace()


def unbroadcast(value: Value, shape: Iterable[int]) -> Value:
    """Sum ``value`` down to ``shape``: the adjoint of NumPy broadcasting to ``value.shape``."""
    shape = tuple(shape)
    if value.shape == shape:
        return value
    lead = value.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(lead + i for i, d in enumerate(shape) if d == 1 and value.shape[lead + i] != 1)
    summed = F.sum(value, axis=axes, keepdims=True) if axes else value
    return F.reshape(summed, shape=shape) if summed.shape != shape else summed


def expand_to(value: Value, kept_shape: Iterable[int], shape: Iterable[int]) -> Value:
    """Reshape a reduced value to its keepdims shape, then broadcast it back to ``shape``."""
    return F.broadcast_to(F.reshape(value, shape=tuple(kept_shape)), shape=tuple(shape))
