"""chainrule.nn layers: seed 002's batch-norm numbers and hand-written backward, dropout masks,
initializers, Sequential, L2 -- eager and traced, with gradients against finite differences."""

from __future__ import annotations

import numpy as np
import pytest
from gradient_helpers import numerical_gradient, relative_error

import chainrule as cr
from chainrule import nn


class SeedBatchNorm:
    """Seed 002, 12.10.2, verbatim apart from layout comments: features are rows, examples columns."""

    def __init__(self, num_features, momentum=0.9, eps=1e-5):
        self.gamma = np.ones(num_features)
        self.beta = np.zeros(num_features)
        self.eps = eps
        self.momentum = momentum
        self.running_mean = np.zeros(num_features)
        self.running_var = np.ones(num_features)

    def forward(self, Z, training=True):
        if training:
            self.mu = np.mean(Z, axis=1, keepdims=True)
            self.var = np.var(Z, axis=1, keepdims=True)
            self.Z_centered = Z - self.mu
            self.std_inv = 1.0 / np.sqrt(self.var + self.eps)
            self.Z_norm = self.Z_centered * self.std_inv
            out = self.gamma.reshape(-1, 1) * self.Z_norm + self.beta.reshape(-1, 1)
            self.running_mean = self.momentum * self.running_mean + (1 - self.momentum) * self.mu.flatten()
            self.running_var = self.momentum * self.running_var + (1 - self.momentum) * self.var.flatten()
        else:
            Z_norm = (Z - self.running_mean.reshape(-1, 1)) / np.sqrt(self.running_var.reshape(-1, 1) + self.eps)
            out = self.gamma.reshape(-1, 1) * Z_norm + self.beta.reshape(-1, 1)
        return out

    def backward(self, dout):
        m = dout.shape[1]
        gamma = self.gamma.reshape(-1, 1)
        self.dgamma = np.sum(dout * self.Z_norm, axis=1)
        self.dbeta = np.sum(dout, axis=1)
        dZ_norm = dout * gamma
        dvar = np.sum(dZ_norm * self.Z_centered * (-0.5) * (self.var + self.eps) ** (-1.5), axis=1, keepdims=True)
        dmu = np.sum(dZ_norm * (-self.std_inv), axis=1, keepdims=True) + dvar * np.mean(
            -2 * self.Z_centered, axis=1, keepdims=True
        )
        dZ = dZ_norm * self.std_inv + dvar * 2 * self.Z_centered / m + dmu / m
        return dZ


SEED_Z = np.array([[2.0, 4.0, 6.0, 8.0], [1.0, 3.0, 5.0, 7.0], [0.5, 1.5, 2.5, 3.5]])  # 12.10.2's demo


# ---- batch norm ---------------------------------------------------------------------------------


def test_batchnorm_reproduces_seed_002_example_3():
    layer = nn.BatchNorm(1, eps=1e-5)
    params = {"gamma": np.array([1.5]), "beta": np.array([0.3])}
    z = np.array([[2.0], [4.0], [6.0], [8.0]])
    for output in (
        layer.apply(params, z, training=True),
        cr.jit(lambda p, z: layer.apply(p, z, training=True))(params, z),
    ):
        # The seed rounds z_hat to 4 decimals before scaling (1.5 * -1.3416 + 0.3 = -1.7124; unrounded
        # -1.71246), so its outputs agree to its printed precision plus the carried rounding.
        np.testing.assert_allclose(output.ravel(), [-1.7124, -0.3708, 0.9708, 2.3124], atol=1e-4)
        np.testing.assert_allclose(output.ravel(), 1.5 * (z.ravel() - 5.0) / np.sqrt(5.0 + 1e-5) + 0.3, rtol=1e-14)
    z_hat = layer.apply({"gamma": np.ones(1), "beta": np.zeros(1)}, z, training=True)
    assert np.round(z_hat.ravel(), 4).tolist() == [-1.3416, -0.4472, 0.4472, 1.3416]  # the seed's step 3


def test_batchnorm_forward_and_running_statistics_match_the_seed_class():
    seed = SeedBatchNorm(3)
    layer = nn.BatchNorm(3)
    params, state = layer.init(), layer.init_state()
    step = cr.jit(lambda p, x, s: layer.apply(p, x, state=s, training=True))
    for batch in (SEED_Z, 2 * SEED_Z - 1):
        expected = seed.forward(batch, training=True)
        out, state = step(params, batch.T, state)
        np.testing.assert_allclose(out.T, expected, rtol=1e-13)
    np.testing.assert_allclose(state["mean"], seed.running_mean, rtol=1e-14)
    np.testing.assert_allclose(state["var"], seed.running_var, rtol=1e-14)
    inference = layer.apply(params, SEED_Z.T * 0.5, state=state)[0]
    np.testing.assert_allclose(inference.T, seed.forward(SEED_Z * 0.5, training=False), rtol=1e-13)
    np.testing.assert_allclose(np.mean(out, axis=0), 0.0, atol=1e-14)


