"""Indexing a batch with index arrays: the index template that reads (or writes) each example's
elements, shared by the batching rules of ``getitem``, ``scatter_add`` and ``index_update``.

An index template (``chainrule.ir.structural``) with index arrays is NumPy's advanced indexing.
On a leading batch axis the rules add one more index array, ``arange(size)`` shaped to broadcast
in front of the others, and give batched index arrays a leading axis of that length: each
example then picks from its own row (``take_along_axis``, generalized). NumPy places the axes of
the broadcast index arrays first when the advanced indices (arrays and integers) are not next to
each other, and where they stand otherwise; ``BatchedIndex.order`` is the transpose that puts
the result back in the batched layout, ``(size,) + one example's result shape``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from chainrule.ir.builder import F, Value
from chainrule.ir.types import TensorType

_FULL_SLICE = ("slice", None, None, None)


@dataclass(frozen=True)
class BatchedIndex:
    """The index into the operand with the batch axis, its index arrays, and the transpose from the
    indexed result's axes to the batched layout (None when they already are)."""

    index: tuple[tuple[Any, ...], ...]
    arrays: list[Value]
    order: tuple[int, ...] | None

    def inverse_order(self) -> tuple[int, ...] | None:
        """The transpose from the batched layout to the indexed result's axes (for writes)."""
        return None if self.order is None else tuple(int(i) for i in np.argsort(self.order))


def batched_index(
    index: Sequence[tuple[Any, ...]],
    arrays: Sequence[Value],
    array_types: Sequence[TensorType],
    arrays_batched: Sequence[bool],
    operand_batched: bool,
    size: int,
    result_ndim: int,
) -> BatchedIndex:
    """How to index a batch: ``index`` (one example's template) with ``arrays`` (their logical types
    ``array_types``) into an operand that has the batch axis (``operand_batched``) or not, giving a
    value whose transpose by ``order`` has shape ``(size,) + one example's result shape``
    (``result_ndim`` axes per example)."""
    index = tuple(index)
    if not any(item[0] == "array" for item in index):  # basic indexing: the batch axis is one more slice
        return BatchedIndex((_FULL_SLICE,) + index, list(arrays), None)
    rank = len(np.broadcast_shapes(*(t.shape for t in array_types)))
    advanced = [i for i, item in enumerate(index) if item[0] in ("array", "int")]
    together = advanced == list(range(advanced[0], advanced[-1] + 1))
    lined = [
        F.reshape(v, shape=(size,) + (1,) * (rank - t.ndim) + t.shape) if b else v
        for v, t, b in zip(arrays, array_types, arrays_batched)
    ]
    # axes of one example's result in front of the index arrays' axes, when they stand together
    before = sum(1 for item in index[: advanced[0]] if item[0] in ("slice", "none")) if together else 0
    if operand_batched and not any(arrays_batched) and (not advanced or together):
        # the index arrays pick the same elements of every example: a slice for the batch axis
        return BatchedIndex((_FULL_SLICE,) + index, list(arrays), None)
    if operand_batched:
        graph = arrays[0].graph
        examples = Value(graph, graph.const(np.arange(size).reshape((size,) + (1,) * rank)))
        shifted = tuple(("array", item[1] + 1) if item[0] == "array" else item for item in index)
        new_index = (("array", 0),) + shifted
        order = None
        if before:  # the index arrays' axes came first: (size, arrays, before, after)
            order = (
                (0,)
                + tuple(range(1 + rank, 1 + rank + before))
                + tuple(range(1, 1 + rank))
                + tuple(range(1 + rank + before, 1 + result_ndim))
            )
        return BatchedIndex(new_index, [examples] + lined, order)
    # the operand is one for all examples: the batched index arrays alone carry the batch axis
    order = None
    if before:  # the batch axis stands after the axes in front: (before, size, arrays, after)
        order = (before,) + tuple(range(before)) + tuple(range(before + 1, 1 + result_ndim))
    return BatchedIndex(index, lined, order)


def arranged(value: Value, order: tuple[int, ...] | None) -> Value:
    """``value`` transposed by ``order`` (itself when None)."""
    return value if order is None else F.transpose(value, axes=order)
