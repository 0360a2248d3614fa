"""Exact Gaussian log-likelihood of an AR(1) series plus white noise: the autocovariance
``s2 phi^|k| / (1 - phi^2)`` laid out by ``scipy.linalg.toeplitz``, Cholesky-solved."""

import numpy as np
from scipy.linalg import cho_factor, cho_solve, toeplitz


def loss(params, series):
    phi = np.tanh(params[0])
    s2, noise = np.exp(params[1]), np.exp(params[2])
    lags = np.arange(series.size)
    acov = s2 * phi**lags / (1.0 - phi**2)
    cov = toeplitz(acov) + noise * np.eye(series.size)
    factor = cho_factor(cov, lower=True)
    alpha = cho_solve(factor, series)
    logdet = 2.0 * np.sum(np.log(np.diag(factor[0])))
    return 0.5 * (series @ alpha + logdet + series.size * np.log(2 * np.pi))


def example_args():
    rng = np.random.default_rng(398)
    x = np.zeros(25)
    for t in range(1, 25):
        x[t] = 0.7 * x[t - 1] + rng.standard_normal()
    return np.array([0.8, 0.1, -1.5]), x + 0.2 * rng.standard_normal(25)
