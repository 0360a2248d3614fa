"""nn.Conv2D, nn.MaxPool2D, nn.AvgPool2D, nn.Flatten: outputs against explicit loops over pixels and
PyTorch (copied weights), gradients against finite differences, stride/padding/dilation."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from nn_layer_checks import check_layer_gradients, torch_tensor

import chainrule as cr
from chainrule import nn
from chainrule.errors import ShapeError

GEOMETRIES = [  # (kernel, stride, padding, dilation)
    (3, 1, 0, 1),
    (3, 2, 1, 1),
    ((2, 3), (1, 2), (1, 0), 1),
    (2, 1, 2, 2),
]


def conv_by_loops(x, w, b, stride, padding, dilation):
    """Cross-correlation, one output pixel at a time, from the definition."""
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    padded = np.zeros((n, c, h + 2 * ph, wd + 2 * pw))
    padded[:, :, ph : ph + h, pw : pw + wd] = x
    out_h = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    out_w = (wd + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    y = np.zeros((n, o, out_h, out_w))
    for batch, out_channel, row, col in itertools.product(range(n), range(o), range(out_h), range(out_w)):
        total = b[out_channel]
        for channel, i, j in itertools.product(range(c), range(kh), range(kw)):
            total += w[out_channel, channel, i, j] * padded[batch, channel, row * sh + i * dh, col * sw + j * dw]
        y[batch, out_channel, row, col] = total
    return y


def pool_by_loops(x, kernel, stride, padding, reduce, pad_value):
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    n, c, h, wd = x.shape
    padded = np.full((n, c, h + 2 * ph, wd + 2 * pw), pad_value)
    padded[:, :, ph : ph + h, pw : pw + wd] = x
    out_h, out_w = (h + 2 * ph - kh) // sh + 1, (wd + 2 * pw - kw) // sw + 1
    y = np.zeros((n, c, out_h, out_w))
    for row, col in itertools.product(range(out_h), range(out_w)):
        y[:, :, row, col] = reduce(padded[:, :, row * sh : row * sh + kh, col * sw : col * sw + kw], axis=(2, 3))
    return y


def _pair(v):
    return (v, v) if isinstance(v, int) else v


@pytest.mark.parametrize(("kernel", "stride", "padding", "dilation"), GEOMETRIES)
def test_conv2d_matches_explicit_loops_and_finite_differences(kernel, stride, padding, dilation):
    layer = nn.Conv2D(2, 3, kernel, stride=stride, padding=padding, dilation=dilation)
    params = layer.init(0)
    params["b"] = np.array([0.1, -0.2, 0.3])
    x = np.random.default_rng(1).standard_normal((2, 2, 6, 7))
    y = check_layer_gradients(layer, params, x)
    expected = conv_by_loops(x, params["W"], params["b"], _pair(stride), _pair(padding), _pair(dilation))
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)
    assert y.shape == layer.output_shape(x.shape)


@pytest.mark.parametrize(("kernel", "stride", "padding", "dilation"), GEOMETRIES)
def test_conv2d_matches_pytorch_with_copied_weights(kernel, stride, padding, dilation):
    torch = pytest.importorskip("torch")
    layer = nn.Conv2D(2, 3, kernel, stride=stride, padding=padding, dilation=dilation)
    params = layer.init(3)
    params["b"] = np.array([0.5, 0.0, -1.0])
    x = np.random.default_rng(2).standard_normal((2, 2, 7, 6))
    expected = torch.nn.functional.conv2d(
        torch_tensor(x), torch_tensor(params["W"]), torch_tensor(params["b"]), stride, padding, dilation
    )
    np.testing.assert_allclose(layer.apply(params, x), expected.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("kernel", "stride", "padding"), [(2, None, 0), (3, 1, 1), ((2, 3), (2, 1), (1, 1))])
def test_pooling_matches_explicit_loops_and_pytorch(kernel, stride, padding):
    x = np.random.default_rng(4).permutation(2 * 3 * 6 * 6).reshape(2, 3, 6, 6) / 10.0  # no ties: max' is defined
    for layer, reduce, pad_value in (
        (nn.MaxPool2D(kernel, stride, padding), np.max, -np.inf),
        (nn.AvgPool2D(kernel, stride, padding), np.mean, 0.0),
    ):
        y = check_layer_gradients(layer, {}, x)
        kernel_hw = _pair(kernel)
        expected = pool_by_loops(x, kernel_hw, _pair(stride or kernel), _pair(padding), reduce, pad_value)
        np.testing.assert_allclose(y, expected, rtol=1e-13)
        assert y.shape == layer.output_shape(x.shape)
    torch = pytest.importorskip("torch")
    stride = stride or kernel
    np.testing.assert_allclose(
        nn.MaxPool2D(kernel, stride, padding).apply({}, x),
        torch.nn.functional.max_pool2d(torch_tensor(x), kernel, stride, padding).numpy(),
    )
    np.testing.assert_allclose(
        nn.AvgPool2D(kernel, stride, padding).apply({}, x),
        torch.nn.functional.avg_pool2d(torch_tensor(x), kernel, stride, padding).numpy(),
        rtol=1e-13,
    )


def test_a_small_cnn_with_dropout_trains_traced_and_its_masks_follow_the_shapes():
    model = nn.Sequential(
        [
            nn.Conv2D(1, 4, 3, padding=1),
            nn.Activation("relu"),
            nn.MaxPool2D(2),
            nn.Dropout(0.25),
            nn.Flatten(),
            nn.Dense(4 * 4 * 4, 3),
        ]
    )
    x = np.random.default_rng(0).standard_normal((5, 1, 8, 8))
    assert model.output_shape(x.shape) == (5, 3)
    masks = model.dropout_masks(0, x.shape)
    assert [m.shape for m in masks] == [(5, 4, 4, 4)]
    params = model.init(0)
    loss = lambda p, x, masks: np.sum(model.apply(p, x, training=True, rng=masks) ** 2)
    gradient = cr.grad(loss)(params, x, masks)
    assert set(gradient) == {"conv2d1", "dense1"} and gradient["conv2d1"]["W"].shape == (4, 1, 3, 3)
    assert np.all(np.isfinite(gradient["conv2d1"]["W"]))


def test_conv2d_rejects_the_wrong_channels_and_too_small_images():
    layer = nn.Conv2D(3, 4, 5)
    with pytest.raises(ShapeError, match="3 input channels"):
        layer.apply(layer.init(0), np.zeros((1, 2, 8, 8)))
    with pytest.raises(ShapeError, match="smaller than the kernel"):
        layer.apply(layer.init(0), np.zeros((1, 3, 4, 4)))
    with pytest.raises(ShapeError, match="NCHW"):
        layer.apply(layer.init(0), np.zeros((3, 8, 8)))
