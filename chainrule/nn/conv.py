"""Convolution and pooling over NCHW images: ``Conv2D``, ``MaxPool2D``, ``AvgPool2D``, ``Flatten``.

Each layer is one primitive node: ``conv2d`` (``chainrule.ir.conv``: im2col and one BLAS matmul,
its input gradient a transposed convolution accumulated into one buffer, its weight gradient one
matmul) or ``max_pool2d`` (``chainrule.ir.pool``: elementwise maxima of KH x KW strided slices,
its gradient one scatter to each window's maximum). An average pool is a depthwise ``conv2d``
with a constant kernel. Python loops run over the KH x KW kernel offsets, never over pixels.

The layers take and give NCHW images, as PyTorch's; the primitives work on batch-last
(C, H, W, N) images, so each layer is ``transpose -> primitive -> transpose`` (a convolution's bias
is added before the second transpose). Between two layers the transposes meet, an elementwise
activation between them moves across (the simplify pass's ``transpose_through_elementwise``), and
they cancel: a traced network of convolutions, pools and activations transposes its images once
on the way in and once on the way out, in the forward pass and in the backward pass.

    >>> import numpy as np
    >>> from chainrule import nn
    >>> conv = nn.Conv2D(3, 8, kernel_size=3, padding=1)
    >>> conv.output_shape((2, 3, 16, 16))
    (2, 8, 16, 16)
"""

from __future__ import annotations

import math

import numpy as np

from chainrule.errors import ArgumentError, ShapeError
from chainrule.frontends.tracer import Tracer, operation
from chainrule.ir import OPS, TensorType, conv_kernels
from chainrule.nn.layers import Layer, RngLike, check_keys, initializer_named, user_line


def _pair(value, name: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, (int, np.integer)) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, (int, np.integer)) for v in pair):
        raise ArgumentError(f"{name} must be an int or a pair of ints, got {value!r}")
    return int(pair[0]), int(pair[1])


class _Windows:
    """The geometry shared by convolution and pooling: kernel size, stride, padding, dilation."""

    def __init__(self, kernel_size, stride, padding, dilation):
        self.kernel = _pair(kernel_size, "kernel_size")
        self.stride = _pair(stride, "stride")
        self.padding = _pair(padding, "padding")
        self.dilation = _pair(dilation, "dilation")
        if min(self.kernel + self.stride + self.dilation) < 1 or min(self.padding) < 0:
            raise ArgumentError(
                f"kernel_size, stride and dilation must be >= 1 and padding >= 0, got kernel {self.kernel}, "
                f"stride {self.stride}, padding {self.padding}, dilation {self.dilation}"
            )

    def out_size(self, size: int, axis: int) -> int:
        span = self.dilation[axis] * (self.kernel[axis] - 1) + 1
        return (size + 2 * self.padding[axis] - span) // self.stride[axis] + 1

    def spatial_out(self, layer: Layer, shape: tuple) -> tuple[int, int]:
        if len(shape) != 4:
            raise ShapeError(f"{layer!r} takes NCHW images (batch, channels, height, width), got {shape}", user_line())
        out = self.out_size(shape[2], 0), self.out_size(shape[3], 1)
        if min(out) < 1:
            raise ShapeError(f"{layer!r}: a {shape[2]}x{shape[3]} image is smaller than the kernel", user_line())
        return out

    def describe(self) -> str:
        return f"kernel_size={self.kernel}, stride={self.stride}, padding={self.padding}, dilation={self.dilation}"


TO_BATCH_LAST, TO_NCHW = (1, 2, 3, 0), (3, 0, 1, 2)


def _batch_last(x):
    """NCHW -> (C, H, W, N): a transpose node when traced, a contiguous copy of an array."""
    if isinstance(x, Tracer):
        return operation("transpose", x, axes=TO_BATCH_LAST)
    return np.ascontiguousarray(np.transpose(x, TO_BATCH_LAST))


def _nchw(y):
    if isinstance(y, Tracer):
        return operation("transpose", y, axes=TO_NCHW)
    return np.ascontiguousarray(np.transpose(y, TO_NCHW))


