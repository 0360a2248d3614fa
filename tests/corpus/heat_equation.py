"""Explicit finite-difference steps of the 1-D heat equation, written with slice assignment."""

import numpy as np


def loss(u0, kappa, target):
    u = u0
    for _ in range(5):
        u_new = u.copy()
        u_new[1:-1] = u[1:-1] + kappa * (u[2:] - 2 * u[1:-1] + u[:-2])
        u_new[0] = 0.0
        u_new[-1] = 0.0
        u = u_new
    return np.sum((u - target) ** 2)


def example_args():
    rng = np.random.default_rng(10)
    x = np.linspace(0, 1, 12)
    return np.sin(np.pi * x) + 0.1 * rng.standard_normal(12), np.array(0.2), 0.5 * np.sin(np.pi * x)
