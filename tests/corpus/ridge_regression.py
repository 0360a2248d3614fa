"""Closed-form ridge regression; validation error as a function of data and penalty."""

import numpy as np


def loss(X, y, log_lam, X_val, y_val):
    d = X.shape[1]
    w = np.linalg.solve(X.T @ X + np.exp(log_lam) * np.eye(d), X.T @ y)
    return np.mean((X_val @ w - y_val) ** 2)


def example_args():
    rng = np.random.default_rng(13)
    w_true = np.array([1.0, -0.5, 0.25])
    X = rng.standard_normal((12, 3))
    X_val = rng.standard_normal((6, 3))
    return X, X @ w_true + 0.3 * rng.standard_normal(12), np.array(0.0), X_val, X_val @ w_true
