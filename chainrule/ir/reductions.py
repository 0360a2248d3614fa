"""The reductions: sum, max and min over axes (``Op.is_reduction``).

Batching rules take ``(operands, batched, logical types, out type, attrs, size)``, as in
``structural.py``.
"""

from __future__ import annotations

from collections.abc import Callable

from chainrule.errors import ShapeError
from chainrule.ir.builder import F, Value, apply, expand_to
from chainrule.ir.ops import LINEAR, Attrs, InferRule, JvpRule, Op, VjpRule, normalize_axis, reduced_shape, register
from chainrule.ir.types import TensorType


def _infer_reduction(types: list[TensorType], attrs: Attrs) -> TensorType:
    (x,) = types
    axis = normalize_axis(attrs["axis"], x.ndim)
    if axis != tuple(attrs["axis"]):
        raise ShapeError(f"reduction axis must be normalized, got {attrs['axis']}")
    return TensorType(reduced_shape(x.shape, axis, attrs["keepdims"]), x.dtype)


def _infer_extremum(types: list[TensorType], attrs: Attrs) -> TensorType:
    """A reduction's type; max and min have no identity, so an axis of length zero is an error, as in NumPy."""
    (x,) = types
    if any(x.shape[a] == 0 for a in attrs["axis"]):
        raise ShapeError(f"max/min over an axis of length zero (shape {x.shape}): no identity (NumPy raises too)")
    return _infer_reduction(types, attrs)


def _sum_rule(g: Value, y: Value, x: Value, axis: tuple[int, ...], keepdims: bool) -> Value:
    return expand_to(g, reduced_shape(x.shape, axis, True), x.shape)


def _extremum_rule(g: Value, y: Value, x: Value, axis: tuple[int, ...], keepdims: bool) -> Value:
    # Ties share the gradient evenly, so the rule is symmetric and exact for the subgradient mean.
    kept = reduced_shape(x.shape, axis, True)
    hits = F.cast(F.eq(x, expand_to(y, kept, x.shape)), dtype=x.dtype)
    count = F.sum(hits, axis=axis, keepdims=True)
    return hits * expand_to(g, kept, x.shape) / F.broadcast_to(count, shape=x.shape)


def _extremum_jvp(tangents: list[Value], y: Value, x: Value, axis: tuple[int, ...], keepdims: bool) -> Value:
    # The VJP rule's weights, hits / count, applied forward: the mean of the tied elements' tangents.
    (tangent,) = tangents
    kept = reduced_shape(x.shape, axis, True)
    hits = F.cast(F.eq(x, expand_to(y, kept, x.shape)), dtype=x.dtype)
    return F.sum(hits * tangent, axis=axis, keepdims=keepdims) / F.sum(hits, axis=axis, keepdims=keepdims)


def _reduction_flops(ins: list[TensorType], out: TensorType, attrs: Attrs) -> int:
    # n - 1 additions (or comparisons) for each result reducing n elements; none when n is 0
    return max(ins[0].size - out.size, 0)


def _batch_reduction(op_name: str) -> Callable[..., Value]:
    def batch(
        operands: list[Value],
        batched: list[bool],
        logical: list[TensorType],
        out_type: TensorType,
        attrs: Attrs,
        size: int,
    ) -> Value:
        return apply(op_name, operands[0], axis=tuple(a + 1 for a in attrs["axis"]), keepdims=attrs["keepdims"])

    return batch


_REDUCTIONS: list[tuple[str, InferRule, VjpRule, str | JvpRule]] = [
    ("sum", _infer_reduction, _sum_rule, LINEAR),
    ("max", _infer_extremum, _extremum_rule, _extremum_jvp),
    ("min", _infer_extremum, _extremum_rule, _extremum_jvp),
]
for _name, _infer, _rule, _jvp in _REDUCTIONS:
    register(
        Op(
            _name,
            "reduction",
            1,
            _infer,
            # the method, not np.sum: the same reduction without np.sum's ~1 us of dispatch
            f"{{0}}.{_name}(axis={{axis}}, keepdims={{keepdims}})",
            vjp=(_rule,),
            jvp=_jvp,
            flops=_reduction_flops,
            batch=_batch_reduction(_name),
        )
    )
