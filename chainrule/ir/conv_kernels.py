"""NumPy computations of the convolution primitives of ``chainrule.ir.conv`` (NCHW images, OIHW kernels).

Each is im2col plus one BLAS matrix product per group: ``columns`` gathers, for every output
pixel, the input pixels under the kernel (a strided ``sliding_window_view`` of the padded input,
copied once into matrix layout); the convolution and its weight gradient are one matmul against
those columns. The input gradient (a transposed convolution) is one matmul producing the columns'
cotangent, then col2im: for each of the KH x KW kernel offsets one strided slice-add into a single
zeroed buffer, the Python loop running over offsets, never over pixels. The lowering templates
call these as ``conv.<name>`` (the name is in ``chainrule.ir.npfuncs.NAMESPACE``).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

Pair = tuple[int, int]


def out_size(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    """Output length along one axis: (size + 2 padding - dilation (kernel - 1) - 1) // stride + 1."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def _offset_slices(kernel: Pair, stride: Pair, dilation: Pair, out_hw: Pair) -> Iterator[tuple[int, int, slice, slice]]:
    """For each kernel offset (i, j): its (row, column) slices of the padded image, one step per output pixel."""
    (kh, kw), (sh, sw), (dh, dw), (out_h, out_w) = kernel, stride, dilation, out_hw
    for i in range(kh):
        for j in range(kw):
            yield (
                i,
                j,
                slice(i * dh, i * dh + sh * (out_h - 1) + 1, sh),
                slice(j * dw, j * dw + sw * (out_w - 1) + 1, sw),
            )


