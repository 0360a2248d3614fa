"""Reparameterized variational objective of a Bayesian neural network, vectorized over weight samples.

Each row of a weight matrix is one sampled network: a generator slices the flat rows into per-layer
(samples, m, n) weights and (samples, 1, n) biases, and np.einsum("snd,sdo->sno") runs every sample's
layer at once. The standard-normal draws are an argument (drawn outside the function, so it is a pure function of its inputs).
"""

import numpy as np

LAYERS = [(1, 4), (4, 1)]


def unpack(weights):
    samples = len(weights)
    for m, n in LAYERS:
        yield weights[:, : m * n].reshape((samples, m, n)), weights[:, m * n : m * n + n].reshape((samples, 1, n))
        weights = weights[:, (m + 1) * n :]


def forward(weights, inputs):
    activations = np.expand_dims(inputs, 0)
    for w, b in unpack(weights):
        outputs = np.einsum("snd,sdo->sno", activations, w) + b
        activations = np.exp(-(outputs**2))
    return outputs


def loss(mean, log_std, noise, inputs, targets):
    weights = noise * np.exp(log_std) + mean
    log_prior = -0.1 * np.sum(weights**2, axis=1)
    log_likelihood = -np.sum((forward(weights, inputs) - targets) ** 2, axis=1)[:, 0] / 0.05
    entropy = 0.5 * len(mean) * (1.0 + np.log(2 * np.pi)) + np.sum(log_std)
    return -(entropy + np.mean(log_prior + log_likelihood))


def example_args():
    rng = np.random.default_rng(26)
    size = sum((m + 1) * n for m, n in LAYERS)
    inputs = np.linspace(-1.0, 1.0, 6)[:, None]
    return (
        rng.standard_normal(size),
        -1.0 + 0.1 * rng.standard_normal(size),
        rng.standard_normal((3, size)),
        inputs,
        np.cos(3 * inputs),
    )
