"""Huber-loss linear regression with np.where."""

import numpy as np


def loss(w, X, y):
    delta = 1.0
    r = X @ w - y
    a = np.abs(r)
    return np.mean(np.where(a <= delta, 0.5 * r**2, delta * (a - 0.5 * delta)))


def example_args():
    rng = np.random.default_rng(21)
    X = rng.standard_normal((20, 3))
    y = X @ np.array([1.0, -1.0, 2.0]) + np.where(rng.uniform(size=20) < 0.2, 5.0, 0.3) * rng.standard_normal(20)
    return np.array([0.5, -0.5, 1.0]), X, y