def _checked(op_name: str, shapes: list[tuple], dtypes: list, geometry: dict) -> None:
    """The primitive's shape checks on NCHW operands, its message naming their NCHW shapes."""
    if any(len(shape) != 4 for shape in shapes):
        raise ShapeError(
            f"{op_name} takes NCHW images (and OIHW kernels), got shapes {', '.join(str(list(s)) for s in shapes)}",
            user_line(),
        )
    types = [TensorType(tuple(np.take(shapes[0], TO_BATCH_LAST)), np.dtype(dtypes[0]).name)]
    types += [TensorType(tuple(shape), np.dtype(dtype).name) for shape, dtype in zip(shapes[1:], dtypes[1:])]
    try:
        OPS[op_name].infer(types, geometry)
    except ShapeError as error:
        described = " and kernels ".join(str(list(shape)) for shape in shapes)
        raise ShapeError(f"{op_name} of NCHW images {described}: {error.bare_message}", user_line()) from None


def conv2d(x, kernel, *, stride=1, padding=0, dilation=1, groups: int = 1):
    """The 2-D cross-correlation of NCHW images ``x`` with OIHW kernels (O, C/groups, KH, KW), as
    ``torch.nn.functional.conv2d`` without the bias: on traced values one ``conv2d`` node between
    two transposes (im2col and one GEMM on batch-last images, see ``chainrule.ir.conv``), on arrays
    its NumPy computation. Operands of two dtypes meet in their common one.

    >>> conv2d(np.ones((1, 1, 4, 4)), np.ones((2, 1, 3, 3)), padding=1)[0, 0, 0]
    array([4., 6., 6., 4.])
    """
    return _nchw(_conv2d_batch_last(x, kernel, stride, padding, dilation, groups))


def _conv2d_batch_last(x, kernel, stride, padding, dilation, groups):
    """conv2d of NCHW images ``x``, its result batch-last (O, Ho, Wo, N)."""
    windows = _Windows(np.shape(kernel)[2:] if np.ndim(kernel) == 4 else 1, stride, padding, dilation)
    if not isinstance(groups, (int, np.integer)) or groups < 1:
        raise ArgumentError(f"groups must be a positive int, got {groups!r}")
    x, kernel = (v if isinstance(v, Tracer) else np.asarray(v) for v in (x, kernel))
    dtype = np.result_type(x.dtype, kernel.dtype)
    x, kernel = (v if v.dtype == dtype else v.astype(dtype) for v in (x, kernel))
    geometry = {
        "stride": windows.stride,
        "padding": windows.padding,
        "dilation": windows.dilation,
        "groups": int(groups),
    }
    _checked("conv2d", [tuple(np.shape(x)), tuple(np.shape(kernel))], [x.dtype, kernel.dtype], geometry)
    if isinstance(x, Tracer) or isinstance(kernel, Tracer):
        return operation("conv2d", _batch_last(x), kernel, **geometry)
    return conv_kernels.conv2d(_batch_last(x), kernel, **geometry)


def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1):
    """The maximum over each window of NCHW images (padding counts as -inf), as
    ``torch.nn.functional.max_pool2d``: on traced values one ``max_pool2d`` node between two
    transposes (see ``chainrule.ir.pool``), on arrays its NumPy computation."""
    windows = _Windows(kernel_size, kernel_size if stride is None else stride, padding, dilation)
    geometry = {name: getattr(windows, name) for name in ("kernel", "stride", "padding", "dilation")}
    x = x if isinstance(x, Tracer) else np.asarray(x)
    _checked("max_pool2d", [tuple(np.shape(x))], [x.dtype], geometry)
    if isinstance(x, Tracer):
        return _nchw(operation("max_pool2d", _batch_last(x), **geometry))
    return _nchw(conv_kernels.max_pool2d(_batch_last(x), **geometry))


