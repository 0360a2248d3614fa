"""Gaussian NLL with a separable (Kronecker) covariance kron(A A^T + I, B B^T + I)."""

import numpy as np


def loss(A, B, y):
    Sa = A @ A.T + np.eye(A.shape[0])
    Sb = B @ B.T + 0.5 * np.eye(B.shape[0])
    S = np.kron(Sa, Sb)
    _, logdet = np.linalg.slogdet(S)
    return 0.5 * y @ np.linalg.solve(S, y) + 0.5 * logdet


def example_args():
    rng = np.random.default_rng(25)
    return 0.7 * rng.standard_normal((2, 2)), 0.7 * rng.standard_normal((3, 3)), rng.standard_normal(6)
