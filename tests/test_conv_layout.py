"""The batch-last layout of the convolution primitives: a traced CNN transposes its images only
where they enter and leave the convolutional part (the simplify pass's
``transpose_through_elementwise`` cancels the transposes between layers, in the forward and the
backward pass), the rule itself on a small graph, and the max-pool adjoints' bitwise select."""

from __future__ import annotations

import numpy as np
import pytest
from gradient_helpers import numerical_gradient, relative_error

import chainrule as cr
from chainrule import nn
from chainrule.ir import conv_kernels


def _cnn():
    return nn.Sequential(
        [
            nn.Conv2D(1, 4, 3, padding=1),
            nn.Activation("relu"),
            nn.MaxPool2D(2),
            nn.Conv2D(4, 6, 3, padding=1),
            nn.Activation("tanh"),
            nn.MaxPool2D(2),
            nn.Flatten(),
            nn.Dense(6 * 2 * 2, 3),
        ]
    )


def _image_transposes(graph) -> list:
    return [node for node in graph.nodes if node.op == "transpose" and node.type.ndim == 4]


def test_a_cnn_gradient_transposes_only_at_the_boundaries_of_its_convolutional_part():
    model = _cnn()
    params = model.init(0)
    x = np.random.default_rng(0).standard_normal((5, 1, 8, 8))
    loss = lambda p, x: np.sum(model.apply(p, x) ** 2)
    graph = cr.grad(loss).graph(params, x, stage="simplified")
    # forward: the images in (NCHW -> batch-last) and the last pool's output out; backward: the
    # flattened cotangent back in. Six layers would otherwise make 4 transposes each way per layer.
    assert len(_image_transposes(graph)) == 3
    assert {"conv2d", "conv2d_input_grad", "conv2d_weight_grad", "max_pool2d", "max_pool2d_scatter"} <= {
        node.op for node in graph.nodes
    }


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
def test_the_cnn_gradient_with_cancelled_transposes_matches_finite_differences(backend):
    model = _cnn()
    params = model.init(1)
    x = np.random.default_rng(2).standard_normal((3, 1, 8, 8))
    flat = lambda w: np.sum(np.sin(model.apply(dict(params, conv2d2=dict(params["conv2d2"], W=w)), x)))
    gradient = cr.grad(lambda p: np.sum(np.sin(model.apply(p, x))), backend=backend)(params)
    expected = numerical_gradient(flat, (params["conv2d2"]["W"],), 0)
    assert relative_error(gradient["conv2d2"]["W"], expected) < 1e-7


def test_a_transpose_moves_through_an_elementwise_op_only_when_it_cancels_one():
    axes, undo = (1, 2, 3, 0), (3, 0, 1, 2)
    bias = np.arange(3.0).reshape(3, 1, 1, 1)

    def cancels(z):  # transpose(relu(transpose(z) + small)) -> relu(z + transposed small)
        return np.transpose(nn.relu(np.transpose(z + bias, undo) + 0.5), axes)

    def stays(a, b):  # b is as big as the result: moving the transpose would copy it
        return np.transpose(np.transpose(a, undo) * b, axes)

    z = np.random.default_rng(3).standard_normal((3, 4, 5, 2))
    graph = cr.jit(cancels).graph(z)
    assert not [node for node in graph.nodes if node.op == "transpose" and node.type.size > 3]
    np.testing.assert_allclose(cr.jit(cancels)(z), np.maximum(z + bias + 0.5, 0.0), rtol=1e-15)
    b = np.random.default_rng(4).standard_normal((2, 3, 4, 5))
    assert len(_image_transposes(cr.jit(stays).graph(z, b))) == 2
    np.testing.assert_allclose(cr.jit(stays)(z, b), stays(z, b), rtol=1e-15)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_the_bitwise_select_is_where_with_zero_infinities_and_nans_included(dtype):
    values = np.array([1.5, -np.inf, np.nan, -0.0, 7.0, np.inf], dtype=dtype)
    hit = np.array([True, True, False, True, False, True])
    got = conv_kernels._selected(values, hit)
    expected = np.where(hit, values, dtype(0))
    np.testing.assert_array_equal(got, expected)
    assert got.dtype == dtype and np.array_equal(np.signbit(got), np.signbit(expected))


def test_an_infinite_cotangent_reaches_only_the_window_maximum():
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    cotangent = np.array([[[[np.inf, 1.0], [2.0, -np.inf]]]])
    _, pullback = cr.vjp(lambda x: nn.max_pool2d(x, 2), x)
    (got,) = pullback(cotangent)
    expected = np.zeros((1, 1, 4, 4))
    expected[0, 0, 1, 1], expected[0, 0, 1, 3], expected[0, 0, 3, 1], expected[0, 0, 3, 3] = np.inf, 1.0, 2.0, -np.inf
    np.testing.assert_array_equal(got, expected)
