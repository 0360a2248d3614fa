"""L2-regularized logistic regression, the loss written with np.logaddexp."""

import numpy as np


def loss(w, b, X, y):
    z = X @ w + b
    return np.mean(np.logaddexp(0, z) - y * z) + 0.01 * np.sum(w**2)


def example_args():
    rng = np.random.default_rng(11)
    X = rng.standard_normal((30, 4))
    y = (X @ np.array([1.0, -2.0, 0.5, 0.0]) + 0.5 * rng.standard_normal(30) > 0).astype(float)
    return 0.1 * rng.standard_normal(4), np.array(0.0), X, y
