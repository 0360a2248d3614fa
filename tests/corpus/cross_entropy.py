"""Softmax classifier cross-entropy with one-hot labels from np.eye indexing."""

import numpy as np

LABELS = np.random.default_rng(23).integers(0, 3, 12)


def loss(W, b, X):
    onehot = np.eye(3)[LABELS]
    z = X @ W + b
    z = z - z.max(axis=1, keepdims=True)
    log_p = z - np.log(np.sum(np.exp(z), axis=1, keepdims=True))
    return -np.sum(onehot * log_p) / X.shape[0]


def example_args():
    rng = np.random.default_rng(24)
    return rng.standard_normal((4, 3)), 0.1 * rng.standard_normal(3), rng.standard_normal((12, 4))
