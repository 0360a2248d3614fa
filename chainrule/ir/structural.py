"""Non-elementwise primitives: sources, matmul, shape ops, indexing (reductions: ``reductions.py``).

Each entry's batching rule (``batch``) takes ``(operands, batched, logical types,
out type, attrs, size)``: the operands as values of the vectorized graph (a
batched one has a leading axis of length ``size``), which of them are batched,
their types without that axis, the node's own result type and attributes; it
returns the node's value with the batch axis leading (see
``chainrule.compiler.batch``). Sources have no operands, so nothing to batch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from chainrule.errors import ShapeError
from chainrule.ir.batch_index import arranged, batched_index
from chainrule.ir.builder import F, Value, unbroadcast
from chainrule.ir.elementwise import lined_up
from chainrule.ir.ops import (
    LINEAR,
    MULTILINEAR,
    Attrs,
    Op,
    VjpRule,
    register,
    size_of,
)
from chainrule.ir.types import TensorType

# ---- sources -----------------------------------------------------------------------------

register(
    Op(
        "input",
        "source",
        0,
        lambda types, a: TensorType(a["shape"], a["dtype"]),
        lambda names, a: f"<input {a['index']}>",
        interned=False,
    )
)
register(
    Op(
        "const",
        "source",
        0,
        lambda types, a: TensorType(a["value"].array.shape, a["value"].array.dtype),
        lambda names, a: f"np.asarray({a['value'].array.tolist()!r}, np.{a['value'].array.dtype.name})",
    )
)
register(
    Op(
        "zeros",
        "source",
        0,
        lambda types, a: TensorType(a["shape"], a["dtype"]),
        lambda names, a: f"np.zeros({a['shape']!r}, np.{a['dtype']})",
    )
)

# ---- matmul ------------------------------------------------------------------------------


def _infer_matmul(types: list[TensorType], attrs: Attrs) -> TensorType:
    a, b = types
    if a.ndim == 0 or b.ndim == 0:
        raise ShapeError(f"matmul needs arrays of at least 1 dimension, got shapes {list(a.shape)} and {list(b.shape)}")
    a_shape = a.shape if a.ndim > 1 else (1,) + a.shape
    b_shape = b.shape if b.ndim > 1 else b.shape + (1,)
    if a_shape[-1] != b_shape[-2]:
        raise ShapeError(
            f"matmul of shapes {list(a.shape)} and {list(b.shape)}: inner dimensions differ "
            f"({a_shape[-1]} != {b_shape[-2]})"
        )
    try:
        batch = tuple(np.broadcast_shapes(a_shape[:-2], b_shape[:-2]))
    except ValueError:
        raise ShapeError(
            f"matmul of shapes {list(a.shape)} and {list(b.shape)}: batch dimensions do not broadcast"
        ) from None
    shape = batch + (a_shape[-2],) * (a.ndim > 1) + (b_shape[-1],) * (b.ndim > 1)
    return TensorType(shape, np.result_type(a.dtype, b.dtype).name)


def _as_matrices(g: Value, a: Value, b: Value) -> tuple[Value, Value, Value]:
    """Operands and cotangent of a matmul with 1-D operands made 2-D, as NumPy does."""
    a2 = a if a.ndim > 1 else F.reshape(a, shape=(1,) + a.shape)
    b2 = b if b.ndim > 1 else F.reshape(b, shape=b.shape + (1,))
    out_shape = tuple(np.broadcast_shapes(a2.shape[:-2], b2.shape[:-2])) + (a2.shape[-2], b2.shape[-1])
    return F.reshape(g, shape=out_shape), a2, b2


def _matmul_rule_a(g: Value, y: Value, a: Value, b: Value) -> Value:
    g2, a2, b2 = _as_matrices(g, a, b)
    return F.reshape(unbroadcast(g2 @ b2.mT, a2.shape), shape=a.shape)


def _matmul_rule_b(g: Value, y: Value, a: Value, b: Value) -> Value:
    g2, a2, b2 = _as_matrices(g, a, b)
    return F.reshape(unbroadcast(a2.mT @ g2, b2.shape), shape=b.shape)


def _matmul_flops(ins: list[TensorType], out: TensorType, attrs: Attrs) -> int:
    # N·M·T multiplications + (M−1)·N·T additions, as seed 000 counts a matmul (a 1-D operand
    # is a matrix of one row or column; the batch is in out.size). An empty inner dimension: none.
    inner = ins[0].shape[-1]
    return out.size * inner + out.size * (inner - 1) if inner else 0


def _batch_matmul(
    operands: list[Value], batched: list[bool], logical: list[TensorType], out_type: TensorType, attrs: Attrs, size: int
) -> Value:
    # 1-D operands become matrices as NumPy makes them (a row, b a column); batched ones get their
    # batch axis in front of broadcastable batch dimensions of the other operand's rank.
    (a, b), (a_type, b_type) = operands, logical
    a_matrix = (1,) + a_type.shape if a_type.ndim == 1 else a_type.shape
    b_matrix = b_type.shape + (1,) if b_type.ndim == 1 else b_type.shape
    if batched[0] and not batched[1] and len(b_matrix) == 2:
        # one matrix for every example: the examples' rows stacked make one matrix product (one GEMM)
        rows = F.reshape(a, shape=(size * math.prod(a_matrix[:-1]), a_matrix[-1]))
        b_2d = b if b_type.ndim == 2 else F.reshape(b, shape=b_matrix)
        return F.reshape(rows @ b_2d, shape=(size,) + out_type.shape)
    if a_matrix[-1] == 1 and len(a_matrix) == len(b_matrix) == 2:
        # an outer product per example (a gradient's x^T g): a broadcast product, not size tiny GEMMs
        columns = F.reshape(a, shape=((size,) if batched[0] else ()) + a_matrix)
        rows = F.reshape(b, shape=((size,) if batched[1] else ()) + b_matrix)
        return F.reshape(columns * rows, shape=(size,) + out_type.shape)
    batch_rank = max(len(a_matrix), len(b_matrix)) - 2
    shaped = []
    for value, is_batched, matrix in [(a, batched[0], a_matrix), (b, batched[1], b_matrix)]:
        if is_batched:
            shaped.append(F.reshape(value, shape=(size,) + (1,) * (batch_rank + 2 - len(matrix)) + matrix))
        else:
            shaped.append(value if len(matrix) == value.ndim else F.reshape(value, shape=matrix))
    return F.reshape(shaped[0] @ shaped[1], shape=(size,) + out_type.shape)


register(
    Op(
        "matmul",
        "matmul",
        2,
        _infer_matmul,
        "{0} @ {1}",
        vjp=(_matmul_rule_a, _matmul_rule_b),
        jvp=MULTILINEAR,
        flops=_matmul_flops,
        implements=(np.matmul,),
        batch=_batch_matmul,
    )
)

# ---- shape ops ---------------------------------------------------------------------------


def _infer_transpose(types: list[TensorType], attrs: Attrs) -> TensorType:
    (x,) = types
    axes = tuple(attrs["axes"])
    if sorted(axes) != list(range(x.ndim)):
        raise ShapeError(f"transpose axes {axes} are not a permutation of the {x.ndim} axes of shape {list(x.shape)}")
    return TensorType(tuple(x.shape[i] for i in axes), x.dtype)


def _render_transpose(names: list[str], attrs: Attrs) -> str:
    if len(attrs["axes"]) == 2:
        return f"{names[0]}.T"
    return f"np.transpose({names[0]}, {attrs['axes']!r})"


def _batch_transpose(
    operands: list[Value], batched: list[bool], logical: list[TensorType], out_type: TensorType, attrs: Attrs, size: int
) -> Value:
    return F.transpose(operands[0], axes=(0,) + tuple(a + 1 for a in attrs["axes"]))


register(
    Op(
        "transpose",
        "shape",
        1,
        _infer_transpose,
        _render_transpose,
        vjp=(lambda g, y, x, axes: F.transpose(g, axes=tuple(int(i) for i in np.argsort(axes))),),
        jvp=LINEAR,
        view=True,
        batch=_batch_transpose,
    )
)


def _infer_reshape(types: list[TensorType], attrs: Attrs) -> TensorType:
    (x,) = types
    shape = tuple(attrs["shape"])
    if size_of(shape) != x.size or any(d < 0 for d in shape):
        raise ShapeError(f"cannot reshape an array of shape {list(x.shape)} into shape {list(shape)}")
    return TensorType(shape, x.dtype)


def _batch_reshape(
    operands: list[Value], batched: list[bool], logical: list[TensorType], out_type: TensorType, attrs: Attrs, size: int
) -> Value:
    return F.reshape(operands[0], shape=(size,) + tuple(attrs["shape"]))


register(
    Op(
        "reshape",
        "shape",
        1,
        _infer_reshape,
        "{0}.reshape({shape})",
        vjp=(lambda g, y, x, shape: F.reshape(g, shape=x.shape),),
        jvp=LINEAR,
        view=True,
        batch=_batch_reshape,
    )
)


def _infer_broadcast_to(types: list[TensorType], attrs: Attrs) -> TensorType:
    (x,) = types
    shape = tuple(attrs["shape"])
    try:
        ok = tuple(np.broadcast_shapes(x.shape, shape)) == shape
    except ValueError:
        ok = False
    if not ok:
        raise ShapeError(f"cannot broadcast shape {list(x.shape)} to shape {list(shape)}")
    return TensorType(shape, x.dtype)


def _batch_broadcast_to(
    operands: list[Value], batched: list[bool], logical: list[TensorType], out_type: TensorType, attrs: Attrs, size: int
) -> Value:
    shape = tuple(attrs["shape"])
    return F.broadcast_to(lined_up(operands[0], True, logical[0], len(shape)), shape=(size,) + shape)


register(
    Op(
        "broadcast_to",
        "shape",
        1,
        _infer_broadcast_to,
        "np.broadcast_to({0}, {shape})",
        vjp=(lambda g, y, x, shape: unbroadcast(g, x.shape),),
        jvp=LINEAR,
        view=True,
        batch=_batch_broadcast_to,
    )
)


def _infer_concatenate(types: list[TensorType], attrs: Attrs) -> TensorType:
    axis = attrs["axis"]
    first = types[0]
    for t in types[1:]:
        if t.ndim != first.ndim or any(d1 != d2 for i, (d1, d2) in enumerate(zip(t.shape, first.shape)) if i != axis):
            listed = ", ".join(str(list(t.shape)) for t in types)
            raise ShapeError(f"cannot concatenate shapes {listed} along axis {axis}")
    shape = list(first.shape)
    shape[axis] = sum(t.shape[axis] for t in types)
    return TensorType(tuple(shape), np.result_type(*(t.dtype for t in types)).name)


def _concatenate_rule(operand_index: int) -> VjpRule:
    def rule(g: Value, y: Value, *operands: Value, axis: int) -> Value:
        start = sum(o.shape[axis] for o in operands[:operand_index])
        stop = start + operands[operand_index].shape[axis]
        index = tuple(("slice", None, None, None) if i != axis else ("slice", start, stop, None) for i in range(g.ndim))
        return F.getitem(g, index=index)

    return rule


def _batch_concatenate(
    operands: list[Value], batched: list[bool], logical: list[TensorType], out_type: TensorType, attrs: Attrs, size: int
) -> Value:
    parts = [v if b else F.broadcast_to(v, shape=(size,) + t.shape) for v, b, t in zip(operands, batched, logical)]
    return F.concatenate(*parts, axis=attrs["axis"] + 1)


register(
    Op(
        "concatenate",
        "shape",
        None,
        _infer_concatenate,
        lambda names, a: f"np.concatenate(({', '.join(names)},), axis={a['axis']})",
        vjp=_concatenate_rule,
        jvp=LINEAR,
        batch=_batch_concatenate,
    )
)

# ---- indexing ----------------------------------------------------------------------------
# An index is a frozen template: ("slice", start, stop, step) | ("int", i) | ("none",) |
# ("array", k), where array k is operand k+1 of the node (an integer array value).
Index = tuple[tuple[Any, ...], ...]


def index_result_shape(shape: tuple[int, ...], index: Index, array_shapes: list[tuple[int, ...]]) -> tuple[int, ...]:
    from chainrule.ir.npfuncs import fill_index

    dummy = np.lib.stride_tricks.as_strided(np.zeros(1), shape=shape, strides=(0,) * len(shape))
    arrays = [np.zeros(s, dtype=np.intp) for s in array_shapes]
    try:
        return dummy[fill_index(index, arrays)].shape
    except IndexError as error:
        raise ShapeError(
            f"index {render_index(index, [f'i{k}' for k in range(len(arrays))])} "
            f"does not fit shape {list(shape)}: {error}"
        ) from None


def _infer_getitem(types: list[TensorType], attrs: Attrs) -> TensorType:
    x, *arrays = types
    for t in arrays:
        if not np.issubdtype(np.dtype(t.dtype), np.integer):
            raise ShapeError(f"array indices must be integers, got {t}")
    return TensorType(index_result_shape(x.shape, attrs["index"], [t.shape for t in arrays]), x.dtype)


def render_index(index: Index, array_names: Sequence[str]) -> str:
    parts = []
    for item in index:
        if item[0] == "slice":
            start, stop, step = (("" if v is None else str(v)) for v in item[1:])
            parts.append(f"{start}:{stop}" + (f":{step}" if step else ""))
        elif item[0] == "int":
            parts.append(str(item[1]))
        elif item[0] == "none":
            parts.append("None")
        else:
            parts.append(array_names[item[1]])
    if not parts:  # x[()]: the whole array (a 0-d one's element)
        return "()"
    return ", ".join(parts) if len(parts) != 1 else parts[0] + ("," if index[0][0] == "array" else "")


def _is_basic(index: Index) -> bool:
    return all(item[0] != "array" for item in index)


def _getitem_rule(g: Value, y: Value, x: Value, *arrays: Value, index: Index) -> Value:
    return F.scatter_add(g, *arrays, index=index, shape=x.shape, dtype=x.dtype, unique=_is_basic(index))


def _batch_getitem(
    operands: list[Value], batched: list[bool], logical: list[TensorType], out_type: TensorType, attrs: Attrs, size: int
) -> Value:
    plan = batched_index(attrs["index"], operands[1:], logical[1:], batched[1:], batched[0], size, out_type.ndim)
    return arranged(F.getitem(operands[0], *plan.arrays, index=plan.index), plan.order)


register(
    Op(
        "getitem",
        "index",
        None,
        _infer_getitem,
        lambda names, a: f"{names[0]}[{render_index(a['index'], names[1:])}]",
        vjp=lambda operand_index: _getitem_rule if operand_index == 0 else None,
        jvp=LINEAR,
        view=True,
        batch=_batch_getitem,
    )
)


def _infer_scatter_add(types: list[TensorType], attrs: Attrs) -> TensorType:
    values, *arrays = types
    expected = index_result_shape(attrs["shape"], attrs["index"], [t.shape for t in arrays])
    if tuple(np.broadcast_shapes(values.shape, expected)) != tuple(expected):
        raise ShapeError(f"scatter_add of shape {list(values.shape)} into index of shape {list(expected)}")
    return TensorType(attrs["shape"], attrs["dtype"])


def _render_scatter_add(names: list[str], a: Attrs) -> str:
    arrays = "".join(f", {n}" for n in names[1:])
    return f"scatter_add({names[0]}, {a['index']!r}, {a['shape']!r}, np.{a['dtype']}{arrays}, unique={a['unique']})"


def _batch_scatter_add(
    operands: list[Value], batched: list[bool], logical: list[TensorType], out_type: TensorType, attrs: Attrs, size: int
) -> Value:
    written = index_result_shape(attrs["shape"], attrs["index"], [t.shape for t in logical[1:]])
    plan = batched_index(attrs["index"], operands[1:], logical[1:], batched[1:], True, size, len(written))
    values = operands[0]
    if batched[0]:
        values = lined_up(values, True, logical[0], len(written))
    if not batched[0] or plan.order is not None:
        values = F.broadcast_to(values, shape=(size,) + written)
    return F.scatter_add(
        arranged(values, plan.inverse_order()),
        *plan.arrays,
        index=plan.index,
        shape=(size,) + tuple(attrs["shape"]),
        dtype=attrs["dtype"],
        unique=attrs["unique"],
    )


register(
    Op(
        "scatter_add",
        "index",
        None,
        _infer_scatter_add,
        _render_scatter_add,
        vjp=lambda operand_index: (
            (lambda g, y, values, *arrays, index, shape, dtype, unique: F.getitem(g, *arrays, index=index))
            if operand_index == 0
            else None
        ),
        jvp=LINEAR,
        # one addition per element scattered: the index's size, which a broadcast operand 0 undercounts
        flops=lambda ins, out, attrs: size_of(
            index_result_shape(attrs["shape"], attrs["index"], [t.shape for t in ins[1:]])
        ),
        batch=_batch_scatter_add,
    )
)
