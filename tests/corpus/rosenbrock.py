"""The n-dimensional Rosenbrock function."""

import numpy as np


def loss(x):
    return np.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)


def example_args():
    return (np.random.default_rng(16).uniform(-1.5, 1.5, 6),)
