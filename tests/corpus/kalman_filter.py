"""Kalman filter negative log-likelihood of a 2-state model over a short observed sequence."""

import numpy as np


def loss(A, log_q, log_r, ys):
    n = A.shape[0]
    H = np.array([[1.0, 0.0]])
    Q = np.exp(log_q) * np.eye(n)
    R = np.exp(log_r) * np.eye(1)
    x = np.zeros(n)
    P = np.eye(n)
    nll = 0.0
    for t in range(ys.shape[0]):
        x = A @ x
        P = A @ P @ A.T + Q
        S = H @ P @ H.T + R
        v = ys[t] - H @ x
        K = np.linalg.solve(S, H @ P).T
        x = x + K @ v
        P = (np.eye(n) - K @ H) @ P
        nll = nll + 0.5 * (v @ np.linalg.solve(S, v) + np.log(np.linalg.det(S)) + np.log(2 * np.pi))
    return nll


def example_args():
    rng = np.random.default_rng(1)
    A = np.array([[0.9, 0.1], [-0.2, 0.8]]) + 0.05 * rng.standard_normal((2, 2))
    ys = rng.standard_normal((6, 1))
    return A, np.array(-1.0), np.array(-0.5), ys
