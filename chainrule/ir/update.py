"""Writes into arrays, traced functionally: ``index_update(a, v, *index_arrays; index, mode)``.

The result is a new array: ``a`` with ``v`` written at ``index`` (a getitem index template, see
``chainrule.ir.structural``), and ``a`` itself is left as it was. Two modes:

- ``"set"``: ``out[index] = v``, NumPy's assignment. An integer-array index that repeats an element
  writes it several times and the last write wins, so only the last writer's ``v`` element reaches
  the result (and receives its gradient).
- ``"add"``: ``np.add.at(out, index, v)``, which accumulates repeats. NumPy's ``out[index] += v``
  does *not* accumulate them: it is ``out[index] = out[index] + v``, a ``"set"``.

``v`` broadcasts to the shape of ``a[index]`` and has ``a``'s dtype (the frontend casts it, as
NumPy's assignment does). Both modes are linear in ``(a, v)`` jointly, so forward mode is the op
on the tangents. The NumPy lowering copies ``a`` and writes into the copy.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from chainrule.errors import ShapeError
from chainrule.ir.batch_index import arranged, batched_index
from chainrule.ir.builder import F, Value, unbroadcast
from chainrule.ir.elementwise import lined_up
from chainrule.ir.npfuncs import IndexTemplate
from chainrule.ir.ops import LINEAR, Attrs, Op, register, size_of
from chainrule.ir.structural import index_result_shape
from chainrule.ir.types import TensorType

MODES = ("set", "add")


def _is_basic(index: IndexTemplate) -> bool:
    return all(item[0] != "array" for item in index)


def _infer(types: list[TensorType], attrs: Attrs) -> TensorType:
    target, values, *arrays = types
    for t in arrays:
        if not np.issubdtype(np.dtype(t.dtype), np.integer):
            raise ShapeError(f"array indices must be integers, got {t}")
    if attrs["mode"] not in MODES:
        raise ShapeError(f"index_update mode must be one of {MODES}, got {attrs['mode']!r}")
    written = index_result_shape(target.shape, attrs["index"], [t.shape for t in arrays])
    try:
        fits = tuple(np.broadcast_shapes(values.shape, written)) == tuple(written)
    except ValueError:
        fits = False
    if not fits:
        raise ShapeError(f"cannot write values of shape {list(values.shape)} into an index of shape {list(written)}")
    if values.dtype != target.dtype:
        raise ShapeError(f"index_update writes {values.dtype} values into a {target.dtype} array; cast them first")
    return TensorType(target.shape, target.dtype)


def _render(names: list[str], attrs: Attrs) -> str:
    arrays = "".join(f", {n}" for n in names[2:])
    return f"index_update({names[0]}, {names[1]}, {attrs['index']!r}, {attrs['mode']!r}{arrays})"


def _last_writers(written_shape: tuple[int, ...], target: Value, arrays: tuple[Value, ...], index: Any) -> Value:
    """1 where an element of ``a[index]`` is the last write to its position, else 0 (``a``'s dtype).

    Each write is numbered; writing the numbers with the index and reading them back gives, at
    every write, the number of the write that won its position.
    """
    graph = target.graph
    numbers = np.arange(size_of(written_shape), dtype=np.int64).reshape(written_shape)
    slots = Value(graph, graph.zeros(TensorType(target.shape, "int64")))
    winners = F.getitem(F.index_update(slots, numbers, *arrays, index=index, mode="set"), *arrays, index=index)
    return F.cast(F.eq(winners, numbers), dtype=target.dtype)


def _rule_target(g: Value, y: Value, a: Value, v: Value, *arrays: Value, index: Any, mode: str) -> Value:
    if mode == "add":
        return g
    # the written positions were overwritten: no gradient reaches a there
    return F.index_update(g, np.zeros((), g.dtype), *arrays, index=index, mode="set")


def _rule_values(g: Value, y: Value, a: Value, v: Value, *arrays: Value, index: Any, mode: str) -> Value:
    gathered = F.getitem(g, *arrays, index=index)
    if mode == "set" and not _is_basic(index):
        gathered = gathered * _last_writers(gathered.shape, a, arrays, index)
    return unbroadcast(gathered, v.shape)


def _batch(
    operands: list[Value], batched: list[bool], logical: list[TensorType], out_type: TensorType, attrs: Attrs, size: int
) -> Value:
    """The write on a leading batch axis: each example writes into its own row (``ir.batch_index``)."""
    index = tuple(attrs["index"])
    target, values = operands[0], operands[1]
    if not batched[0]:
        target = F.broadcast_to(target, shape=(size,) + logical[0].shape)
    written = index_result_shape(logical[0].shape, index, [t.shape for t in logical[2:]])
    plan = batched_index(index, operands[2:], logical[2:], batched[2:], True, size, len(written))
    if batched[1]:
        values = lined_up(values, True, logical[1], len(written))
    if plan.order is not None:  # the values must be laid out as the index arranges the written elements
        values = F.broadcast_to(values, shape=(size,) + written)
    return F.index_update(
        target, arranged(values, plan.inverse_order()), *plan.arrays, index=plan.index, mode=attrs["mode"]
    )


register(
    Op(
        "index_update",
        "index",
        None,
        _infer,
        _render,
        vjp=lambda operand_index: (_rule_target, _rule_values)[operand_index] if operand_index < 2 else None,
        jvp=LINEAR,
        # one write (or addition) per element of the index
        flops=lambda ins, out, attrs: size_of(
            index_result_shape(ins[0].shape, attrs["index"], [t.shape for t in ins[2:]])
        ),
        batch=_batch,
    )
)
