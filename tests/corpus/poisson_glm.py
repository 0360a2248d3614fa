"""Poisson GLM negative log-likelihood with log link and an exposure offset."""

import numpy as np


def loss(beta, X, y, log_exposure):
    eta = X @ beta + log_exposure
    return np.sum(np.exp(eta) - y * eta) / y.size + 0.01 * beta @ beta


def example_args():
    rng = np.random.default_rng(22)
    X = rng.standard_normal((20, 3)) * 0.5
    log_exposure = rng.uniform(-0.5, 0.5, 20)
    y = rng.poisson(np.exp(X @ np.array([0.5, -0.3, 0.2]) + log_exposure)).astype(float)
    return np.zeros(3), X, y, log_exposure
