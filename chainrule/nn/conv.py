"""Convolution and pooling over NCHW images: ``Conv2D``, ``MaxPool2D``, ``AvgPool2D``, ``Flatten``.

Both are written as im2col: for each of the kernel's KH x KW offsets, one strided slice of the
(padded) input picks the pixel under that offset for every output position at once, and the
slices are stacked into the columns ``(N, C, KH*KW, H_out, W_out)``. A convolution is then one
``einsum`` against the kernel, which chainrule lowers to a single BLAS matmul; a pooling layer
is a max or a mean over the offsets. The Python loop runs over the KH*KW offsets, never over
pixels, and the gradient of a strided slice is a strided scatter, so the backward pass is as
vectorized as the forward one. (Slices beat ``sliding_window_view`` here: a window view is a
gather with an index array, twice as slow traced, see ``frontends/numpy_windows.py``.)

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

    def columns(self, x, out_hw: tuple[int, int], pad_value: float = 0.0):
        """(N, C, KH*KW, H_out, W_out): the input element under each kernel offset, for every output."""
        (pad_h, pad_w), (step_h, step_w), (dil_h, dil_w) = self.padding, self.stride, self.dilation
        if pad_h or pad_w:
            x = np.pad(x, ((0, 0), (0, 0), (pad_h, pad_h), (pad_w, pad_w)), constant_values=pad_value)
        out_h, out_w = out_hw
        slices = [
            x[
                :,
                :,
                i * dil_h : i * dil_h + step_h * (out_h - 1) + 1 : step_h,
                j * dil_w : j * dil_w + step_w * (out_w - 1) + 1 : step_w,
            ]
            for i in range(self.kernel[0])
            for j in range(self.kernel[1])
        ]
        return np.stack(slices, axis=2)

    def tiles(self, x, out_hw: tuple[int, int]):
        """(N, C, H_out, KH, W_out, KW) when the windows tile the image exactly (stride = kernel, no
        padding or dilation, sizes divisible), else None. A reshape is a view, so pooling over tiles
        copies nothing and its gradient needs no scatter."""
        shape = tuple(np.shape(x))
        if self.stride != self.kernel or self.padding != (0, 0) or self.dilation != (1, 1):
            return None
        if out_hw[0] * self.kernel[0] != shape[2] or out_hw[1] * self.kernel[1] != shape[3]:
            return None
        return np.reshape(x, (shape[0], shape[1], out_hw[0], self.kernel[0], out_hw[1], self.kernel[1]))

    def describe(self) -> str:
        return f"kernel_size={self.kernel}, stride={self.stride}, padding={self.padding}, dilation={self.dilation}"


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
        out_hw = self.windows.spatial_out(self, shape)
        if shape[1] != self.in_channels:
            raise ShapeError(
                f"{self!r} takes {self.in_channels} input channels, got inputs of shape {shape}", user_line()
            )
        check_keys(self, params, ("W", "b") if self.use_bias else ("W",))
        columns = self.windows.columns(x, out_hw)
        kernel = np.reshape(params["W"], (self.out_channels, self.in_channels, -1))
        y = np.einsum("nckhw,ock->nohw", columns, kernel)
        if self.use_bias:
            y = y + np.reshape(params["b"], (1, self.out_channels, 1, 1))
        return y, state

    def __repr__(self) -> str:
        return f"Conv2D({self.in_channels}, {self.out_channels}, {self.windows.describe()})"


class MaxPool2D(Layer):
    """The maximum over each window of NCHW images (padding counts as -inf, as in PyTorch);
    ``stride`` defaults to the kernel size. Where a window has tied maxima the gradient goes to
    each of them (NumPy's max rule), where PyTorch picks one."""

    kind = "maxpool2d"

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1):
        self.windows = _Windows(kernel_size, kernel_size if stride is None else stride, padding, dilation)

    def output_shape(self, input_shape: tuple) -> tuple:
        return tuple(input_shape[:2]) + self.windows.spatial_out(self, tuple(input_shape))

    def forward(self, params, x, state, training, randomness) -> tuple:
        out_hw = self.windows.spatial_out(self, tuple(np.shape(x)))
        tiles = self.windows.tiles(x, out_hw)
        if tiles is not None:
            return np.max(tiles, axis=(3, 5)), state
        return np.max(self.windows.columns(x, out_hw, pad_value=-np.inf), axis=2), state

    def __repr__(self) -> str:
        return f"MaxPool2D({self.windows.describe()})"


class AvgPool2D(Layer):
    """The mean over each window of NCHW images; padding counts as zeros in the mean (PyTorch's
    default ``count_include_pad=True``); ``stride`` defaults to the kernel size."""

    kind = "avgpool2d"

    def __init__(self, kernel_size, stride=None, padding=0):
        self.windows = _Windows(kernel_size, kernel_size if stride is None else stride, padding, 1)

    def output_shape(self, input_shape: tuple) -> tuple:
        return tuple(input_shape[:2]) + self.windows.spatial_out(self, tuple(input_shape))

    def forward(self, params, x, state, training, randomness) -> tuple:
        out_hw = self.windows.spatial_out(self, tuple(np.shape(x)))
        tiles = self.windows.tiles(x, out_hw)
        if tiles is not None:
            return np.mean(tiles, axis=(3, 5)), state
        return np.mean(self.windows.columns(x, out_hw), axis=2), state

    def __repr__(self) -> str:
        return f"AvgPool2D({self.windows.describe()})"


class Flatten(Layer):
    """Every axis but the batch axis flattened into one: (N, C, H, W) -> (N, C*H*W)."""

    kind = "flatten"

    def output_shape(self, input_shape: tuple) -> tuple:
        return (input_shape[0], math.prod(input_shape[1:]))

    def forward(self, params, x, state, training, randomness) -> tuple:
        return np.reshape(x, (np.shape(x)[0], -1)), state
