"""NumPy computations of the convolution and pooling primitives of ``chainrule.ir.conv`` and
``chainrule.ir.pool``, on batch-last images (C, H, W, N) and OIHW kernels.

The batch is the innermost axis, so every strided slice over an image's rows and columns below
moves runs of N contiguous numbers (in NCHW they would be runs of a few pixels of one row, and
NumPy's loops would spend their time on bookkeeping). Each convolution is im2col plus one BLAS
matrix product per group: ``columns`` gathers, for every output pixel, the input pixels under the
kernel, one strided slice copy per kernel offset (the part of the offset's window inside the
image; the padding is never materialized, its columns stay zero); the convolution and its weight
gradient are one matmul against those columns. The input gradient (a transposed convolution) is
one matmul producing the columns' cotangent, then col2im: one strided slice-add per kernel offset
into one zeroed image. Max pooling is KH x KW elementwise maxima of strided slices, and its
adjoints one masked copy or add per offset. Python loops run over kernel offsets, never pixels.
The lowering templates call these as ``conv.<name>`` (the name is in ``chainrule.ir.npfuncs.NAMESPACE``).
"""

from __future__ import annotations

import functools

import numpy as np

Pair = tuple[int, int]
Window = tuple[slice, slice]


def out_size(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    """Output length along one axis: (size + 2 padding - dilation (kernel - 1) - 1) // stride + 1."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def _axis_window(size: int, out: int, start: int, stride: int) -> tuple[slice, slice]:
    """For output positions r reading input position start + stride r: the slice of those positions
    that fall inside [0, size), and the input slice they read."""
    low = max(0, -(start // stride))  # the first r with start + stride r >= 0
    high = min(out, (size - 1 - start) // stride + 1) if size - 1 - start >= 0 else 0
    high = max(high, low)
    first = start + stride * low
    return slice(low, high), slice(first, first + stride * (high - low - 1) + 1 if high > low else first, stride)


@functools.lru_cache(maxsize=256)  # a training step asks for the same few geometries every call
def _clipped_offsets(
    image_hw: Pair, out_hw: Pair, kernel: Pair, stride: Pair, padding: Pair, dilation: Pair
) -> tuple[tuple[int, int, Window, Window], ...]:
    """For each kernel offset (i, j): the output pixels whose input pixel under (i, j) is inside the
    image (not padding), and the image's slices they read."""
    offsets = []
    for i in range(kernel[0]):
        out_rows, rows = _axis_window(image_hw[0], out_hw[0], i * dilation[0] - padding[0], stride[0])
        for j in range(kernel[1]):
            out_cols, cols = _axis_window(image_hw[1], out_hw[1], j * dilation[1] - padding[1], stride[1])
            offsets.append((i, j, (out_rows, out_cols), (rows, cols)))
    return tuple(offsets)


def _out_hw(image_hw: tuple, kernel: Pair, stride: Pair, padding: Pair, dilation: Pair) -> Pair:
    return (
        out_size(image_hw[0], kernel[0], stride[0], padding[0], dilation[0]),
        out_size(image_hw[1], kernel[1], stride[1], padding[1], dilation[1]),
    )


def columns(x: np.ndarray, kernel: Pair, stride: Pair, padding: Pair, dilation: Pair) -> np.ndarray:
    """(C, KH, KW, Ho, Wo, N): the input pixel under each kernel offset, for every output pixel.

    Channels lead so that the columns of a group of channels are one contiguous block of
    C/groups * KH * KW rows; the batch is innermost so that each offset's block is one copy of
    long contiguous runs."""
    (kh, kw), image_hw = tuple(kernel), tuple(x.shape[1:3])
    x = np.ascontiguousarray(x)  # the graph's NCHW -> batch-last transpose of its input is a view
    out_hw = _out_hw(image_hw, kernel, stride, padding, dilation)
    allocate = np.zeros if padding[0] or padding[1] else np.empty  # without padding every entry is written
    cols = allocate((x.shape[0], kh, kw) + out_hw + (x.shape[3],), dtype=x.dtype)
    for i, j, (out_rows, out_cols), (rows, cols_slice) in _clipped_offsets(
        image_hw, out_hw, (kh, kw), tuple(stride), tuple(padding), tuple(dilation)
    ):
        cols[:, i, j, out_rows, out_cols] = x[:, rows, cols_slice]
    return cols


def _grouped_matmul(left: np.ndarray, right: np.ndarray, groups: int) -> np.ndarray:
    """``left @ right`` restricted to the block diagonal of ``groups`` blocks: one GEMM per group."""
    if groups == 1:
        return left @ right
    return np.concatenate([a @ b for a, b in zip(np.split(left, groups), np.split(right, groups, axis=-2))])


def conv2d(x: np.ndarray, w: np.ndarray, stride: Pair, padding: Pair, dilation: Pair, groups: int) -> np.ndarray:
    """The cross-correlation of images ``x`` (C, H, W, N) with kernels ``w`` (O, C/groups, KH, KW):
    (O, Ho, Wo, N)."""
    out_channels = w.shape[0]
    cols = columns(x, w.shape[2:], stride, padding, dilation)  # (C, KH, KW, Ho, Wo, N)
    kernel_rows = w.reshape(out_channels, -1)
    y = _grouped_matmul(kernel_rows, cols.reshape(groups * kernel_rows.shape[1], -1), groups)  # (O, Ho*Wo*N)
    return y.reshape((out_channels,) + cols.shape[3:])


def conv2d_weight_grad(
    x: np.ndarray, g: np.ndarray, kernel: Pair, stride: Pair, padding: Pair, dilation: Pair, groups: int
) -> np.ndarray:
    """The gradient of ``<g, conv2d(x, w)>`` in ``w``: (O, C/groups, KH, KW)."""
    channels, out_channels = x.shape[0], g.shape[0]
    cols = columns(x, kernel, stride, padding, dilation).reshape(channels * kernel[0] * kernel[1], -1)
    g_rows = g.reshape(out_channels, -1)  # (O, Ho*Wo*N)
    # (C*KH*KW, O), one GEMM per group: OpenBLAS runs the long Ho*Wo*N inner dimension about twice
    # as fast with the columns as its left operand as with them transposed on the right
    dw = cols @ g_rows.T if groups == 1 else _block_products(cols, g_rows, groups)
    return np.ascontiguousarray(dw.T).reshape(out_channels, channels // groups, kernel[0], kernel[1])


def _block_products(cols: np.ndarray, g_rows: np.ndarray, groups: int) -> np.ndarray:
    """The weight gradient's GEMM of each group side by side: (C*KH*KW / groups, O) per group,
    stacked along the output channels."""
    return np.concatenate([a @ b.T for a, b in zip(np.split(cols, groups), np.split(g_rows, groups))], axis=1)


def conv2d_input_grad(
    g: np.ndarray, w: np.ndarray, input_hw: Pair, stride: Pair, padding: Pair, dilation: Pair, groups: int
) -> np.ndarray:
    """The gradient of ``<g, conv2d(x, w)>`` in ``x`` (C, H, W, N): the transposed convolution of ``g``."""
    out_channels, out_h, out_w, n = g.shape
    _, group_channels, kh, kw = w.shape
    channels = group_channels * groups
    kernel_columns = (
        w.reshape(groups, out_channels // groups, -1).transpose(0, 2, 1).reshape(-1, out_channels // groups)
    )
    col_grad = _grouped_matmul(kernel_columns, g.reshape(out_channels, -1), groups)
    col_grad = col_grad.reshape(channels, kh, kw, out_h, out_w, n)
    # col2im: every offset's block added into one (C, H, W, N) image through a strided slice
    dx = np.zeros((channels, input_hw[0], input_hw[1], n), dtype=col_grad.dtype)
    for i, j, (out_rows, out_cols), (rows, cols_slice) in _clipped_offsets(
        tuple(input_hw), (out_h, out_w), (kh, kw), tuple(stride), tuple(padding), tuple(dilation)
    ):
        dx[:, rows, cols_slice] += col_grad[:, i, j, out_rows, out_cols]
    return dx


# ---- max pooling: the window maximum, and the adjoints of picking it ------------------------------


def _pool_geometry(
    x: np.ndarray, kernel: Pair, stride: Pair, padding: Pair, dilation: Pair, fill: float
) -> tuple[np.ndarray, tuple[Window, ...]]:
    """The image padded with ``fill`` (itself when there is no padding) and each kernel offset's
    (row, column) slices of it, one step per output pixel."""
    (ph, pw) = padding
    if ph or pw:
        padded = np.full((x.shape[0], x.shape[1] + 2 * ph, x.shape[2] + 2 * pw, x.shape[3]), fill, dtype=x.dtype)
        padded[:, ph : ph + x.shape[1], pw : pw + x.shape[2]] = x
        x = padded
    return x, _window_offsets(tuple(x.shape[1:3]), tuple(kernel), tuple(stride), tuple(dilation))


@functools.lru_cache(maxsize=256)
def _window_offsets(image_hw: Pair, kernel: Pair, stride: Pair, dilation: Pair) -> tuple[Window, ...]:
    """Each kernel offset's (row, column) slices of an (already padded) image, one step per output pixel."""
    out_h, out_w = _out_hw(image_hw, kernel, stride, (0, 0), dilation)
    return tuple(
        (
            slice(i * dilation[0], i * dilation[0] + stride[0] * (out_h - 1) + 1, stride[0]),
            slice(j * dilation[1], j * dilation[1] + stride[1] * (out_w - 1) + 1, stride[1]),
        )
        for i in range(kernel[0])
        for j in range(kernel[1])
    )


def max_pool2d(x: np.ndarray, kernel: Pair, stride: Pair, padding: Pair, dilation: Pair) -> np.ndarray:
    """The maximum over each window (padding is -inf): KH*KW elementwise maxima of strided slices."""
    padded, offsets = _pool_geometry(x, kernel, stride, padding, dilation, -np.inf)
    best = padded[(slice(None),) + offsets[0]].copy()
    for rows, cols in offsets[1:]:
        np.maximum(best, padded[:, rows, cols], out=best)
    return best


def _window_argmax(keys: np.ndarray, kernel: Pair, stride: Pair, padding: Pair, dilation: Pair) -> np.ndarray:
    """Which kernel offset holds each window's maximum: the first one where several tie, as in PyTorch."""
    padded, offsets = _pool_geometry(keys, kernel, stride, padding, dilation, -np.inf)
    best = padded[(slice(None),) + offsets[0]].copy()
    index_type = np.int8 if len(offsets) < 128 else np.int32
    which = np.zeros(best.shape, dtype=index_type)
    better = np.empty(best.shape, dtype=bool)
    candidate_index = np.empty(best.shape, dtype=index_type)
    for k, (rows, cols) in enumerate(offsets[1:], 1):
        candidate = padded[:, rows, cols]
        np.greater(candidate, best, out=better)
        np.maximum(best, candidate, out=best)
        # k exceeds every offset recorded so far, so where k is better the maximum takes it (a
        # masked copy of the scalar k would be the same, and NumPy's is several times slower)
        np.multiply(better.view(np.int8), k, out=candidate_index, casting="unsafe")
        np.maximum(which, candidate_index, out=which)
    return which


def _selected(values: np.ndarray, hit: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``values`` where ``hit``, +0.0 elsewhere: a bitwise and of the numbers' bits with all-ones or
    all-zeros words. Exactly ``np.where(hit, values, 0)`` (infinities and NaNs included), without its
    branch per element, which a max-pool's mask (a quarter of the windows each, at random)
    mispredicts half the time: several times faster."""
    bits = np.dtype(f"i{values.dtype.itemsize}")
    words = np.negative(hit.view(np.int8), dtype=bits)  # True -> -1: every bit set
    chosen = np.bitwise_and(values.view(bits), words, out=None if out is None else out.view(bits))
    return chosen.view(values.dtype)


def max_pool2d_scatter(
    keys: np.ndarray, g: np.ndarray, kernel: Pair, stride: Pair, padding: Pair, dilation: Pair
) -> np.ndarray:
    """``g`` sent to where each window of ``keys`` has its maximum: the gradient of max pooling."""
    which = _window_argmax(keys, kernel, stride, padding, dilation)
    (ph, pw), (h, w) = padding, keys.shape[1:3]
    dx = np.zeros((keys.shape[0], h + 2 * ph, w + 2 * pw, keys.shape[3]), dtype=g.dtype)
    _, offsets = _pool_geometry(dx, kernel, stride, (0, 0), dilation, 0.0)
    overlapping = any(stride[a] < dilation[a] * (kernel[a] - 1) + 1 for a in (0, 1))
    g = np.ascontiguousarray(g)
    hit = np.empty(which.shape, dtype=bool)
    for k, (rows, cols) in enumerate(offsets):
        np.equal(which, k, out=hit)
        if overlapping:  # a pixel in several windows collects from each
            dx[:, rows, cols] += _selected(g, hit)
        else:  # each pixel in one window at most: written, not read and added
            _selected(g, hit, out=dx[:, rows, cols])
    return np.ascontiguousarray(dx[:, ph : ph + h, pw : pw + w]) if ph or pw else dx


def max_pool2d_gather(
    keys: np.ndarray, a: np.ndarray, kernel: Pair, stride: Pair, padding: Pair, dilation: Pair
) -> np.ndarray:
    """``a`` read where each window of ``keys`` has its maximum (the adjoint of ``max_pool2d_scatter``)."""
    which = _window_argmax(keys, kernel, stride, padding, dilation)
    padded, offsets = _pool_geometry(a, kernel, stride, padding, dilation, 0.0)
    out = np.zeros(which.shape, dtype=a.dtype)
    bits = np.dtype(f"i{a.dtype.itemsize}")
    for k, (rows, cols) in enumerate(offsets):  # one offset's bits per window, the others' are zero
        np.bitwise_or(out.view(bits), _selected(padded[:, rows, cols], which == k).view(bits), out=out.view(bits))
    return out
