"""Gaussian-process regression evidence through scipy.stats.multivariate_normal with a traced covariance.

The hyper-parameters are a vector in log space (prior mean, log noise, log output scale, log length
scales), unpacked by slicing as optimizer-driven GP code does; the squared-exponential kernel builds
pairwise differences with np.expand_dims.
"""

import numpy as np
from scipy.stats import multivariate_normal


def squared_exponential(log_params, a, b):
    amplitude = np.exp(log_params[0])
    lengths = np.exp(log_params[1:])
    gaps = np.expand_dims(a / lengths, 1) - np.expand_dims(b / lengths, 0)
    return amplitude * np.exp(-0.5 * np.sum(gaps**2, axis=2))


def loss(hyper, inputs, targets):
    offset, noise = hyper[0], np.exp(hyper[1]) + 1e-4
    covariance = squared_exponential(hyper[2:], inputs, inputs) + noise * np.eye(len(targets))
    return -multivariate_normal.logpdf(targets, offset * np.ones(len(targets)), covariance)


def example_args():
    rng = np.random.default_rng(21)
    inputs = np.sort(rng.uniform(-2.0, 2.0, (7, 2)), axis=0)
    targets = np.cos(inputs[:, 0]) + 0.1 * rng.standard_normal(7)
    return 0.1 * rng.standard_normal(5), inputs, targets
