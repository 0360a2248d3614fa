"""NumPy computations of the convolution primitives of ``chainrule.ir.conv`` (NCHW images, OIHW kernels).

Each is im2col plus one BLAS matrix product per group: ``columns`` gathers, for every output
pixel, the input pixels under the kernel, with one strided slice copy per kernel offset of the
padded image laid out batch-last (C, H, W, N), so every copy moves runs of N contiguous numbers;
the convolution and its weight gradient are one matmul against those columns. The input gradient
(a transposed convolution) is one matmul producing the columns' cotangent, then col2im: for each
of the KH x KW kernel offsets one strided slice-add into a single zeroed buffer, the Python loop
running over offsets, never over pixels. Max pooling is KH x KW elementwise maxima of strided
slices, and its adjoints one masked copy or add per offset. The lowering templates
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


def _batch_last(x: np.ndarray, padding: Pair) -> np.ndarray:
    """(N, C, H, W) -> (C, H + 2 ph, W + 2 pw, N), zero-padded: the batch innermost, so every
    strided slice over the image's rows and columns below copies runs of N contiguous numbers."""
    n, channels, height, width = x.shape
    (ph, pw) = padding
    image = np.zeros((channels, height + 2 * ph, width + 2 * pw, n), dtype=x.dtype)
    image[:, ph : ph + height, pw : pw + width] = x.transpose(1, 2, 3, 0)
    return image


def _batch_first(y: np.ndarray) -> np.ndarray:
    """(C, H, W, N) -> (N, C, H, W), contiguous."""
    return np.ascontiguousarray(y.transpose(3, 0, 1, 2))


def columns(x: np.ndarray, kernel: Pair, stride: Pair, padding: Pair, dilation: Pair) -> np.ndarray:
    """(C, KH, KW, Ho, Wo, N): the input pixel under each kernel offset, for every output pixel.

    Channels lead so that the columns of a group of channels are one contiguous block of
    C/groups * KH * KW rows; the batch is innermost so that each offset's block is one copy of
    long contiguous runs (an NCHW slice would copy runs of Wo numbers)."""
    (kh, kw), n = kernel, x.shape[0]
    out_hw = tuple(out_size(x.shape[2 + a], kernel[a], stride[a], padding[a], dilation[a]) for a in (0, 1))
    image = _batch_last(x, padding)
    cols = np.empty((x.shape[1], kh, kw) + out_hw + (n,), dtype=x.dtype)
    for i, j, rows, cols_slice in _offset_slices(kernel, stride, dilation, (out_hw[0], out_hw[1])):
        cols[:, i, j] = image[:, rows, cols_slice]
    return cols


def _grouped_matmul(left: np.ndarray, right: np.ndarray, groups: int) -> np.ndarray:
    """``left @ right`` restricted to the block diagonal of ``groups`` blocks: one GEMM per group."""
    if groups == 1:
        return left @ right
    return np.concatenate([a @ b for a, b in zip(np.split(left, groups), np.split(right, groups, axis=-2))])


def conv2d(x: np.ndarray, w: np.ndarray, stride: Pair, padding: Pair, dilation: Pair, groups: int) -> np.ndarray:
    """The cross-correlation of images ``x`` (N, C, H, W) with kernels ``w`` (O, C/groups, KH, KW)."""
    out_channels = w.shape[0]
    cols = columns(x, w.shape[2:], stride, padding, dilation)  # (C, KH, KW, Ho, Wo, N)
    kernel_rows = w.reshape(out_channels, -1)
    y = _grouped_matmul(kernel_rows, cols.reshape(groups * kernel_rows.shape[1], -1), groups)  # (O, Ho*Wo*N)
    return _batch_first(y.reshape((out_channels,) + cols.shape[3:]))


def conv2d_weight_grad(
    x: np.ndarray, g: np.ndarray, kernel: Pair, stride: Pair, padding: Pair, dilation: Pair, groups: int
) -> np.ndarray:
    """The gradient of ``<g, conv2d(x, w)>`` in ``w``: (O, C/groups, KH, KW)."""
    channels, out_channels = x.shape[1], g.shape[1]
    cols = columns(x, kernel, stride, padding, dilation).reshape(channels * kernel[0] * kernel[1], -1)
    g_rows = _batch_last(g, (0, 0)).reshape(out_channels, -1)  # (O, Ho*Wo*N)
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
    kernel_columns = (
        w.reshape(groups, out_channels // groups, -1).transpose(0, 2, 1).reshape(-1, out_channels // groups)
    )
    g_rows = _batch_last(g, (0, 0)).reshape(out_channels, -1)
    col_grad = _grouped_matmul(kernel_columns, g_rows, groups).reshape(channels, kh, kw, out_h, out_w, n)
    (ph, pw) = padding
    # col2im: every offset's block added into one (C, H, W, N) buffer through a strided slice
    dx = np.zeros((channels, input_hw[0] + 2 * ph, input_hw[1] + 2 * pw, n), dtype=col_grad.dtype)
    for i, j, rows, cols_slice in _offset_slices((kh, kw), stride, dilation, (out_h, out_w)):
        dx[:, rows, cols_slice] += col_grad[:, i, j]
    return _batch_first(dx[:, ph : ph + input_hw[0], pw : pw + input_hw[1]])


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
    overlapping = any(stride[a] < dilation[a] * (kernel[a] - 1) + 1 for a in (0, 1))
    for k, (rows, cols) in enumerate(offsets):
        if overlapping:  # a pixel in several windows collects from each
            dx[:, :, rows, cols] += np.where(which == k, g, zero)
        else:  # each pixel in one window at most: written, not read and added
            np.copyto(dx[:, :, rows, cols], g, where=which == k)
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
