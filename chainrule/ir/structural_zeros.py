"""Structural zeros: the elements of each value that are 0 wherever they are defined, whatever
the inputs, so that their derivative is exactly 0.

A row of ``np.zeros`` not overwritten by ``padded[1] = x[0]``, ``x - x``, ``x * (x - x)``, the
sum or the norm of such elements: a chain of derivative rules cannot see that these are
constant and meets ``sqrt'(0) = inf`` or ``cbrt'(0) = inf`` times a computed 0, NaN, where the
true derivative exists and is 0. Both modes use the masks this module finds: a value whose
every element is a structural zero (``vanishing``) sends no derivative at all (as ``x - x``
does, ``ops.SELF_CANCELLING``), and one with some (``partial``) has its derivative set to 0
there by a ``where`` after an op whose rule can be infinite at 0.

How an op maps its operands' masks is found from the registry, not listed per op: an
elementwise op keeps the elements where it gives 0 at 0 (probed on the NumPy function), a
product or a quotient the zeros of any factor or of its numerator; reductions keep an element
whose every reduced element is zero (``prod``: any); shape and index ops run their own NumPy
function on the masks. An element that is 0 only for some inputs is never a structural zero.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from chainrule.ir.graph import Graph
from chainrule.ir.node import Node
from chainrule.ir.ops import OPS, cancels_itself

# Self-cancelling ops whose value at equal operands is 0 (x / x is 1, arctan2(x, x) is ±π/4).
_ZERO_WHEN_CANCELLED = frozenset({"sub", "fmod", "mod"})
# Ops whose derivative is finite wherever their operands are: no guard needed after them.
_FINITE_DERIVATIVE = frozenset({"add", "sub", "mul", "neg", "cast", "where"})


@dataclass
class StructuralZeros:
    """``vanishing``: nodes whose every element is a structural zero; ``partial``: node -> mask of
    its structurally zero elements, for nodes with some but not all."""

    vanishing: set[int] = field(default_factory=set)
    partial: dict[int, np.ndarray] = field(default_factory=dict)

    def mask(self, graph: Graph, node_id: int) -> np.ndarray | None:
        if node_id in self.vanishing:
            return np.broadcast_to(np.True_, graph.type(node_id).shape)
        return self.partial.get(node_id)


def structural_zeros(graph: Graph, size: int | None = None) -> StructuralZeros:
    """The structural zeros of the first ``size`` nodes of ``graph`` (all by default); one walk in
    id order (ids are a topological order)."""
    zeros = StructuralZeros()
    nodes = graph.nodes
    for node_id in range(len(nodes) if size is None else size):
        node = nodes[node_id]
        if node.op == "input" or not graph.type(node_id).is_float:
            continue
        mask = _node_mask(graph, zeros, node_id)
        if mask is None or not mask.any():
            continue
        if mask.all():
            zeros.vanishing.add(node_id)
        else:
            zeros.partial[node_id] = np.ascontiguousarray(mask)
    return zeros


def _node_mask(graph: Graph, zeros: StructuralZeros, node_id: int) -> np.ndarray | None:
    node = graph.nodes[node_id]
    op, args, shape = OPS[node.op], node.args, graph.type(node_id).shape
    if node.op == "zeros" or (op.is_elementwise and cancels_itself(node.op, args) and node.op in _ZERO_WHEN_CANCELLED):
        return np.broadcast_to(np.True_, shape)
    if node.op == "const":
        value = graph.constant(node_id)
        return None if value.size > 1 << 16 else value == 0  # big constants: not worth a mask
    masks = [zeros.mask(graph, a) for a in args]
    if all(m is None for m in masks):
        return None
    if op.is_elementwise:
        return _elementwise_mask(graph, node, masks, shape)
    if op.kind == "reduction" and masks[0] is not None:
        combine = np.any if node.op == "prod" else np.all
        return combine(masks[0], axis=node.params["axis"], keepdims=node.params["keepdims"])
    if op.kind in ("shape", "index") and node.op != "scatter_add":
        return _structural_mask(graph, node.op, args, masks, node.params)
    return None


def _elementwise_mask(graph: Graph, node: Node, masks: list, shape: tuple[int, ...]) -> np.ndarray | None:
    name, args = node.op, node.args
    if name == "mul":
        present = [np.broadcast_to(m, shape) for m in masks if m is not None]
        return np.logical_or.reduce(present) if len(present) > 1 else present[0]
    if name == "div":
        return None if masks[0] is None else np.broadcast_to(masks[0], shape)
    if name == "where":
        condition = graph.const_value(args[0])
        if condition is None:
            return None
        branches = [np.zeros((), bool) if m is None else m for m in masks[1:]]
        return np.broadcast_to(np.where(condition, *branches), shape)
    if any(m is None for m in masks) or not _zero_at_zero(name, len(args), node.attrs):
        return None
    return np.broadcast_to(np.logical_and.reduce([np.broadcast_to(m, shape) for m in masks]), shape)


def _structural_mask(graph: Graph, name: str, args: tuple[int, ...], masks: list, params: dict) -> np.ndarray | None:
    """A shape or index op on the masks themselves (index arrays must be constants)."""
    operands = []
    for position, (arg, mask) in enumerate(zip(args, masks)):
        if graph.type(arg).is_float:
            operands.append(np.zeros(graph.type(arg).shape, bool) if mask is None else mask)
            continue
        value = graph.const_value(arg)
        if value is None or position == 0:
            return None  # a traced index: where it writes is not known here
        operands.append(value)
    if name == "index_update" and params.get("mode") != "set":
        return None
    return np.asarray(OPS[name].eager(*operands, **params), dtype=bool)


def needs_guard(node: Node) -> bool:
    """Whether the derivative of this elementwise node may be infinite or NaN at a structural zero
    of an operand: a unary op whose difference quotient at 0 is huge (sqrt, cbrt, log), any binary op
    but the arithmetic ones (hypot and arctan2 at (0, 0) are 0 / 0)."""
    return OPS[node.op].is_elementwise and node.op not in _FINITE_DERIVATIVE and _steep_at_zero(node.op, node.attrs)


def away_from_zeros(
    graph: Graph, node: Node, args: Sequence[int], masks: dict[int, np.ndarray]
) -> tuple[int, tuple[int, ...]]:
    """Where a guarded node's derivative rule is evaluated: ``args`` (the node's operands in
    ``graph``) with the elements ``masks`` names (operand position -> mask of its shape) moved to 1,
    and the node recomputed on them; returns (that output, those operands). The caller's guard sets
    the rule's value at those elements to 0 anyway, so the move changes no result, only what NumPy
    sees: evaluated at the zeros, sqrt's rule divides by 0 and warns on every call."""
    moved = list(args)
    for position, mask in masks.items():
        arg = args[position]
        one = graph.const(np.ones((), graph.type(arg).dtype))
        moved[position] = graph.add("where", (graph.const(mask), one, arg))
    return graph.add(node.op, moved, node.params), tuple(moved)


@functools.cache
def _steep_at_zero(name: str, attrs: tuple) -> bool:
    if OPS[name].arity != 1:
        return True
    points = np.array([1e-200, -1e-200, 0.0])
    with np.errstate(all="ignore"):
        try:
            values = np.asarray(OPS[name].eager(points, **dict(attrs)), dtype=float)
            quotient = (values[:2] - values[2]) / points[:2]
        except Exception:  # an op NumPy cannot run on floats: guard, to be safe
            return True
    return not bool(np.all(np.isfinite(quotient) & (np.abs(quotient) < 1e6)))


@functools.cache
def _zero_at_zero(name: str, arity: int, attrs: tuple) -> bool:
    """Whether the elementwise op gives exactly +0 when every operand is +0 (probed on NumPy)."""
    with np.errstate(all="ignore"):
        try:
            value = np.asarray(OPS[name].eager(*([np.zeros(1)] * arity), **dict(attrs)))
        except Exception:  # an op that refuses float zeros (integer-only) keeps no mask
            return False
    return bool(value.dtype.kind == "f" and value[0] == 0 and not np.signbit(value[0]))
