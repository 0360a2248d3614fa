"""Orthogonal Procrustes alignment via the SVD, and the aligned residual."""

import numpy as np


def loss(A, B):
    U, _s, Vt = np.linalg.svd(B.T @ A)
    R = U @ Vt
    return np.sum((A @ R.T - B) ** 2)


def example_args():
    rng = np.random.default_rng(30)
    A = rng.standard_normal((6, 3)) * np.array([3.0, 1.5, 0.5])
    theta = 0.4
    R = np.array([[np.cos(theta), -np.sin(theta), 0], [np.sin(theta), np.cos(theta), 0], [0, 0, 1]])
    return A, A @ R.T + 0.1 * rng.standard_normal((6, 3))
