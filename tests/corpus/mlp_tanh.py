"""Two-layer tanh MLP regression with mean squared error."""

import numpy as np


def loss(W1, b1, W2, b2, X, y):
    h = np.tanh(X @ W1 + b1)
    pred = h @ W2 + b2
    return np.mean((pred[:, 0] - y) ** 2)


def example_args():
    rng = np.random.default_rng(12)
    X = rng.standard_normal((16, 3))
    y = np.sin(X[:, 0]) * X[:, 1]
    return (
        0.5 * rng.standard_normal((3, 8)),
        0.1 * rng.standard_normal(8),
        0.5 * rng.standard_normal((8, 1)),
        np.zeros(1),
        X,
        y,
    )