def batchnorm_objective(params, x, weights):
    return np.sum(weights * nn.BatchNorm(3).apply(params, x, training=True))


def test_batchnorm_backward_matches_finite_differences_and_the_seed_hand_written_backward():
    rng = np.random.default_rng(3)
    x = SEED_Z.T + 0.1 * rng.standard_normal((4, 3))
    params = {"gamma": rng.uniform(0.5, 2.0, 3), "beta": rng.standard_normal(3)}
    upstream = rng.standard_normal((4, 3))  # dout, the gradient arriving from above
    grads = cr.grad(batchnorm_objective, argnums=(0, 1))(params, x, upstream)
    numeric_x = numerical_gradient(lambda x: batchnorm_objective(params, x, upstream), (x,), 0)
    assert relative_error(grads[1], numeric_x) < 1e-7
    numeric_gamma = numerical_gradient(
        lambda g: batchnorm_objective({"gamma": g, "beta": params["beta"]}, x, upstream), (params["gamma"],), 0
    )
    assert relative_error(grads[0]["gamma"], numeric_gamma) < 1e-7

    seed = SeedBatchNorm(3)
    seed.gamma, seed.beta = params["gamma"].copy(), params["beta"].copy()
    seed.forward(x.T, training=True)
    dZ = seed.backward(upstream.T)
    np.testing.assert_allclose(grads[1], dZ.T, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(grads[0]["gamma"], seed.dgamma, rtol=1e-12)
    np.testing.assert_allclose(grads[0]["beta"], seed.dbeta, rtol=1e-12)


def test_batchnorm_inference_without_state_is_a_clear_error():
    layer = nn.BatchNorm(2)
    with pytest.raises(cr.ArgumentError, match="running statistics"):
        layer.apply(layer.init(), np.ones((3, 2)))
    with pytest.raises(cr.ShapeError, match="normalizes 2 features"):
        layer.apply(layer.init(), np.ones((3, 5)), training=True)


# ---- dropout ------------------------------------------------------------------------------------


def test_dropout_masks_are_inverted_and_seeded():
    layer = nn.Dropout(0.25)
    masks = layer.dropout_masks(np.random.default_rng(0), (200, 50))
    (mask,) = masks
    assert set(np.unique(mask)) == {0.0, 1.0 / 0.75}
    assert abs(np.mean(mask == 0) - 0.25) < 0.02
    assert abs(np.mean(mask) - 1.0) < 0.03  # inverted: the expected output equals the input
    again = layer.dropout_masks(np.random.default_rng(0), (200, 50))[0]
    other = layer.dropout_masks(np.random.default_rng(1), (200, 50))[0]
    assert np.array_equal(mask, again) and not np.array_equal(mask, other)
    x = np.random.default_rng(5).standard_normal((200, 50))
    # a Generator draws the same mask as dropout_masks with the same seed
    np.testing.assert_array_equal(layer.apply({}, x, training=True, rng=np.random.default_rng(0)), x * mask)
    assert layer.apply({}, x) is x  # inference: identity, no scaling


def test_dropout_gradient_is_exactly_the_mask():
    model = nn.Sequential([nn.Dense(3, 4), nn.Dropout(0.5), nn.Dense(4, 1)])
    params = model.init(0)
    x = np.random.default_rng(1).standard_normal((6, 3))
    masks = model.dropout_masks(2, x.shape)
    assert [m.shape for m in masks] == [(6, 4)]

    def loss(p, masks, x):
        return np.sum(model.apply(p, x, training=True, rng=masks))

    grads = cr.grad(loss)(params, masks, x)
    hidden = x @ params["dense1"]["W"] + params["dense1"]["b"]
    np.testing.assert_allclose(grads["dense2"]["W"], np.sum(hidden * masks[0], axis=0)[:, None], rtol=1e-13)
    assert cr.check_grad(loss, params, masks, x) < 1e-7


def test_dropout_with_a_generator_inside_a_trace_is_refused():
    model = nn.Sequential([nn.Dense(2, 2), nn.Dropout(0.5)])
    params = model.init(0)
    with pytest.raises(cr.TraceError, match="dropout_masks"):
        cr.grad(lambda p, x: np.sum(model.apply(p, x, training=True, rng=np.random.default_rng(0))))(
            params, np.ones((3, 2))
        )
    x = np.ones((3, 2))  # a constant of the trace, only the parameters traced
    with pytest.raises(cr.TraceError, match="dropout_masks"):
        cr.grad(lambda p: np.sum(model.apply(p, x, training=True, rng=np.random.default_rng(0))))(params)
    with pytest.raises(cr.ArgumentError, match="needs rng="):
        model.apply(params, np.ones((3, 2)), training=True)
    with pytest.raises(cr.ShapeError, match="mask of shape"):
        model.apply(params, np.ones((3, 2)), training=True, rng=[np.ones((4, 2))])


# ---- initializers, Dense, Sequential, L2 --------------------------------------------------------


@pytest.mark.parametrize(
    "name, std",
    [
        ("he_normal", np.sqrt(2 / 400)),
        ("xavier_normal", np.sqrt(2 / 1000)),
        ("lecun_normal", np.sqrt(1 / 400)),
        ("he_uniform", np.sqrt(2 / 400)),
        ("xavier_uniform", np.sqrt(2 / 1000)),
    ],
)
def test_initializer_scales(name, std):
    weights = getattr(nn.init, name)(np.random.default_rng(0), (400, 600))
    assert weights.shape == (400, 600) and abs(weights.std() / std - 1) < 0.01
    assert abs(weights.mean()) < 0.01 * std
    if name.endswith("uniform"):
        assert np.max(np.abs(weights)) <= np.sqrt(3) * std
    np.testing.assert_array_equal(weights, getattr(nn.init, name)(0, (400, 600)))


def test_sequential_from_widths_is_the_seed_network():
    model = nn.Sequential([2, 16, 8, 1], activations=["relu", "relu", "sigmoid"])
    params = model.init(42)
    assert list(params) == ["dense1", "dense2", "dense3"]
    assert [params[k]["W"].shape for k in params] == [(2, 16), (16, 8), (8, 1)]
    assert all(not params[k]["b"].any() for k in params)
    repeat = model.init(42)
    assert all(np.array_equal(params[k]["W"], repeat[k]["W"]) for k in params)
    x = np.random.default_rng(0).standard_normal((5, 2))
    # the seed's forward, Z = W A + b with examples as columns, on the transposed weights
    A = x.T
    for index, key in enumerate(params):
        Z = params[key]["W"].T @ A + params[key]["b"][:, None]
        A = np.maximum(0, Z) if index < 2 else 1 / (1 + np.exp(-Z))
    np.testing.assert_allclose(model.apply(params, x), A.T, rtol=1e-13)
    np.testing.assert_allclose(cr.jit(model.apply)(params, x), A.T, rtol=1e-13)
    assert model.init_state() == {} and model.dropout_masks(0, x.shape) == []


def test_sequential_of_layers_with_batchnorm_and_dropout_has_exact_gradients():
    model = nn.Sequential(
        [
            nn.Dense(3, 5, init="xavier"),
            nn.BatchNorm(5),
            nn.Activation("tanh"),
            nn.Dropout(0.3),
            nn.Dense(5, 2),
            nn.Activation("softmax"),
        ]
    )
    params, state = model.init(0), model.init_state()
    assert list(params) == ["dense1", "batchnorm1", "dense2"] and list(state) == ["batchnorm1"]
    x = np.random.default_rng(1).standard_normal((8, 3))
    labels = np.arange(8) % 2
    masks = model.dropout_masks(4, x.shape)

    def loss(p, state, masks, x):
        probabilities, _ = model.apply(p, x, state=state, training=True, rng=masks)
        return -np.mean(np.log(probabilities[np.arange(8), labels])) + nn.l2_penalty(p, 0.1)

    assert cr.check_grad(loss, params, state, masks, x) < 1e-7
    _, new_state = model.apply(params, x, state=state, training=True, rng=masks)
    hidden = x @ params["dense1"]["W"] + params["dense1"]["b"]
    np.testing.assert_allclose(new_state["batchnorm1"]["mean"], 0.1 * hidden.mean(axis=0), rtol=1e-13)


def test_l2_penalty_counts_weight_matrices_only():
    params = {
        "dense1": {"W": np.array([[1.0, 2.0]]), "b": np.array([5.0])},
        "batchnorm1": {"gamma": np.array([3.0])},
        "dense2": {"W": np.array([[1.0], [-1.0]])},
    }
    assert nn.l2_penalty(params, 0.4) == pytest.approx(0.2 * (1 + 4 + 1 + 1))
    grads = cr.grad(lambda p: nn.l2_penalty(p, 0.4))(params)
    np.testing.assert_allclose(grads["dense1"]["W"], 0.4 * params["dense1"]["W"])
    assert not grads["dense1"]["b"].any() and not grads["batchnorm1"]["gamma"].any()


def test_layer_errors_name_the_shapes():
    with pytest.raises(cr.ShapeError, match=r"Dense\(2, 16\) takes inputs of shape \(batch, 2\), got \(4, 3\)"):
        nn.Dense(2, 16).apply(nn.Dense(2, 16).init(0), np.ones((4, 3)))
    model = nn.Sequential([2, 3, 1])
    with pytest.raises(cr.ArgumentError, match=r"Dense\(3, 1\) expects parameters \{W, b\}.*got \[\]"):
        model.apply({"dense1": model.init(0)["dense1"]}, np.ones((4, 2)))
    with pytest.raises(cr.ArgumentError, match="3 layers"):
        nn.Sequential([2, 4, 4, 1], activations=["relu"])
    with pytest.raises(cr.ArgumentError, match="unknown activation"):
        nn.Activation("swishy")
    with pytest.raises(cr.ArgumentError, match="unknown initializer"):
        nn.Dense(2, 2, init="glorious")