class Conv2D(Layer):
    """2-D convolution (cross-correlation, as in every framework) of NCHW images.

    The kernel ``W`` has shape (out_channels, in_channels, KH, KW) and the bias ``b``
    (out_channels,), PyTorch's layout, so its weights copy over unchanged. Output size per axis:
    (size + 2 padding - dilation (kernel - 1) - 1) // stride + 1. He initialization by default
    (fan-in = in_channels * KH * KW).
    """

    kind = "conv2d"

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size,
        *,
        stride=1,
        padding=0,
        dilation=1,
        init="he",
        use_bias: bool = True,
        dtype=np.float64,
    ):
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.windows = _Windows(kernel_size, stride, padding, dilation)
        self.initializer = initializer_named(init)
        self.use_bias = use_bias
        self.dtype = np.dtype(dtype)

    def init(self, rng: RngLike = None) -> dict:
        kernel_h, kernel_w = self.windows.kernel
        # drawn as a (fan_in, fan_out) matrix so the initializers' fans are the convolution's
        fan_in = self.in_channels * kernel_h * kernel_w
        matrix = self.initializer(np.random.default_rng(rng), (fan_in, self.out_channels), self.dtype)
        params = {"W": np.ascontiguousarray(matrix.T.reshape(self.out_channels, self.in_channels, kernel_h, kernel_w))}
        if self.use_bias:
            params["b"] = np.zeros(self.out_channels, dtype=self.dtype)
        return params

    def output_shape(self, input_shape: tuple) -> tuple:
        out_h, out_w = self.windows.spatial_out(self, tuple(input_shape))
        return (input_shape[0], self.out_channels, out_h, out_w)

    def forward(self, params, x, state, training, randomness) -> tuple:
        shape = tuple(np.shape(x))
        self.windows.spatial_out(self, shape)
        if shape[1] != self.in_channels:
            raise ShapeError(
                f"{self!r} takes {self.in_channels} input channels, got inputs of shape {shape}", user_line()
            )
        check_keys(self, params, ("W", "b") if self.use_bias else ("W",))
        windows = self.windows
        y = _conv2d_batch_last(x, params["W"], windows.stride, windows.padding, windows.dilation, 1)
        if self.use_bias:  # added batch-last, so the transpose after it meets the next layer's
            y = y + np.reshape(params["b"], (self.out_channels, 1, 1, 1))
        return _nchw(y), state

    def __repr__(self) -> str:
        return f"Conv2D({self.in_channels}, {self.out_channels}, {self.windows.describe()})"


class MaxPool2D(Layer):
    """The maximum over each window of NCHW images (padding counts as -inf, as in PyTorch);
    ``stride`` defaults to the kernel size. One ``max_pool2d`` primitive (``chainrule.ir.pool``):
    KH x KW elementwise maxima forward, one scatter to each window's maximum backward. Where a
    window has tied maxima the gradient goes to the first of them in row-major order, as in PyTorch."""

    kind = "maxpool2d"

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1):
        self.windows = _Windows(kernel_size, kernel_size if stride is None else stride, padding, dilation)

    def output_shape(self, input_shape: tuple) -> tuple:
        return tuple(input_shape[:2]) + self.windows.spatial_out(self, tuple(input_shape))

    def forward(self, params, x, state, training, randomness) -> tuple:
        self.windows.spatial_out(self, tuple(np.shape(x)))
        windows = self.windows
        return max_pool2d(x, windows.kernel, windows.stride, windows.padding, windows.dilation), state

    def __repr__(self) -> str:
        return f"MaxPool2D({self.windows.describe()})"


class AvgPool2D(Layer):
    """The mean over each window of NCHW images; padding counts as zeros in the mean (PyTorch's
    default ``count_include_pad=True``); ``stride`` defaults to the kernel size. Computed as a
    depthwise ``conv2d`` (groups = channels) with a constant kernel."""

    kind = "avgpool2d"

    def __init__(self, kernel_size, stride=None, padding=0):
        self.windows = _Windows(kernel_size, kernel_size if stride is None else stride, padding, 1)

    def output_shape(self, input_shape: tuple) -> tuple:
        return tuple(input_shape[:2]) + self.windows.spatial_out(self, tuple(input_shape))

    def forward(self, params, x, state, training, randomness) -> tuple:
        shape = tuple(np.shape(x))
        self.windows.spatial_out(self, shape)
        # the mean over a window is a depthwise convolution with a constant 1/(KH*KW) kernel
        kernel_h, kernel_w = self.windows.kernel
        dtype = x.dtype if isinstance(x, Tracer) else np.asarray(x).dtype
        kernel = np.full((shape[1], 1, kernel_h, kernel_w), 1 / (kernel_h * kernel_w), dtype=dtype)
        return conv2d(x, kernel, stride=self.windows.stride, padding=self.windows.padding, groups=shape[1]), state

    def __repr__(self) -> str:
        return f"AvgPool2D({self.windows.describe()})"


class Flatten(Layer):
    """Every axis but the batch axis flattened into one: (N, C, H, W) -> (N, C*H*W)."""

    kind = "flatten"

    def output_shape(self, input_shape: tuple) -> tuple:
        return (input_shape[0], math.prod(input_shape[1:]))

    def forward(self, params, x, state, training, randomness) -> tuple:
        return np.reshape(x, (np.shape(x)[0], -1)), state
