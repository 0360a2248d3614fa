"""ZCA whitening through the covariance's eigendecomposition, then a smooth score of the data."""

import numpy as np


def loss(X, c):
    Xc = X - X.mean(axis=0)
    cov = Xc.T @ Xc / X.shape[0]
    w, V = np.linalg.eigh(cov)
    W = V @ np.diag(1.0 / np.sqrt(w + 1e-3)) @ V.T
    Z = Xc @ W
    return np.sum(np.tanh(Z @ c)) + 0.1 * np.sum(w)


def example_args():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((20, 3)) @ np.array([[2.0, 0.3, 0.0], [0.0, 1.0, 0.4], [0.0, 0.0, 0.5]])
    return X, rng.standard_normal(3)
