"""The heat_equation program's explicit steps written functionally, with np.concatenate."""

import numpy as np


def loss(u0, kappa, target):
    u = u0
    for _ in range(5):
        interior = u[1:-1] + kappa * (u[2:] - 2 * u[1:-1] + u[:-2])
        u = np.concatenate([np.zeros(1), interior, np.zeros(1)])
    return np.sum((u - target) ** 2)


def example_args():
    rng = np.random.default_rng(10)
    x = np.linspace(0, 1, 12)
    return np.sin(np.pi * x) + 0.1 * rng.standard_normal(12), np.array(0.2), 0.5 * np.sin(np.pi * x)
