"""Where a value's elements are (``View``: a slot, a byte offset, strides), and the view ops as
strided reads of their operand: no code, no copy."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from chainrule.backends.llvm.strides import contiguous_strides

if TYPE_CHECKING:
    from chainrule.ir import Node


@dataclass(frozen=True)
class View:
    """Where a value's elements are: table slot, byte offset, shape, strides (elements), dtype."""

    slot: int
    offset: int
    shape: tuple[int, ...]
    strides: tuple[int, ...]
    dtype: str

    @property
    def itemsize(self) -> int:
        return np.dtype(self.dtype).itemsize

    def broadcast_to(self, shape: tuple[int, ...]) -> View:
        lead = len(shape) - len(self.shape)
        strides = [0] * lead + [
            0 if (d == 1 and s != 1) else stride for d, s, stride in zip(self.shape, shape[lead:], self.strides)
        ]
        return View(self.slot, self.offset, tuple(shape), tuple(strides), self.dtype)

    @property
    def is_contiguous(self) -> bool:
        return all(d == 1 or s == c for d, s, c in zip(self.shape, self.strides, contiguous_strides(self.shape)))


# ---- the view ops: (operand's view, node) -> the result's view, or None (it must be computed) ----


def identity_view(source: View, node: Node) -> View | None:
    return source


def transpose_view(source: View, node: Node) -> View | None:
    axes = node.params["axes"]
    return View(source.slot, source.offset, node.type.shape, tuple(source.strides[a] for a in axes), source.dtype)


def broadcast_view(source: View, node: Node) -> View | None:
    return source.broadcast_to(node.type.shape)


def reshape_view(source: View, node: Node) -> View | None:
    if not source.is_contiguous:
        return None
    shape = node.type.shape
    return View(source.slot, source.offset, shape, contiguous_strides(shape), source.dtype)


def index_view(source: View, node: Node) -> View | None:
    """``source[index]`` for an index of slices, ints and None (an integer-array index is a gather)."""
    if len(node.args) != 1:
        return None
    offset = source.offset
    strides: list[int] = []
    out_shape: list[int] = []
    dim = 0
    itemsize = source.itemsize
    for item in node.params["index"]:
        kind = item[0]
        if kind == "none":
            out_shape.append(1)
            strides.append(0)
            continue
        if dim >= len(source.shape):
            return None
        size, stride = source.shape[dim], source.strides[dim]
        if kind == "int":
            position = item[1] + size if item[1] < 0 else item[1]
            offset += position * stride * itemsize
        elif kind == "slice":
            start, stop, step = slice(*item[1:]).indices(size)
            length = len(range(start, stop, step))
            offset += (start * stride * itemsize) if length else 0
            out_shape.append(length)
            strides.append(stride * step)
        else:
            return None
        dim += 1
    out_shape += list(source.shape[dim:])
    strides += list(source.strides[dim:])
    if tuple(out_shape) != tuple(node.type.shape):
        return None
    return View(source.slot, offset, tuple(out_shape), tuple(strides), source.dtype)


# ---- matrices for BLAS --------------------------------------------------------------------------


def matrices(a: View, b: View) -> tuple[View, View, tuple[int, ...]]:
    """The operands as (batch..., rows, columns) views (1-D ones as a row or a column, as NumPy
    does) broadcast to the product's batch shape, and that batch shape."""
    if len(a.shape) == 1:
        a = View(a.slot, a.offset, (1,) + a.shape, (0,) + a.strides, a.dtype)
    if len(b.shape) == 1:
        b = View(b.slot, b.offset, b.shape + (1,), b.strides + (0,), b.dtype)
    batch = tuple(np.broadcast_shapes(a.shape[:-2], b.shape[:-2]))
    a = a.broadcast_to(batch + a.shape[-2:]) if batch else a
    b = b.broadcast_to(batch + b.shape[-2:]) if batch else b
    return a, b, batch


def gemm_layout(matrix: View) -> tuple[str, int] | None:
    """("N", ld) for a row-major matrix (its transpose is column-major), ("T", ld) for a
    column-major one, or None when neither (the matrix must be copied first)."""
    rows, columns = matrix.shape[-2:]
    row_stride, column_stride = matrix.strides[-2:]
    if (columns == 1 or column_stride == 1) and (rows == 1 or row_stride >= max(columns, 1)):
        return "N", max(row_stride if rows > 1 else columns, columns, 1)
    if (rows == 1 or row_stride == 1) and (columns == 1 or column_stride >= max(rows, 1)):
        return "T", max(column_stride if columns > 1 else rows, rows, 1)
    return None
