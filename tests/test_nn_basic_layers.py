"""nn.LayerNorm, nn.PReLU, nn.Embedding: outputs against NumPy written differently and PyTorch
(copied weights), gradients against finite differences on both backends."""

from __future__ import annotations

import numpy as np
import pytest
from nn_layer_checks import check_layer_gradients, torch_tensor

import chainrule as cr
from chainrule import nn
from chainrule.errors import ArgumentError, ShapeError


def test_layernorm_normalizes_each_sample_over_its_features():
    layer = nn.LayerNorm(5)
    rng = np.random.default_rng(0)
    params = {"gamma": rng.uniform(0.5, 1.5, 5), "beta": rng.standard_normal(5)}
    x = rng.standard_normal((4, 5)) * 3 + 1
    y = check_layer_gradients(layer, params, x)
    for row, out in zip(x, y):  # one sample at a time, with np.std: no batch in sight
        np.testing.assert_allclose(
            out, params["gamma"] * (row - row.mean()) / np.sqrt(row.var() + 1e-5) + params["beta"]
        )
    # the same in training and inference, and for a batch of one
    np.testing.assert_allclose(layer.apply(params, x, training=True), y, rtol=1e-15)
    np.testing.assert_allclose(layer.apply(params, x[:1]), y[:1], rtol=1e-15)
    assert layer.init_state() == {}


def test_layernorm_over_two_trailing_axes_matches_pytorch():
    layer = nn.LayerNorm((3, 4))
    rng = np.random.default_rng(1)
    params = {"gamma": rng.uniform(0.5, 1.5, (3, 4)), "beta": rng.standard_normal((3, 4))}
    x = rng.standard_normal((2, 5, 3, 4))
    y = check_layer_gradients(layer, params, x)
    torch = pytest.importorskip("torch")
    expected = torch.nn.functional.layer_norm(
        torch_tensor(x), (3, 4), torch_tensor(params["gamma"]), torch_tensor(params["beta"]), 1e-5
    )
    np.testing.assert_allclose(y, expected.numpy(), rtol=1e-12, atol=1e-12)


def test_layernorm_names_the_expected_feature_shape():
    with pytest.raises(ShapeError, match=r"trailing axes of shape \(4,\)"):
        nn.LayerNorm(4).apply(nn.LayerNorm(4).init(), np.zeros((2, 3)))


def test_prelu_learns_its_slope_and_matches_pytorch():
    x = np.array([[-2.0, -0.5, 0.7, 3.0], [1.5, -1.0, -3.0, 0.2]])
    shared = nn.PReLU()
    y = check_layer_gradients(shared, {"alpha": np.array([0.3])}, x)
    np.testing.assert_allclose(y, np.maximum(x, 0) + 0.3 * np.minimum(x, 0))
    # d sum(y) / d alpha = the sum of the negative inputs: what makes the slope learnable
    gradient = cr.grad(lambda p, x: np.sum(shared.apply(p, x)))({"alpha": np.array([0.3])}, x)
    np.testing.assert_allclose(gradient["alpha"], [np.sum(np.minimum(x, 0))])
    per_channel = nn.PReLU(3, axis=1)
    images = np.random.default_rng(2).standard_normal((2, 3, 2, 2))
    alphas = {"alpha": np.array([0.1, 0.2, 0.3])}
    y = check_layer_gradients(per_channel, alphas, images + 0.05 * np.sign(images))  # away from the kink
    torch = pytest.importorskip("torch")
    expected = torch.nn.functional.prelu(torch_tensor(images + 0.05 * np.sign(images)), torch_tensor(alphas["alpha"]))
    np.testing.assert_allclose(y, expected.numpy(), rtol=1e-15)


def test_prelu_per_feature_checks_the_axis_length():
    layer = nn.PReLU(4)
    with pytest.raises(ShapeError, match="one slope per feature along axis -1"):
        layer.apply(layer.init(), np.zeros((2, 3)))


def test_embedding_gathers_rows_and_scatter_adds_their_gradient():
    layer = nn.Embedding(6, 3)
    params = layer.init(0)
    ids = np.array([[1, 4, 1], [0, 5, 1]])
    y = check_layer_gradients(layer, params, ids, wrt_input=False)
    np.testing.assert_array_equal(y, np.stack([[params["table"][i] for i in row] for row in ids]))
    counts = cr.grad(lambda p, ids: np.sum(layer.apply(p, ids)))(params, ids)["table"][:, 0]
    np.testing.assert_array_equal(counts, np.bincount(ids.ravel(), minlength=6))  # row 1 is used three times
    torch = pytest.importorskip("torch")
    expected = torch.nn.functional.embedding(torch.tensor(ids), torch_tensor(params["table"]))
    np.testing.assert_array_equal(y, expected.numpy())


def test_embedding_refuses_float_and_out_of_range_ids():
    layer = nn.Embedding(4, 2)
    with pytest.raises(ArgumentError, match="integer ids"):
        layer.apply(layer.init(0), np.array([0.0, 1.0]))
    with pytest.raises(ShapeError, match=r"ids 0\.\.3"):
        layer.apply(layer.init(0), np.array([0, -1]))
