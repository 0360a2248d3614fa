"""Pinball (quantile) loss plus a spread term from np.quantile and np.percentile."""

import numpy as np


def loss(w, X, y):
    tau = 0.8
    r = y - X @ w
    pinball = np.mean(np.maximum(tau * r, (tau - 1) * r))
    spread = np.quantile(r, 0.9) - np.percentile(r, 25)
    return pinball + 0.1 * spread**2


def example_args():
    rng = np.random.default_rng(20)
    X = rng.standard_normal((25, 3))
    return np.array([0.3, -0.2, 0.1]), X, X @ np.array([1.0, 0.5, -1.0]) + rng.standard_normal(25)