def columns(x: np.ndarray, kernel: Pair, stride: Pair, padding: Pair, dilation: Pair) -> np.ndarray:
    """(C, KH, KW, N, Ho, Wo): the input pixel under each kernel offset, for every output pixel.

    Channels lead so that each offset's block is one strided copy of the channel-major image and
    the columns of a group of channels are one contiguous block (C/groups * KH * KW rows)."""
    n, channels = x.shape[:2]
    (kh, kw), (ph, pw) = kernel, padding
    out_hw = (
        out_size(x.shape[2], kh, stride[0], ph, dilation[0]),
        out_size(x.shape[3], kw, stride[1], pw, dilation[1]),
    )
    image = np.ascontiguousarray(x.transpose(1, 0, 2, 3))  # (C, N, H, W)
    if ph or pw:
        image = np.pad(image, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    cols = np.empty((channels, kh, kw, n) + out_hw, dtype=x.dtype)
    for i, j, rows, cols_slice in _offset_slices(kernel, stride, dilation, out_hw):
        cols[:, i, j] = image[:, :, rows, cols_slice]
    return cols


def conv2d(x: np.ndarray, w: np.ndarray, stride: Pair, padding: Pair, dilation: Pair, groups: int) -> np.ndarray:
    """The cross-correlation of images ``x`` (N, C, H, W) with kernels ``w`` (O, C/groups, KH, KW)."""
    n, out_channels = x.shape[0], w.shape[0]
    cols = columns(x, w.shape[2:], stride, padding, dilation)  # (C, KH, KW, N, Ho, Wo)
    out_hw = cols.shape[4:]
    kernel_rows = w.reshape(out_channels, -1)
    if groups == 1:
        y = kernel_rows @ cols.reshape(kernel_rows.shape[1], -1)  # (O, N*Ho*Wo): one GEMM
    else:
        y = np.concatenate(
            [k @ c.reshape(k.shape[1], -1) for k, c in zip(np.split(kernel_rows, groups), np.split(cols, groups))]
        )
    return np.ascontiguousarray(y.reshape((out_channels, n) + out_hw).transpose(1, 0, 2, 3))


def _channel_major(g: np.ndarray) -> np.ndarray:
    """(N, O, Ho, Wo) -> (O, N*Ho*Wo)."""
    return np.ascontiguousarray(g.transpose(1, 0, 2, 3)).reshape(g.shape[1], -1)


def conv2d_weight_grad(
    x: np.ndarray, g: np.ndarray, kernel: Pair, stride: Pair, padding: Pair, dilation: Pair, groups: int
) -> np.ndarray:
    """The gradient of ``<g, conv2d(x, w)>`` in ``w``: (O, C/groups, KH, KW)."""
    channels, out_channels = x.shape[1], g.shape[1]
    cols = columns(x, kernel, stride, padding, dilation).reshape(channels * kernel[0] * kernel[1], -1)
    g_rows = _channel_major(g)
    if groups == 1:
        dw = g_rows @ cols.T  # (O, C*KH*KW): one GEMM
    else:
        dw = np.concatenate([a @ b.T for a, b in zip(np.split(g_rows, groups), np.split(cols, groups))])
    return dw.reshape(out_channels, channels // groups, kernel[0], kernel[1])


def conv2d_input_grad(
    g: np.ndarray, w: np.ndarray, input_hw: Pair, stride: Pair, padding: Pair, dilation: Pair, groups: int
) -> np.ndarray:
    """The gradient of ``<g, conv2d(x, w)>`` in ``x`` (N, C, H, W): the transposed convolution of ``g``."""
    n, out_channels, out_h, out_w = g.shape
    _, group_channels, kh, kw = w.shape
    channels = group_channels * groups
    kernel_rows, g_rows = w.reshape(out_channels, -1), _channel_major(g)
    if groups == 1:
        col_grad = kernel_rows.T @ g_rows  # (C*KH*KW, N*Ho*Wo): one GEMM
    else:
        col_grad = np.concatenate([a.T @ b for a, b in zip(np.split(kernel_rows, groups), np.split(g_rows, groups))])
    col_grad = col_grad.reshape(channels, kh, kw, n, out_h, out_w)
    (ph, pw) = padding
    # col2im: every offset's block added into one (C, N, H, W) buffer through a strided slice
    dx = np.zeros((channels, n, input_hw[0] + 2 * ph, input_hw[1] + 2 * pw), dtype=col_grad.dtype)
    for i, j, rows, cols_slice in _offset_slices((kh, kw), stride, dilation, (out_h, out_w)):
        dx[:, :, rows, cols_slice] += col_grad[:, i, j]
    return np.ascontiguousarray(dx[:, :, ph : ph + input_hw[0], pw : pw + input_hw[1]].transpose(1, 0, 2, 3))


# ---- max pooling: the window maximum, and the adjoints of picking it ------------------------------


def _pool_geometry(
    x: np.ndarray, kernel: Pair, stride: Pair, padding: Pair, dilation: Pair, fill: float
) -> tuple[np.ndarray, list[tuple[slice, slice]]]:
    """The image padded with ``fill`` and each kernel offset's (row, column) slices of it."""
    (ph, pw) = padding
    if ph or pw:
        x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=fill)
    out_hw = (
        out_size(x.shape[2], kernel[0], stride[0], 0, dilation[0]),
        out_size(x.shape[3], kernel[1], stride[1], 0, dilation[1]),
    )
    return x, [(rows, cols) for _, _, rows, cols in _offset_slices(kernel, stride, dilation, out_hw)]


def max_pool2d(x: np.ndarray, kernel: Pair, stride: Pair, padding: Pair, dilation: Pair) -> np.ndarray:
    """The maximum over each window (padding is -inf): KH*KW elementwise maxima of strided slices."""
    padded, offsets = _pool_geometry(x, kernel, stride, padding, dilation, -np.inf)
    best = padded[(slice(None), slice(None)) + offsets[0]].copy()
    for rows, cols in offsets[1:]:
        np.maximum(best, padded[:, :, rows, cols], out=best)
    return best


def _window_argmax(
    keys: np.ndarray, kernel: Pair, stride: Pair, padding: Pair, dilation: Pair
) -> tuple[np.ndarray, tuple[int, ...], list[tuple[slice, slice]]]:
    """Which kernel offset holds each window's maximum (the first one where several tie, as in
    PyTorch), the padded keys' shape and the offsets' slices."""
    padded, offsets = _pool_geometry(keys, kernel, stride, padding, dilation, -np.inf)
    best = padded[(slice(None), slice(None)) + offsets[0]].copy()
    which = np.zeros(best.shape, dtype=np.int32)
    for k, (rows, cols) in enumerate(offsets[1:], 1):
        candidate = padded[:, :, rows, cols]
        better = candidate > best
        np.copyto(best, candidate, where=better)
        np.copyto(which, k, where=better)
    return which, padded.shape, offsets


def max_pool2d_scatter(
    keys: np.ndarray, g: np.ndarray, kernel: Pair, stride: Pair, padding: Pair, dilation: Pair
) -> np.ndarray:
    """``g`` sent to where each window of ``keys`` has its maximum: the gradient of max pooling."""
    which, padded_shape, offsets = _window_argmax(keys, kernel, stride, padding, dilation)
    dx = np.zeros(padded_shape, dtype=g.dtype)
    zero = np.zeros((), dtype=g.dtype)
    for k, (rows, cols) in enumerate(offsets):
        dx[:, :, rows, cols] += np.where(which == k, g, zero)
    (ph, pw), (h, w) = padding, keys.shape[2:]
    return np.ascontiguousarray(dx[:, :, ph : ph + h, pw : pw + w])


def max_pool2d_gather(
    keys: np.ndarray, a: np.ndarray, kernel: Pair, stride: Pair, padding: Pair, dilation: Pair
) -> np.ndarray:
    """``a`` read where each window of ``keys`` has its maximum (the adjoint of ``max_pool2d_scatter``)."""
    which, _, offsets = _window_argmax(keys, kernel, stride, padding, dilation)
    padded, _ = _pool_geometry(a, kernel, stride, padding, dilation, 0.0)
    out = np.empty(which.shape, dtype=a.dtype)
    for k, (rows, cols) in enumerate(offsets):
        np.copyto(out, padded[:, :, rows, cols], where=which == k)
    return out
