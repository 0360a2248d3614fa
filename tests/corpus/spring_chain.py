"""Energy of a 2-D spring-mass chain under gravity (np.diff, np.linalg.norm)."""

import numpy as np


def loss(positions, stiffness, rest):
    bonds = np.diff(positions, axis=0)
    lengths = np.linalg.norm(bonds, axis=1)
    elastic = 0.5 * np.sum(stiffness * (lengths - rest) ** 2)
    gravity = 9.81 * np.sum(positions[:, 1])
    return elastic + 0.1 * gravity


def example_args():
    rng = np.random.default_rng(17)
    x = np.stack([np.linspace(0, 5, 6), -0.3 * np.arange(6) ** 1.5], axis=1)
    return x + 0.1 * rng.standard_normal((6, 2)), rng.uniform(5, 15, 5), rng.uniform(0.8, 1.2, 5)
