"""Max pooling primitives on batch-last images (C, H, W, N), as the convolutions of ``chainrule.ir.conv``: ``max_pool2d`` and the two adjoints of picking a maximum.

- ``max_pool2d(x)``: the maximum over each window (padding counts as -inf);
- ``max_pool2d_scatter(keys, g)``: ``g`` sent to the position of each window's maximum of
  ``keys`` (the gradient of ``max_pool2d`` at ``keys``), one strided add per kernel offset into one
  buffer rather than KH x KW equality masks, their sums and divisions;
- ``max_pool2d_gather(keys, a)``: ``a`` read at those positions, the adjoint of the scatter.

Where a window's maximum is tied, the first position in row-major window order takes it all, as
in PyTorch. The choice of position is piecewise constant in ``keys``, so no derivative flows to
``keys`` through the two adjoints; they are linear in their second operand and each other's VJP,
so derivatives of any order stay these ops.

The scatter finds each window's maximum again from ``keys`` (the pooled images) instead of taking
it from the forward pass: in NumPy the forward's maxima are KH x KW ``np.maximum`` passes, and
recording where each came from would cost the forward a comparison and a masked copy per offset,
which is what the scatter spends on finding them. The NumPy computations are in ``conv_kernels``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chainrule.errors import ShapeError
from chainrule.ir import conv_kernels, npfuncs
from chainrule.ir.builder import F, Value
from chainrule.ir.ops import Attrs, Op, register
from chainrule.ir.types import TensorType

npfuncs.NAMESPACE.setdefault("conv", conv_kernels)

_GEOMETRY = "{kernel}, {stride}, {padding}, {dilation}"


def _pooled_type(op_name: str, x: TensorType, attrs: Attrs) -> TensorType:
    if x.ndim != 4 or not x.is_float:
        raise ShapeError(
            f"{op_name} takes floating-point batch-last (C, H, W, N) images, got {x.dtype} of shape {list(x.shape)}"
        )
    out = tuple(
        conv_kernels.out_size(
            x.shape[1 + a], attrs["kernel"][a], attrs["stride"][a], attrs["padding"][a], attrs["dilation"][a]
        )
        for a in (0, 1)
    )
    if min(out) < 1:
        raise ShapeError(f"{op_name}: a {x.shape[1]}x{x.shape[2]} image is smaller than the {attrs['kernel']} window")
    return TensorType(x.shape[:1] + out + x.shape[3:], x.dtype)


def _infer_max_pool(types: list[TensorType], attrs: Attrs) -> TensorType:
    return _pooled_type("max_pool2d", types[0], attrs)


def _check_pair(op_name: str, keys: TensorType, other: TensorType, expected: tuple) -> None:
    if other.shape != expected or other.dtype != keys.dtype:
        raise ShapeError(
            f"{op_name}: images {keys.dtype}{list(keys.shape)} need a second operand {keys.dtype}{list(expected)}, "
            f"got {other.dtype}{list(other.shape)}"
        )


def _infer_scatter(types: list[TensorType], attrs: Attrs) -> TensorType:
    keys, g = types
    _check_pair("max_pool2d_scatter", keys, g, _pooled_type("max_pool2d_scatter", keys, attrs).shape)
    return keys


def _infer_gather(types: list[TensorType], attrs: Attrs) -> TensorType:
    keys, a = types
    _check_pair("max_pool2d_gather", keys, a, keys.shape)
    return _pooled_type("max_pool2d_gather", keys, attrs)


def _second_linear(op_name: str) -> Callable[..., Value]:
    """The JVP of an op linear in its second operand whose first one (the keys) only selects."""

    def jvp(tangents: list[Value | None], y: Value, keys: Value, values: Value, **attrs: Any) -> Value:
        if tangents[1] is None:  # only the keys move: the same positions are picked, a zero tangent
            return Value(y.graph, y.graph.zeros(y.type))
        return getattr(F, op_name)(keys, tangents[1], **attrs)

    return jvp


def _batch_folded(op_name: str) -> Callable[..., Value]:
    """A batch axis S folds into the channels, which pool independently: (S, C, H, W, N) -> (S*C, H, W, N)."""

    def batch(
        operands: list[Value],
        batched: list[bool],
        logical: list[TensorType],
        out_type: TensorType,
        attrs: Attrs,
        size: int,
    ) -> Value:
        folded = [
            F.reshape(v if b else F.broadcast_to(v, shape=(size,) + t.shape), shape=(size * t.shape[0],) + t.shape[1:])
            for v, b, t in zip(operands, batched, logical)
        ]
        return F.reshape(getattr(F, op_name)(*folded, **attrs), shape=(size,) + out_type.shape)

    return batch


def _flops(ins: list[TensorType], out: TensorType, attrs: Attrs) -> int:
    # a comparison per (window, kernel offset)
    pooled = out if out.size < ins[0].size else ins[-1]
    return pooled.size * attrs["kernel"][0] * attrs["kernel"][1]


register(
    Op(
        "max_pool2d",
        "pool",
        1,
        _infer_max_pool,
        "conv.max_pool2d({0}, " + _GEOMETRY + ")",
        vjp=(lambda g, y, x, **attrs: F.max_pool2d_scatter(x, g, **attrs),),
        jvp=lambda tangents, y, x, **attrs: F.max_pool2d_gather(x, tangents[0], **attrs),
        flops=_flops,
        batch=_batch_folded("max_pool2d"),
    )
)
register(
    Op(
        "max_pool2d_scatter",
        "pool",
        2,
        _infer_scatter,
        "conv.max_pool2d_scatter({0}, {1}, " + _GEOMETRY + ")",
        vjp=(
            lambda a, dx, keys, g, **attrs: None,
            lambda a, dx, keys, g, **attrs: F.max_pool2d_gather(keys, a, **attrs),
        ),
        jvp=_second_linear("max_pool2d_scatter"),
        flops=_flops,
        batch=_batch_folded("max_pool2d_scatter"),
    )
)
register(
    Op(
        "max_pool2d_gather",
        "pool",
        2,
        _infer_gather,
        "conv.max_pool2d_gather({0}, {1}, " + _GEOMETRY + ")",
        vjp=(
            lambda b, y, keys, a, **attrs: None,
            lambda b, y, keys, a, **attrs: F.max_pool2d_scatter(keys, b, **attrs),
        ),
        jvp=_second_linear("max_pool2d_gather"),
        flops=_flops,
        batch=_batch_folded("max_pool2d_gather"),
    )
)
