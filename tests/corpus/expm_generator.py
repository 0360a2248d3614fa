"""Continuous-time Markov chain likelihood: transition matrix expm(Q t) of a rate generator."""

import numpy as np
from scipy.linalg import expm

COUNTS = np.array([[8.0, 2.0, 1.0], [3.0, 6.0, 2.0], [1.0, 2.0, 9.0]])


def loss(log_rates, t):
    n = 3
    off = np.exp(log_rates) * (1 - np.eye(n))
    Q = off - np.diag(np.sum(off, axis=1))
    P = expm(Q * t)
    return -np.sum(COUNTS * np.log(P))


def example_args():
    rng = np.random.default_rng(29)
    return -1.0 + 0.3 * rng.standard_normal((3, 3)), np.array(0.7)
