"""Gaussian-process negative log marginal likelihood with an RBF kernel (Cholesky, cho_solve)."""

import numpy as np
from scipy.linalg import cho_solve


def loss(log_hyper, X, y):
    ell, sf, sn = np.exp(log_hyper)
    sq = np.sum((X[:, None, :] - X[None, :, :]) ** 2, axis=-1)
    K = sf**2 * np.exp(-0.5 * sq / ell**2) + (sn**2 + 1e-6) * np.eye(X.shape[0])
    L = np.linalg.cholesky(K)
    alpha = cho_solve((L, True), y)
    n = y.shape[0]
    return 0.5 * y @ alpha + np.sum(np.log(np.diag(L))) + 0.5 * n * np.log(2 * np.pi)


def example_args():
    rng = np.random.default_rng(0)
    X = rng.uniform(-2, 2, size=(8, 2))
    y = np.sin(X[:, 0]) + 0.1 * rng.standard_normal(8)
    return np.array([0.2, 0.1, -1.0]), X, y
