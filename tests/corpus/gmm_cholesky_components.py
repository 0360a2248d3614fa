"""Gaussian-mixture log-likelihood with a full covariance per component, Σ_k = U_kᵀ U_k.

Components are walked with zip over the leading axes of the parameter arrays, each one scored by
scipy.stats.multivariate_normal.logpdf, and the per-component rows are stacked with np.vstack
before a logsumexp over components.
"""

import numpy as np
from scipy.special import logsumexp
from scipy.stats import multivariate_normal


def loss(logits, centers, factors, points):
    log_weights = logits - logsumexp(logits)
    rows = []
    for log_weight, center, factor in zip(log_weights, centers, factors):
        rows.append(log_weight + multivariate_normal.logpdf(points, center, factor.T @ factor))
    return -np.sum(logsumexp(np.vstack(rows), axis=0))


def example_args():
    rng = np.random.default_rng(22)
    factors = np.eye(2) + 0.2 * rng.standard_normal((3, 2, 2))
    return 0.3 * rng.standard_normal(3), rng.standard_normal((3, 2)), factors, rng.standard_normal((8, 2))
