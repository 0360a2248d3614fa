"""Least squares through a QR factorization and a triangular solve; fitted residual."""

import numpy as np
from scipy.linalg import solve_triangular


def loss(X, y):
    Q, R = np.linalg.qr(X)
    beta = solve_triangular(R, Q.T @ y)
    r = y - X @ beta
    return r @ r + 0.1 * beta @ beta


def example_args():
    rng = np.random.default_rng(33)
    X = rng.standard_normal((10, 3))
    return X, X @ np.array([1.0, 2.0, -1.0]) + 0.5 * rng.standard_normal(10)
