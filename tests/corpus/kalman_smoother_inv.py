"""Kalman filter with np.linalg.inv for the gain, on a constant-velocity model; filtered-state misfit."""

import numpy as np


def loss(log_noise, x0, ys):
    dt = 0.1
    F = np.array([[1.0, dt], [0.0, 1.0]])
    H = np.array([[1.0, 0.0]])
    Q = np.exp(log_noise[0]) * np.array([[dt**3 / 3, dt**2 / 2], [dt**2 / 2, dt]])
    R = np.exp(log_noise[1]) * np.eye(1)
    x, P = x0, np.eye(2)
    misfit = 0.0
    for t in range(ys.shape[0]):
        x = F @ x
        P = F @ P @ F.T + Q
        K = P @ H.T @ np.linalg.inv(H @ P @ H.T + R)
        x = x + K @ (ys[t] - H @ x)
        P = P - K @ H @ P
        misfit = misfit + (x[0] - ys[t, 0]) ** 2 + 0.1 * np.trace(P)
    return misfit


def example_args():
    rng = np.random.default_rng(32)
    t = 0.1 * np.arange(8)
    return np.array([-1.0, -2.0]), np.array([0.0, 1.0]), (t + 0.1 * rng.standard_normal(8))[:, None]
