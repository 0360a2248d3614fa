"""2-D convolution primitives on batch-last images (C, H, W, N) and OIHW kernels: ``conv2d`` and
its two adjoints.

``conv2d(x, w)`` is the cross-correlation every framework calls convolution, with stride,
padding, dilation and groups as attributes. It is bilinear, and so are its adjoints:

- ``conv2d_input_grad(g, w)``: the gradient of ``<g, conv2d(x, w)>`` in ``x`` (the transposed
  convolution; ``input_hw`` says the input's height and width, which a strided output cannot);
- ``conv2d_weight_grad(x, g)``: its gradient in ``w`` (``kernel`` says the kernel's height and width).

The three are closed under differentiation: each one's VJP rules are the other two (or itself),
so second and higher derivatives stay three BLAS-backed ops instead of KH x KW strided slices and
scatters. Their forward mode is the product rule (``MULTILINEAR``).

Images are batch-last, (channels, height, width, batch), the layout im2col wants (every strided
slice copies runs of N numbers) and the one its GEMM produces: the ops neither take nor give NCHW,
so a chain of convolutions, pools and elementwise ops runs without a transpose between them.
``chainrule.nn.conv2d`` (NCHW, as PyTorch) wraps the op in the two transposes, and the simplify
pass's ``transpose_through_elementwise`` rule lets consecutive layers' transposes meet and cancel.
A batch axis S folds into the images' batch when only the images carry it, and into the groups
otherwise (each example's channels become groups of their own). The NumPy computations are in
``conv_kernels``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chainrule.errors import ShapeError
from chainrule.ir import conv_kernels, npfuncs
from chainrule.ir.builder import F, Value
from chainrule.ir.ops import MULTILINEAR, Attrs, Op, register
from chainrule.ir.types import TensorType

npfuncs.NAMESPACE.setdefault("conv", conv_kernels)

_GEOMETRY = "{stride}, {padding}, {dilation}, {groups}"


def _float_dtype(op_name: str, a: TensorType, b: TensorType) -> str:
    if a.ndim != 4 or b.ndim != 4:
        raise ShapeError(
            f"{op_name} takes 4-D operands (batch-last (C, H, W, N) images, OIHW kernels), got shapes "
            f"{list(a.shape)} and {list(b.shape)}"
        )
    if not (a.is_float and b.is_float) or a.dtype != b.dtype:
        raise ShapeError(f"{op_name} needs floating-point operands of one dtype, got {a.dtype} and {b.dtype}")
    return a.dtype


def _check_channels(op_name: str, images: tuple, kernel: tuple, groups: int) -> None:
    if images[0] != kernel[1] * groups or kernel[0] % groups:
        raise ShapeError(
            f"{op_name}: images of {images[0]} channels and kernels of shape {list(kernel)} with groups={groups} "
            f"do not fit (channels must be kernel channels x groups, {kernel[1]} x {groups}, and the "
            f"{kernel[0]} output channels a multiple of groups)"
        )


def _output_hw(op_name: str, hw: tuple, kernel_hw: tuple, attrs: Attrs) -> tuple[int, int]:
    out = tuple(
        conv_kernels.out_size(hw[a], kernel_hw[a], attrs["stride"][a], attrs["padding"][a], attrs["dilation"][a])
        for a in (0, 1)
    )
    if min(out) < 1:
        raise ShapeError(
            f"{op_name}: a {hw[0]}x{hw[1]} image padded by {attrs['padding']} is smaller than the "
            f"{kernel_hw[0]}x{kernel_hw[1]} kernel dilated by {attrs['dilation']}"
        )
    return out[0], out[1]


def _infer_conv2d(types: list[TensorType], attrs: Attrs) -> TensorType:
    x, w = types
    dtype = _float_dtype("conv2d", x, w)
    _check_channels("conv2d", x.shape, w.shape, attrs["groups"])
    out_hw = _output_hw("conv2d", x.shape[1:3], w.shape[2:], attrs)
    return TensorType((w.shape[0],) + out_hw + (x.shape[3],), dtype)


def _infer_input_grad(types: list[TensorType], attrs: Attrs) -> TensorType:
    g, w = types
    dtype = _float_dtype("conv2d_input_grad", g, w)
    images = (w.shape[1] * attrs["groups"],) + tuple(attrs["input_hw"]) + (g.shape[3],)
    _check_channels("conv2d_input_grad", images, w.shape, attrs["groups"])
    if _output_hw("conv2d_input_grad", images[1:3], w.shape[2:], attrs) != g.shape[1:3] or g.shape[0] != w.shape[0]:
        raise ShapeError(
            f"conv2d_input_grad: cotangent of shape {list(g.shape)} is not conv2d's output for kernels {list(w.shape)}"
        )
    return TensorType(images, dtype)


def _infer_weight_grad(types: list[TensorType], attrs: Attrs) -> TensorType:
    x, g = types
    dtype = _float_dtype("conv2d_weight_grad", x, g)
    kernel = (g.shape[0], x.shape[0] // attrs["groups"]) + tuple(attrs["kernel"])
    _check_channels("conv2d_weight_grad", x.shape, kernel, attrs["groups"])
    if _output_hw("conv2d_weight_grad", x.shape[1:3], kernel[2:], attrs) != g.shape[1:3] or g.shape[3] != x.shape[3]:
        raise ShapeError(
            f"conv2d_weight_grad: cotangent of shape {list(g.shape)} is not conv2d's output for images {list(x.shape)}"
        )
    return TensorType(kernel, dtype)


def _geometry(attrs: dict) -> dict:
    return {name: attrs[name] for name in ("stride", "padding", "dilation", "groups")}


# ---- VJP rules: <g, conv2d(x, w)> = <conv2d_input_grad(g, w), x> = <conv2d_weight_grad(x, g), w> ----


def _conv_rule_x(g: Value, y: Value, x: Value, w: Value, **attrs: Any) -> Value:
    return F.conv2d_input_grad(g, w, input_hw=x.shape[1:3], **_geometry(attrs))


def _conv_rule_w(g: Value, y: Value, x: Value, w: Value, **attrs: Any) -> Value:
    return F.conv2d_weight_grad(x, g, kernel=w.shape[2:], **_geometry(attrs))


def _input_grad_rule_g(a: Value, dx: Value, g: Value, w: Value, **attrs: Any) -> Value:
    return F.conv2d(a, w, **_geometry(attrs))


def _input_grad_rule_w(a: Value, dx: Value, g: Value, w: Value, **attrs: Any) -> Value:
    return F.conv2d_weight_grad(a, g, kernel=w.shape[2:], **_geometry(attrs))


def _weight_grad_rule_x(b: Value, dw: Value, x: Value, g: Value, **attrs: Any) -> Value:
    return F.conv2d_input_grad(g, b, input_hw=x.shape[1:3], **_geometry(attrs))


def _weight_grad_rule_g(b: Value, dw: Value, x: Value, g: Value, **attrs: Any) -> Value:
    return F.conv2d(x, b, **_geometry(attrs))


def _flops(conv_output: TensorType, kernel: TensorType) -> int:
    # a multiply and an add per (output element, input channel of its group, kernel offset)
    return 2 * conv_output.size * kernel.shape[1] * kernel.shape[2] * kernel.shape[3]


# ---- batching: a leading batch axis S on some operands --------------------------------------


def _with_batch(value: Value, is_batched: bool, logical: TensorType, size: int) -> Value:
    return value if is_batched else F.broadcast_to(value, shape=(size,) + logical.shape)


def _into_groups(images: Value) -> Value:
    """(S, C, H, W, N) -> (S*C, H, W, N): each example's channels a run of groups of its own (a
    reshape: the channels lead). The same folds (S, O, C/groups, KH, KW) kernels into (S*O, ...)."""
    return F.reshape(images, shape=(images.shape[0] * images.shape[1],) + images.shape[2:])


def _fold_into_batch(images: Value) -> Value:
    """(S, C, H, W, N) -> (C, H, W, S*N): the examples become more images."""
    s, c, h, w, n = images.shape
    return F.reshape(F.transpose(images, axes=(1, 2, 3, 0, 4)), shape=(c, h, w, s * n))


def _unfold_from_batch(images: Value, size: int) -> Value:
    c, h, w, sn = images.shape
    return F.transpose(F.reshape(images, shape=(c, h, w, size, sn // size)), axes=(3, 0, 1, 2, 4))


def _batch_images_op(op_name: str) -> Callable[..., Value]:
    """Batching of conv2d(x, w) and conv2d_input_grad(g, w): images first, kernels second."""

    def batch(
        operands: list[Value],
        batched: list[bool],
        logical: list[TensorType],
        out_type: TensorType,
        attrs: Attrs,
        size: int,
    ) -> Value:
        images, kernels = operands
        apply = getattr(F, op_name)
        if not batched[1]:  # the examples are more images for one kernel: fold S into N
            return _unfold_from_batch(apply(_fold_into_batch(images), kernels, **attrs), size)
        images = _into_groups(_with_batch(images, batched[0], logical[0], size))
        grouped = dict(attrs, groups=attrs["groups"] * size)
        return F.reshape(apply(images, _into_groups(kernels), **grouped), shape=(size,) + out_type.shape)

    return batch


def _batch_weight_grad(
    operands: list[Value], batched: list[bool], logical: list[TensorType], out_type: TensorType, attrs: Attrs, size: int
) -> Value:
    x, g = (_into_groups(_with_batch(v, b, t, size)) for v, b, t in zip(operands, batched, logical))
    dw = F.conv2d_weight_grad(x, g, **dict(attrs, groups=attrs["groups"] * size))
    return F.reshape(dw, shape=(size,) + out_type.shape)


register(
    Op(
        "conv2d",
        "conv",
        2,
        _infer_conv2d,
        "conv.conv2d({0}, {1}, " + _GEOMETRY + ")",
        vjp=(_conv_rule_x, _conv_rule_w),
        jvp=MULTILINEAR,
        flops=lambda ins, out, attrs: _flops(out, ins[1]),
        batch=_batch_images_op("conv2d"),
    )
)
register(
    Op(
        "conv2d_input_grad",
        "conv",
        2,
        _infer_input_grad,
        "conv.conv2d_input_grad({0}, {1}, {input_hw}, " + _GEOMETRY + ")",
        vjp=(_input_grad_rule_g, _input_grad_rule_w),
        jvp=MULTILINEAR,
        flops=lambda ins, out, attrs: _flops(ins[0], ins[1]),
        batch=_batch_images_op("conv2d_input_grad"),
    )
)
register(
    Op(
        "conv2d_weight_grad",
        "conv",
        2,
        _infer_weight_grad,
        "conv.conv2d_weight_grad({0}, {1}, {kernel}, " + _GEOMETRY + ")",
        vjp=(_weight_grad_rule_x, _weight_grad_rule_g),
        jvp=MULTILINEAR,
        flops=lambda ins, out, attrs: _flops(ins[1], out),
        batch=_batch_weight_grad,
    )
)
