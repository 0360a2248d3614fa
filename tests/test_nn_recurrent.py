"""nn.RNN, nn.LSTM, nn.GRU and their cells, run with scan: outputs against a Python loop written from
the equations and against PyTorch (copied weights), gradients against finite differences."""

from __future__ import annotations

import numpy as np
import pytest
from nn_layer_checks import check_layer_gradients, torch_tensor

import chainrule as cr
from chainrule import nn
from chainrule.errors import ShapeError


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def rnn_by_loop(p, x):
    h = np.zeros((x.shape[0], p["W_h"].shape[0]))
    outputs = []
    for t in range(x.shape[1]):
        h = np.tanh(x[:, t] @ p["W_x"] + h @ p["W_h"] + p["b"])
        outputs.append(h)
    return np.stack(outputs, axis=1)


def lstm_by_loop(p, x):
    size = p["W_h"].shape[0]
    h = c = np.zeros((x.shape[0], size))
    outputs = []
    for t in range(x.shape[1]):
        i, f, g, o = np.split(x[:, t] @ p["W_x"] + h @ p["W_h"] + p["b"], 4, axis=1)
        c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
        h = sigmoid(o) * np.tanh(c)
        outputs.append(h)
    return np.stack(outputs, axis=1)


def gru_by_loop(p, x):
    size = p["W_h"].shape[0]
    h = np.zeros((x.shape[0], size))
    outputs = []
    for t in range(x.shape[1]):
        x_r, x_z, x_n = np.split(x[:, t] @ p["W_x"] + p["b"], 3, axis=1)
        h_r, h_z, h_n = np.split(h @ p["W_h"] + p["b_h"], 3, axis=1)
        r, z = sigmoid(x_r + h_r), sigmoid(x_z + h_z)
        h = (1 - z) * np.tanh(x_n + r * h_n) + z * h
        outputs.append(h)
    return np.stack(outputs, axis=1)


LAYERS = [(nn.RNN, rnn_by_loop), (nn.LSTM, lstm_by_loop), (nn.GRU, gru_by_loop)]


@pytest.mark.parametrize(("layer_class", "by_loop"), LAYERS, ids=["rnn", "lstm", "gru"])
def test_recurrent_layer_matches_the_equations_and_finite_differences(layer_class, by_loop):
    layer = layer_class(3, 4)
    params = layer.init(0)
    x = np.random.default_rng(1).standard_normal((2, 5, 3))
    y = check_layer_gradients(layer, params, x)
    np.testing.assert_allclose(y, by_loop(params, x), rtol=1e-13, atol=1e-14)
    last = layer_class(3, 4, return_sequences=False)
    np.testing.assert_allclose(last.apply(params, x), y[:, -1], rtol=1e-15)
    assert last.output_shape(x.shape) == (2, 4) and layer.output_shape(x.shape) == (2, 5, 4)


def _torch_params(module, gated_bias_split: bool) -> dict:
    weights = {name: value.detach().numpy() for name, value in module.named_parameters()}
    params = {"W_x": weights["weight_ih_l0"].T.copy(), "W_h": weights["weight_hh_l0"].T.copy()}
    if gated_bias_split:
        params["b"], params["b_h"] = weights["bias_ih_l0"], weights["bias_hh_l0"]
    else:
        params["b"] = weights["bias_ih_l0"] + weights["bias_hh_l0"]
    return params


@pytest.mark.parametrize("name", ["RNN", "LSTM", "GRU"])
def test_recurrent_layer_matches_pytorch_with_copied_weights(name):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    module = getattr(torch.nn, name)(3, 4, batch_first=True).double()
    x = np.random.default_rng(2).standard_normal((2, 6, 3))
    expected = module(torch_tensor(x))[0].detach().numpy()
    layer = getattr(nn, name)(3, 4)
    params = _torch_params(module, gated_bias_split=name == "GRU")
    np.testing.assert_allclose(layer.apply(params, x), expected, rtol=1e-12, atol=1e-13)
    traced = cr.jit(lambda p, x: layer.apply(p, x), backend="llvm")(params, x)
    np.testing.assert_allclose(traced, expected, rtol=1e-12, atol=1e-13)


def test_a_cell_steps_alone_and_the_layer_compiles_one_body_for_a_long_sequence():
    cell = nn.LSTMCell(2, 3)
    params = cell.init(0)
    x = np.random.default_rng(3).standard_normal((4, 300, 2))
    carry = cell.initial_carry(4)
    for t in range(3):
        carry, h = cell.apply(params, carry, x[:, t])
    np.testing.assert_allclose(h, lstm_by_loop(params, x[:, :3])[:, -1], rtol=1e-14)
    graph = cr.trace(lambda p, x: nn.LSTM(2, 3).apply(p, x), params, x)
    assert sum(node.op == "loop" for node in graph.nodes) == 1  # one loop, not 300 unrolled bodies


def test_recurrent_layers_stack_with_dropout_in_a_sequential():
    model = nn.Sequential([nn.GRU(3, 4), nn.Dropout(0.5), nn.LSTM(4, 2, return_sequences=False), nn.Dense(2, 1)])
    x = np.random.default_rng(4).standard_normal((5, 6, 3))
    masks = model.dropout_masks(0, x.shape)
    assert [m.shape for m in masks] == [(5, 6, 4)]
    params = model.init(0)
    gradient = cr.grad(lambda p, x, m: np.sum(model.apply(p, x, training=True, rng=m) ** 2))(params, x, masks)
    assert set(gradient) == {"gru1", "lstm1", "dense1"} and all(np.isfinite(g).all() for g in gradient["gru1"].values())


def test_recurrent_layer_names_the_expected_input_shape():
    layer = nn.RNN(3, 4)
    with pytest.raises(ShapeError, match=r"\(batch, time, 3\)"):
        layer.apply(layer.init(0), np.zeros((2, 3)))
